"""The experiments ibkit ships, one package each (``ibkit.interface.Experiment`` says what each defines: NAME,
SUMMARY, a ``Config`` on ``ibkit.config.ExperimentConfig`` declaring only its grid, ``QUICK``, ``run`` and ``plot``;
an optional ``GROWS`` names the Config's grid lists that a finished folder may gain values in).

They are registered in pyproject.toml under the ``ibkit.experiments`` entry-point group; ``ibkit.registry.experiment``
loads one by name, as the command line does. ``get`` and ``EXPERIMENTS`` (name -> module path) read that registry,
for scripts that used them."""

from __future__ import annotations

from types import ModuleType


def get(name: str) -> ModuleType:
    """The experiment module registered as ``name`` (``ibkit.registry.experiment``)."""
    from ibkit.registry import experiment

    return experiment(name)


def __getattr__(name: str) -> dict[str, str]:
    """``EXPERIMENTS``: the registered experiments, name -> module path (``ibkit.registry.experiments``)."""
    if name == "EXPERIMENTS":
        from ibkit.registry import experiments

        return {key: ep.value for key, ep in experiments().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
