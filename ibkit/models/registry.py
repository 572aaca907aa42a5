"""The registry of model kinds: ``@register_model("name")`` on a model class whose ``Config`` attribute is its
config class. It is the only list of kind names; everything else (build, checkpoints, run ids, results columns,
batching, figure styles) reads it (timm's ``register_model`` / ``create_model``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ibkit.models.base import Autoencoder

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">")  # for kinds that do not choose one
PALETTE_SIZE = 10  # seaborn's "colorblind" palette


class KindStyle(NamedTuple):
    """How figures draw a kind: legend label, matplotlib marker, colour (an index into seaborn's "colorblind"
    palette) and whether a sweep's points are joined into a curve."""

    label: str
    marker: str
    colour: int
    line: bool


_MODELS: dict[str, type[Autoencoder]] = {}
_STYLES: dict[str, KindStyle] = {}


def register_model(kind: str, *, label: str | None = None, marker: str | None = None, colour: int | None = None,
                   line: bool = True) -> Callable[[type], type]:
    """Class decorator: register a model class under ``kind``. The class needs a ``Config`` attribute (a frozen
    dataclass deriving from ``ModelConfig``); it gets ``KIND = kind``. ``label``, ``marker``, ``colour`` and
    ``line`` are its figure style (``KindStyle``; defaults: the kind's name, the next free marker and colour)."""
    if not isinstance(kind, str) or not kind.isidentifier():
        raise ValueError(f"kind={kind!r} must be a name of letters, digits and underscores, e.g. 'tempered_vae'")

    def register(cls):
        config = getattr(cls, "Config", None)
        if config is None or not dataclasses.is_dataclass(config):
            raise ValueError(f"register_model({kind!r}): {cls.__name__} needs a Config attribute, a dataclass of its "
                             "fields (e.g. a subclass of ibkit.models.VAEConfig)")
        cls.KIND = kind
        _MODELS[kind] = cls
        taken = [s for k, s in _STYLES.items() if k != kind]
        _STYLES[kind] = KindStyle(label or kind, marker or _free(MARKERS, [s.marker for s in taken]),
                                  _free(range(PALETTE_SIZE), [s.colour for s in taken]) if colour is None else colour,
                                  line)
        return cls

    return register


def _free(options, used):
    """The first of ``options`` not in ``used`` (cycling when all are)."""
    return next((o for o in options if o not in used), list(options)[len(used) % len(options)])


def registered_kinds() -> tuple[str, ...]:
    """The registered kind names, in registration order."""
    return tuple(_MODELS)


def model_class(kind: str) -> type[Autoencoder]:
    """The model class registered as ``kind``; an unknown kind is a ValueError listing the registered ones."""
    try:
        return _MODELS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind={kind!r} is not a registered model kind; registered: {', '.join(_MODELS)} "
                         "(register your own with @ibkit.register_model)") from None


def kind_style(kind: str) -> KindStyle:
    """The figure style of ``kind``; a kind that is not registered (e.g. in a table stored by a session that had
    it) gets its name as label and a marker and colour derived from the name."""
    if kind in _STYLES:
        return _STYLES[kind]
    h = sum(map(ord, str(kind)))
    return KindStyle(str(kind), MARKERS[h % len(MARKERS)], 4 + h % (PALETTE_SIZE - 4), True)


def knob_names(kind: str) -> tuple[str, ...]:
    """The knobs of ``kind`` (config fields marked ``knob``); () for a kind that is not registered."""
    from ibkit.models.config import knob_fields

    return knob_fields(_MODELS[kind].Config) if kind in _MODELS else ()


def all_knobs() -> tuple[str, ...]:
    """Every registered kind's knobs, each once, sorted by name: the knob columns of a results table."""
    return tuple(sorted({k for kind in _MODELS for k in knob_names(kind)}))


def quiet_knobs() -> dict[str, object]:
    """{knob: its default} for the knobs marked ``quiet`` (metadata): settings, like the KL schedules, that a
    summary shows only where some run sets them."""
    return {f.name: f.default for cls in _MODELS.values() for f in dataclasses.fields(cls.Config)
            if f.metadata.get("knob") and f.metadata.get("quiet")}


def config_fields() -> tuple[str, ...]:
    """Every field of every registered kind's config, each once, in registration order."""
    return tuple(dict.fromkeys(f.name for cls in _MODELS.values() for f in dataclasses.fields(cls.Config)))


def text_fields() -> tuple[str, ...]:
    """The fields of registered configs that hold text (str or str | None annotations), e.g. posterior."""
    import typing

    return tuple(dict.fromkeys(name for cls in _MODELS.values() for name, hint in
                               typing.get_type_hints(cls.Config).items() if str in (hint, *typing.get_args(hint))))


def _field_metadata(name: str, key: str):
    """The ``key`` entry of the metadata of field ``name`` in the first registered config that has it, else None."""
    for cls in _MODELS.values():
        for f in dataclasses.fields(cls.Config):
            if f.name == name and key in f.metadata:
                return f.metadata[key]
    return None


def knob_symbol(name: str) -> str:
    """How figures write knob ``name``: the ``symbol`` in its field's metadata ("β"), else the name."""
    return _field_metadata(name, "symbol") or name


def knob_help(name: str) -> str:
    """What knob ``name`` is, in a few words for a table's caption: the ``help`` in its field's metadata ("weight of
    the rate in the loss"), else ""."""
    return _field_metadata(name, "help") or ""


__all__ = ["KindStyle", "register_model", "registered_kinds", "model_class", "kind_style", "knob_names",
           "all_knobs", "config_fields", "text_fields", "knob_symbol", "knob_help", "quiet_knobs"]
