"""Every extension point of ibkit, in one idiom: a ``Registry`` of names (CompressAI's ``MODELS``/``DATASETS``, timm's
``register_model``). This module imports nothing of ibkit but ``interface``, so any module may register into it and
none of them forms a circle through it.

- ``MODELS`` (``register_model``): model classes with a ``Config`` dataclass; info: label, marker, colour, line.
- ``DATASETS`` (``register_dataset``): loaders ``load(**options) -> Dataset``; info: image_shape, reference.
- ``POSTERIORS`` (``register_posterior``): posterior families (``PosteriorFamily`` subclasses); info: colour.
- ``LIKELIHOODS`` (``register_likelihood``): decoder likelihoods (``Likelihood`` subclasses).
- ``COLUMNS`` (``register_column``): estimator columns ``f(model, x, seed) -> float``; info: help.

Experiments are packages registered as entry points (group ``ibkit.experiments``) of an installed package:
``experiments()`` lists them and ``experiment(name)`` loads one, checked against the ``Experiment`` protocol.

Each registry is the only list of its names: code that needs the names iterates it (``for name in DATASETS``),
asks it (``name in POSTERIORS``) or reads an entry's info (``DATASETS.info("mnist")["image_shape"]``), and an
unknown name is a ValueError listing the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, TypeVar

from ibkit.interface import Experiment

T = TypeVar("T")

EXPERIMENT_GROUP = "ibkit.experiments"  # the entry-point group experiments register under


class Registry:
    """Names to entries, with a dict of info per entry, in registration order.

    ``REGISTRY[name]`` returns the entry (a ValueError names the registered ones and how to add one);
    ``name in REGISTRY``, ``iter(REGISTRY)`` and ``len(REGISTRY)`` work as for a dict of names.

    Args:
        what: how errors name an entry ("dataset").
        argument: the argument that names an entry ("kind"), for the error message.
        decorator: how a user adds one, for the error message.
    """

    def __init__(self, what: str, argument: str, decorator: str):
        self.what = what  # "dataset": how errors name an entry
        self.argument = argument  # the argument that names an entry ("kind"), for the error message
        self.decorator = decorator  # how a user adds one, for the error message
        self._entries: dict[str, Any] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def add(self, name: str, entry: T, **info) -> T:
        """Register ``entry`` under ``name`` (replacing an earlier one of that name), with ``info``.

        Args:
            name: an identifier (letters, digits, underscores).
            entry: what ``REGISTRY[name]`` returns.
            **info: what ``info(name)`` returns beside it.

        Returns:
            ``entry``, unchanged.

        Raises:
            ValueError: a name that is not an identifier.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.what} name {name!r} must be a name of letters, digits and underscores, "
                             "e.g. 'my_name'")
        self._entries[name] = entry
        self._info[name] = dict(info)
        return entry

    def remove(self, name: str) -> None:
        """Unregister ``name`` (nothing happens if it is not registered): for tests and plugins that clean up.

        Args:
            name: the registered name.
        """
        self._entries.pop(name, None)
        self._info.pop(name, None)

    def register(self, name: str, **info) -> Callable[[T], T]:
        """Decorator form of ``add``: ``@REGISTRY.register("name", key=value)``.

        Args:
            name: an identifier (letters, digits, underscores).
            **info: what ``info(name)`` returns beside the entry.

        Returns:
            the decorator, which registers its argument and returns it unchanged.
        """
        return lambda entry: self.add(name, entry, **info)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"{self.argument}={name!r} is not a registered {self.what}; registered: "
                             f"{', '.join(self._entries)} "
                             f"(add one with {self.decorator})") from None

    def info(self, name: str) -> dict[str, Any]:
        """What was registered with ``name`` beside its entry ({} for a name not registered).

        Args:
            name: the registered name.

        Returns:
            the info dict.
        """
        return self._info.get(name, {})

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, Any]]:
        """The (name, entry) pairs in registration order.

        Returns:
            the pairs.
        """
        return list(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self._entries)})"


MODELS: Registry = Registry("model kind", "kind", "@ibkit.register_model")
DATASETS: Registry = Registry("dataset", "name", "@ibkit.registry.register_dataset")
POSTERIORS: Registry = Registry("posterior family", "posterior", "@ibkit.registry.register_posterior")
LIKELIHOODS: Registry = Registry("likelihood", "likelihood", "@ibkit.registry.register_likelihood")
COLUMNS: Registry = Registry("estimator column", "name", "@ibkit.registry.register_column")


def register_model(kind: str, *, label: str | None = None, marker: str | None = None, colour: int | None = None,
                   line: bool = True) -> Callable[[type], type]:
    """Class decorator: register a model class under ``kind`` (it gets ``KIND = kind``).

    Args:
        kind: the name ``build_model(kind=...)`` takes.
        label: how tables and legends name the kind (default: ``kind``).
        marker: the matplotlib marker figures draw it with.
        colour: an index into seaborn's "colorblind" palette.
        line: whether a sweep's points are joined. ``ibkit.plots.kind_style`` fills what is not given.

    The class needs a ``Config`` attribute, a dataclass of its fields (a subclass of ``ibkit.models.ModelConfig``).

    Returns:
        the class decorator; it returns the class.

    Raises:
        ValueError: (when the decorator is applied) a class without a dataclass ``Config``.
    """
    def register(cls: type) -> type:
        import dataclasses

        config = getattr(cls, "Config", None)
        if config is None or not dataclasses.is_dataclass(config):
            raise ValueError(f"register_model({kind!r}): {cls.__name__} needs a Config attribute, a dataclass of its "
                             "fields (e.g. a subclass of ibkit.models.VAEConfig)")
        MODELS.add(kind, cls, label=label or kind, marker=marker, colour=colour, line=line)
        cls.KIND = kind  # type: ignore[attr-defined]
        return cls

    return register


def register_dataset(name: str, *, image_shape: tuple[int, int, int] | None = None,
                     reference: str | None = None) -> Callable[[T], T]:
    """Decorator on a loader ``load(**options) -> ibkit.data.Dataset``: ``ibkit.data.load(name, **options)`` calls it.

    Args:
        name: the dataset's name (``--set dataset=NAME``, ``ibkit analyse --data NAME``).
        image_shape: (C, H, W) of one example where the rows are images, so that ``network="conv"`` may read them;
            None for data that is no image.
        reference: the folder of ``results/`` holding the committed rate-distortion sweep on it, which
            ``ibkit analyse`` draws a model beside; None where there is none.

    Returns:
        the decorator; it returns the loader unchanged.
    """
    return DATASETS.register(name, image_shape=image_shape, reference=reference)


def register_posterior(name: str, *, colour: int | None = None) -> Callable[[T], T]:
    """Class decorator on a posterior family (``ibkit.models.posteriors.PosteriorFamily``): ``posterior=name``.

    Args:
        name: what ``build_model("vae", ..., posterior=name)`` and ``ibkit.wrap(posterior=name)`` take.
        colour: its colour in figures that compare families (an index into seaborn's "colorblind" palette).

    Returns:
        the class decorator; it returns the class unchanged.
    """
    return POSTERIORS.register(name, colour=colour)


def register_likelihood(name: str) -> Callable[[T], T]:
    """Class decorator on a decoder likelihood (``ibkit.models.likelihoods.Likelihood``): ``likelihood=name``.

    Args:
        name: what ``build_model(..., likelihood=name)`` takes.

    Returns:
        the class decorator; it returns the class unchanged.
    """
    return LIKELIHOODS.register(name)


def register_column(name: str, *, help: str = "") -> Callable[[T], T]:
    """Decorator on an estimator column ``f(model, x, seed) -> float``: every model ``ibkit analyse`` measures and
    every run an experiment evaluates gains the column ``name`` (per split), computed on that split's rows.

    Args:
        name: the column's name in ``runs.csv`` and the report.
        help: what it measures, with its unit (nats unless said).

    Returns:
        the decorator; it returns the function unchanged.
    """
    return COLUMNS.register(name, help=help)


def experiments() -> dict[str, EntryPoint]:
    """The experiments the installed packages register (entry-point group ``ibkit.experiments``), by name.

    Returns:
        {name: entry point}, sorted by name; nothing is imported.
    """
    return {ep.name: ep for ep in sorted(entry_points(group=EXPERIMENT_GROUP), key=lambda ep: ep.name)}


def experiment(name: str | None, known: dict[str, EntryPoint] | None = None) -> ModuleType:
    """The experiment module registered as ``name``, checked against the ``Experiment`` protocol.

    Args:
        name: the experiment's registered name.
        known: what ``experiments()`` returned, for a caller loading several (each call of ``experiments()`` reads
            every installed package's entry points); None reads them.

    Returns:
        the imported module.

    Raises:
        ValueError: an unknown name (with the registered ones), or a module lacking what an experiment defines.
    """
    known = experiments() if known is None else known
    if name not in known:
        raise ValueError(f"unknown experiment {name!r}; known experiments: {', '.join(known)}")
    module = known[name].load()
    missing = [attr for attr in Experiment.__annotations__ if not hasattr(module, attr)] + \
        [attr for attr in ("run", "plot") if not callable(getattr(module, attr, None))]
    if missing:
        raise ValueError(f"experiment {name!r} ({known[name].value}) lacks {', '.join(missing)}: an experiment "
                         "module defines NAME, SUMMARY, Config, QUICK, run(config, out_dir, executor) and "
                         "plot(run_dir, command)")
    return module


__all__ = ["Registry", "MODELS", "DATASETS", "POSTERIORS", "LIKELIHOODS", "COLUMNS", "register_model",
           "register_dataset", "register_posterior", "register_likelihood", "register_column", "experiments",
           "experiment", "EXPERIMENT_GROUP"]
