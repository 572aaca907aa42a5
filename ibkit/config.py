"""One configuration system: frozen dataclasses whose fields declare their checks and meaning in metadata, one
validator that reads it (scikit-learn's ``_param_validation`` in spirit), and the records that carry settings
through a sweep.

Field metadata (all optional; ``setting(default, help, **checks)`` writes it):
    help:     what the field is, in a few words: ``ibkit run NAME --help`` and a table's caption read it.
    low, high, low_open: the allowed range of a number, or of each number of a tuple (low_open: strictly above).
    choices:  the allowed values (of the field, or of each entry of a tuple); a ``Registry`` is read when checked.
    nonempty: a tuple that needs at least one entry (a grid: betas, seeds).
    check:    a function ``check(name, value)`` raising ValueError, for what a range cannot say (a device).
    knob:     a model hyper-parameter that may differ between models trained as one batch (``fit_many``); the
              model holds it as a buffer, it is a results column and part of the run id.
    id:       the short name a field takes in a run id ("d" for latent_dim); knobs use their own name.
    symbol:   how figures write it ("β").
    quiet:    a knob a summary shows only where some run sets it (KL schedules).

Users of the configs:
    ``ibkit.models.ModelConfig`` and every kind's config (``validate`` in ``__post_init__``),
    ``TrainingConfig`` (what ``fit``, ``fit_many`` and ``run_grid`` take), ``ExperimentConfig`` (what every
    experiment's ``Config`` derives from, declaring only its grid), ``RunSpec`` (one run of a grid), and the
    command line (``parse_overrides`` for ``--set``, ``config_help`` for ``--help``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ibkit.checks import check_choice, check_number, resolve_device
from ibkit.registry import DATASETS, MODELS

LOGS = ("none", "tensorboard")  # what a ``log`` setting may name: no training log, or TensorBoard's event files


def setting(default, help: str, **checks) -> Any:
    """A dataclass field with its default, its ``help`` and its checks (see the module's metadata keys)."""
    return field(default=default, metadata={"help": help, **checks})


def checks_of(config_cls, name: str) -> dict[str, Any]:
    """The checks (range and choices) in the metadata of field ``name`` of ``config_cls``: for a grid field whose
    entries become that field of a model (an experiment's ``betas``, each a ``VAEConfig.beta``), so that the range
    is declared once, where the model declares it: ``setting(..., **checks_of(VAEConfig, "beta"))``."""
    found = next((f for f in dataclasses.fields(config_cls) if f.name == name), None)
    if found is None:
        raise ValueError(f"{config_cls.__name__} has no field {name!r}")
    return {k: v for k, v in found.metadata.items() if k in ("low", "high", "low_open", "choices")}


def check_device(name: str, value) -> None:
    """A device setting: "auto", "cpu" or "cuda[:i]" that torch can use here."""
    if not isinstance(value, str):
        raise ValueError(f"{name}={value!r} must be a device name: 'auto', 'cpu' or 'cuda[:i]'")
    resolve_device(value)


# -- the validator ----------------------------------------------------------------------------------------------

def validate(config) -> None:
    """Check (and normalise: lists to tuples, ints to floats) every field of the dataclass instance ``config``
    against its annotated type and its metadata; a ValueError names the field, the value and what is allowed.

    Args:
        config: a dataclass instance (frozen or not); its fields are set to their normalised values.
    """
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = coerce(f.name, getattr(config, f.name), hints[f.name], f.metadata)
        object.__setattr__(config, f.name, value)


_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    """The resolved annotations of a config class (cached: they are read at every construction)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _optional(annotation) -> tuple[Any, bool]:
    """(X, True) for ``X | None``, else (annotation, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation):
        return next(a for a in typing.get_args(annotation) if a is not type(None)), True
    return annotation, False


def coerce(name: str, value, annotation, meta: Mapping) -> Any:
    """``value`` as the type ``annotation`` names (int, float, str, bool, tuple[X, ...], X | None), checked
    against ``meta`` (range, choices, nonempty, check).

    Returns:
        the value, normalised: a list or tuple becomes a tuple, an int where a float is declared a float.
    """
    annotation, optional = _optional(annotation)
    if value is None and optional:
        return None
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        if isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{name}={value!r} must be a tuple of {_type_text(item)}s, e.g. "
                             f"{name}=({_example(item, meta)},)")
        value = tuple(_scalar(f"{name}[{i}]", v, item, meta) for i, v in enumerate(value))
        if meta.get("nonempty") and not value:
            raise ValueError(f"{name}=() is empty; give at least one value, e.g. {name}=({_example(item, meta)},)")
    else:
        value = _scalar(name, value, annotation, meta)
    if "check" in meta:
        meta["check"](name, value)
    return value


def _scalar(name: str, value, annotation, meta: Mapping):
    """One value of type ``annotation`` (int, float, str, bool), checked against ``meta``'s range and choices."""
    if "choices" in meta:
        check_choice(name, value, meta["choices"])
        return value
    if annotation in (int, float):
        check_number(name, value, low=meta.get("low"), high=meta.get("high"), low_open=meta.get("low_open", False),
                     integer=annotation is int)
        return int(value) if annotation is int else float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be True or False")
    if annotation is str and not isinstance(value, str):
        raise ValueError(f"{name}={value!r} must be a string")
    return value


def _example(item, meta: Mapping) -> str:
    if "choices" in meta:
        return repr(next(iter(meta["choices"]), ""))
    low = meta.get("low")
    return str(item(1 if low is None or low < 1 else low)) if item in (int, float) else "..."


# -- text: the command line's --set and --help -------------------------------------------------------------------

def parse_value(name: str, text: str, annotation):
    """Convert ``text`` to the field's type: int, float, bool, str, tuples of those ("a,b,c"), or X | None.

    Args:
        name: the field, for the error message.
        text: what followed ``--set name=``.
        annotation: the field's resolved type.
    """
    annotation, optional = _optional(annotation)
    if optional and text.lower() in ("none", "null"):
        return None
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return tuple(parse_value(name, t.strip(), item) for t in text.split(",") if t.strip())
    if annotation is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"--set {name}={text!r}: expected true or false")
    try:
        value = annotation(text)
    except (TypeError, ValueError):
        raise ValueError(f"--set {name}={text!r}: expected {annotation.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"--set {name}={text!r}: expected a finite number")
    return value


def parse_overrides(config_cls, items: list[str]) -> dict:
    """``["key=value", ...]`` -> {field: typed value} for the dataclass ``config_cls``; unknown keys are refused."""
    hints = _hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. --set epochs=10")
        if key not in names:
            raise ValueError(f"--set {key}: unknown config key; valid keys: {', '.join(names)}")
        out[key] = parse_value(key, text, hints[key])
    return out


def _type_text(annotation) -> str:
    """'int', 'float', 'ints (a,b,...)', 'float or none' ..."""
    annotation, optional = _optional(annotation)
    if optional:
        return f"{_type_text(annotation)} or none"
    if typing.get_origin(annotation) is tuple:
        return f"{_type_text(typing.get_args(annotation)[0])}s (a,b,...)"
    return getattr(annotation, "__name__", str(annotation))


def config_help(config_cls) -> str:
    """The ``--set`` keys of a config class: each with its type, default and meaning (its ``help`` metadata)."""
    hints = _hints(config_cls)
    lines = ["config keys (--set KEY=VALUE, repeatable):"]
    for f in dataclasses.fields(config_cls):
        default = field_defaults(config_cls).get(f.name)
        shown = (",".join(map(str, default)) or "none given") if isinstance(default, tuple) else \
            str(default).lower() if isinstance(default, bool) or default is None else repr(default) \
            if default == "" else default
        meaning = f.metadata.get("help")
        lines.append(f"  {f.name} ({_type_text(hints[f.name])}; default {shown})" + (f": {meaning}" if meaning else ""))
    return "\n".join(lines)


# -- reading the fields of configs -------------------------------------------------------------------------------

def knob_fields(config_cls) -> tuple[str, ...]:
    """The names of the fields of ``config_cls`` (a config class or instance) marked ``knob``, in declaration
    order."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("knob"))


def id_fields(config_cls) -> dict[str, str]:
    """{field: its short name in a run id} for the fields that enter run ids (knobs and fields with an ``id``)."""
    return {f.name: f.metadata.get("id", f.name) for f in dataclasses.fields(config_cls)
            if f.metadata.get("knob") or "id" in f.metadata}


def field_defaults(config_cls) -> dict:
    """{field: its default} for the fields of ``config_cls`` that have one."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def required_fields(config_cls) -> tuple[str, ...]:
    """The fields of ``config_cls`` without a default."""
    return tuple(f.name for f in dataclasses.fields(config_cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def knob_names(kind: str) -> tuple[str, ...]:
    """The knobs of model kind ``kind`` (config fields marked ``knob``); () for a kind that is not registered."""
    return knob_fields(MODELS[kind].Config) if kind in MODELS else ()


def all_knobs() -> tuple[str, ...]:
    """Every registered kind's knobs, each once, sorted by name: the knob columns of a results table."""
    return tuple(sorted({k for kind in MODELS for k in knob_names(kind)}))


def quiet_knobs() -> dict[str, object]:
    """{knob: its default} for the knobs marked ``quiet``: settings, like the KL schedules, that a summary shows only
    where some run sets them."""
    return {f.name: f.default for _, cls in MODELS.items() for f in dataclasses.fields(cls.Config)
            if f.metadata.get("knob") and f.metadata.get("quiet")}


def config_fields() -> tuple[str, ...]:
    """Every field of every registered kind's config, each once, in registration order."""
    return tuple(dict.fromkeys(f.name for _, cls in MODELS.items() for f in dataclasses.fields(cls.Config)))


def text_fields() -> tuple[str, ...]:
    """The fields of registered configs that hold text (str or str | None annotations), e.g. posterior."""
    return tuple(dict.fromkeys(name for _, cls in MODELS.items() for name, hint in _hints(cls.Config).items()
                               if str in (hint, *typing.get_args(hint))))


def _field_metadata(name: str, key: str):
    """The ``key`` entry of the metadata of field ``name`` in the first registered config that has it, else None."""
    for _, cls in MODELS.items():
        for f in dataclasses.fields(cls.Config):
            if f.name == name and key in f.metadata:
                return f.metadata[key]
    return None


def knob_symbol(name: str) -> str:
    """How figures write knob ``name``: the ``symbol`` in its field's metadata ("β"), else the name."""
    return _field_metadata(name, "symbol") or name


def knob_help(name: str) -> str:
    """What knob ``name`` is, in a few words for a table's caption (its ``help``), else ""."""
    return _field_metadata(name, "help") or ""


def kind_label(kind: str) -> str:
    """How tables and legends name model kind ``kind`` (its registered ``label``; the name itself otherwise)."""
    return MODELS.info(kind).get("label") or str(kind)


# -- the configs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingConfig:
    """How models train: what ``fit``, ``fit_many`` and ``run_grid`` take, declared once.

    A subclass may change defaults without declaring the fields again: ``class C(TrainingConfig,
    defaults=dict(epochs=150))`` (the field keeps its checks, help and place).
    """

    epochs: int = setting(10, "passes over the training split", low=1)
    batch_size: int = setting(128, "minibatch size", low=1)
    lr: float = setting(1e-3, "Adam step size", low=0, low_open=True)
    seeds: tuple[int, ...] = setting((0,), "one run per model and seed (weights, minibatch order and noise); fit and "
                                     "fit_many take the run's own seed", low=0, nonempty=True)
    device: str = setting("auto", "auto (GPU when present) | cpu | cuda", check=check_device)
    batched: bool = setting(True, "models of one architecture train as one batched model (fit_many); false: one "
                            "at a time")
    curves: bool = setting(False, "per-epoch test-split losses of every run (the side table history.csv)")
    log: str = setting("none", "none | tensorboard: each run's per-epoch training scalars in OUT/tensorboard/RUN_ID",
                       choices=LOGS)

    def __init_subclass__(cls, defaults: Mapping[str, Any] | None = None, **kwargs):
        """Give inherited fields new ``defaults`` (run before ``@dataclass`` reads the class)."""
        super().__init_subclass__(**kwargs)
        inherited = {f.name: f for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                     for f in dataclasses.fields(base)}
        own = dict(cls.__dict__.get("__annotations__", {}))
        for name, value in (defaults or {}).items():
            if name not in inherited:
                raise ValueError(f"{cls.__name__}: defaults names {name!r}, which is no inherited field; inherited: "
                                 f"{', '.join(inherited)}")
            own[name] = inherited[name].type
            setattr(cls, name, field(default=value, metadata=inherited[name].metadata))
        cls.__annotations__ = own

    def __post_init__(self):
        validate(self)

    @property
    def training(self) -> TrainingConfig:
        """The training settings alone (of an experiment's config, say)."""
        names = {f.name for f in dataclasses.fields(TrainingConfig)}
        return TrainingConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def replace(self, **changes) -> TrainingConfig:
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)


def _image_data(dataset: str) -> bool:
    return DATASETS.info(dataset).get("image_shape") is not None


@dataclass(frozen=True)
class ExperimentConfig(TrainingConfig, defaults=dict(epochs=150, seeds=(0, 1, 2))):
    """What every experiment's ``Config`` shares: the data, the networks and the training (``TrainingConfig``).

    An experiment's ``Config`` derives from it and declares only its grid (betas, latent sizes, ...), changing a
    shared default with ``defaults=`` (``class Config(ExperimentConfig, defaults=dict(hidden=(64, 64)))``) and
    adding its own cross-field checks in ``__post_init__`` after ``super().__post_init__()``. ``ACCEPTS`` (a class
    attribute) narrows the datasets it accepts.
    """

    ACCEPTS: ClassVar[tuple[str, ...] | None] = None  # the datasets this experiment takes (None: every registered)

    dataset: str = setting("digits", "the data (ibkit.data.load): digits | mnist | gaussian | ...", choices=DATASETS)
    hidden: tuple[int, ...] = setting((128, 128), "encoder widths of every model, mirrored by the decoder", low=1)
    network: str = setting("mlp", "encoder and decoder: mlp | conv (stride-2 convolutions on image data: digits, "
                           "mnist)", choices=("mlp", "conv"))
    channels: tuple[int, ...] = setting((32, 64), "conv: the channels of the convolutions", low=1)

    def __post_init__(self):
        super().__post_init__()
        if self.ACCEPTS is not None:
            check_choice("dataset", self.dataset, self.ACCEPTS)
        if self.network == "conv":
            self.network_fields()

    def network_fields(self, network: str | None = None) -> dict:
        """The model fields a network setting adds to each run: none for "mlp" (MLP run ids stay as they were),
        ``network="conv"`` and ``channels`` for convolutional networks, which need image data, and the data's
        ``image_shape`` where it is not the square single-channel image the network reads from the width alone
        (CIFAR-10's (3, 32, 32)), so that digits' and MNIST's run ids stay as they were."""
        network = network or self.network
        if network == "mlp":
            return {}
        if not _image_data(self.dataset):
            images = [name for name in DATASETS if _image_data(name)]
            raise ValueError(f"network='conv' needs image data (dataset {' or '.join(images)}); got "
                             f"dataset={self.dataset!r}")
        if not self.channels:
            raise ValueError(f"channels={self.channels!r} must be one or more positive channel counts, e.g. 32,64")
        fields: dict = {"network": "conv", "channels": tuple(self.channels)}
        shape = tuple(DATASETS.info(self.dataset)["image_shape"])
        if shape[0] != 1 or shape[1] != shape[2]:
            fields["image_shape"] = shape
        return fields


# -- one run of a grid -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a model kind, the config fields the grid sets, the seed and a label.

    kind:      a registered model kind ("vae").
    config:    the fields of the kind's config that the grid sets (latent_dim, hidden, beta, ...); input_dim and the
               likelihood come from the data when the model is built.
    seed:      the weight initialisation and the training's minibatch order and noise.
    label:     what sets the run apart from another of the same config in one grid (e.g. "frozen": trained on a frozen
               decoder); "" for none.
    trainable: "all", or "encoder" (the decoder and prior stay as built: ``fit``'s ``trainable``).
    """

    kind: str
    config: Mapping[str, Any]
    seed: int = 0
    label: str = ""
    trainable: str = "all"

    def __post_init__(self):
        MODELS[self.kind]  # an unknown kind: a ValueError naming the registered ones
        check_number("seed", self.seed, low=0, integer=True)
        check_choice("trainable", self.trainable, ("all", "encoder"))
        object.__setattr__(self, "config", dict(self.config))  # its own copy (a mapping proxy would not pickle)

    @property
    def model_config(self) -> type:
        return MODELS[self.kind].Config

    def get(self, name: str, default=None):
        """The value of config field ``name`` this run has: the grid's, else the kind's default, else ``default``."""
        if name == "seed":
            return self.seed
        return self.config.get(name, field_defaults(self.model_config).get(name, default))

    @property
    def run_id(self) -> str:
        """A readable id, unique within a grid: the kind, a posterior family other than the default, then each field
        that enters run ids (``latent_dim`` as d, the knobs, fields with an ``id``; a tuple joined by "x") that the
        grid sets, the label and the seed: 'vae-d8-beta0.5-seed0', 'vae-iaf-d8-beta1.0-seed2',
        'noisy_ae-d8-noise0.2-boundtanh-seed0', 'hvae-d12-beta1.0-layers8x4-bottom_up-seed0',
        'vae-full-d8-beta1.0-frozen-seed0'."""
        default = field_defaults(self.model_config).get("posterior")
        family = self.config.get("posterior", default)
        lead = "" if family == default else f"-{family}"
        parts = "".join(f"-{short}{_id_text(self.config[name])}" for name, short in id_fields(self.model_config).items()
                        if name in self.config)
        label = f"-{self.label}" if self.label else ""
        return f"{self.kind}{lead}{parts}{label}-seed{self.seed}"

    def build(self, ds):
        """The untrained model of this run for the dataset ``ds`` (its input width and likelihood), its decoder
        started at the data's marginal where the kind does so (``start_at_marginal``)."""
        cls = MODELS[self.kind]
        model = cls.build(input_dim=ds.input_dim, likelihood=ds.likelihood, seed=self.seed, **self.config)
        if model.STARTS_AT_MARGINAL:  # autoencoders: their codes would otherwise be pushed to one corner
            model.start_at_marginal(ds.train)
        return model

    def check_built(self, model) -> None:
        """A model from a ``build`` hook must be the run its spec names: every field the spec sets, as set."""
        config = getattr(model, "config", None)
        wanted = {**self.config, "seed": self.seed}
        wrong = {k: (getattr(config, k), v) for k, v in wanted.items()
                 if hasattr(config, k) and getattr(config, k) != v}
        if wrong:
            raise ValueError("the built model differs from its spec: " +
                             ", ".join(f"{k}={got!r} (spec: {want!r})" for k, (got, want) in wrong.items()))

    def batch_key(self) -> str:
        """What must be equal for runs to train as one batched model: all but the kind's knobs and the seed."""
        varying = set(knob_names(self.kind))
        fixed = sorted((k, v) for k, v in self.config.items() if k not in varying)
        return repr((self.kind, fixed, self.label, self.trainable))

    def columns(self) -> dict:
        """The results columns this run fixes: its posterior family ("" for a kind without one), latent_dim, a value
        for every registered knob (the grid's, else the config's default; NaN where the kind has no such knob), the
        seed, and the network where the grid names one (a run id has it, so the table does too)."""
        values = {**field_defaults(self.model_config), **self.config}
        own = knob_fields(self.model_config)
        knobs = {k: values.get(k, math.nan) if k in own else math.nan for k in all_knobs()}
        network = {"network": self.config["network"]} if "network" in self.config else {}
        return dict(run_id=self.run_id, kind=self.kind, posterior=values.get("posterior", ""),
                    latent_dim=self.config["latent_dim"], knobs=knobs, seed=self.seed, network=network)


def _id_text(value) -> str:
    """A field's value as a run id writes it: a tuple as its entries joined by "x" ((8, 4) -> "8x4")."""
    return "x".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


__all__ = ["setting", "checks_of", "validate", "coerce", "parse_value", "parse_overrides", "config_help",
           "check_device", "knob_fields", "id_fields", "field_defaults", "required_fields", "knob_names", "all_knobs",
           "quiet_knobs", "config_fields", "text_fields", "knob_symbol", "knob_help", "kind_label", "TrainingConfig",
           "ExperimentConfig", "RunSpec", "LOGS"]
