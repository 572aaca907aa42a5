"""The experiments ibkit ships. Each is a module or package with NAME, SUMMARY, a frozen ``Config``, ``QUICK``
(the overrides of ``--quick``), ``run(config, out_dir=None) -> DataFrame`` and ``plot(run_dir) -> paths``, which
draws its figures (and any generated text) from the tables stored in ``run_dir``, never retraining. An optional
``GROWS`` names the Config's grid lists (betas, seeds) that a finished folder may gain values in: the rerun trains
only the new runs.

They are registered in pyproject.toml under the ``ibkit.experiments`` entry-point group, and the command line finds
them there, with those of any other installed package (``ibkit.cli.experiment``). ``get`` and ``EXPERIMENTS``
(name -> module path) read the same registry, for code that used them."""

from __future__ import annotations

from types import ModuleType


def get(name: str) -> ModuleType:
    """The experiment module registered as ``name``; an unknown name is refused with the list of known ones."""
    from ibkit.cli import experiment

    return experiment(name)


def __getattr__(name: str) -> dict[str, str]:
    """``EXPERIMENTS``: the registered experiments, name -> module path, read from the registry when asked."""
    if name == "EXPERIMENTS":
        from ibkit.cli import registered_experiments

        return {key: ep.value for key, ep in registered_experiments().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
