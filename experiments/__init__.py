"""The experiments ``ibkit run`` knows. Each module has NAME, SUMMARY, a frozen ``Config``, ``QUICK``
(the overrides of ``--quick``), ``run(config, out_dir=None) -> DataFrame`` and ``plot(run_dir) -> paths``,
which draws its figures (and any generated text) from the tables stored in ``run_dir``, never retraining."""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS = {
    "rate-distortion": "experiments.rate_distortion",
    "information-flow": "experiments.information_flow",
    "posterior-families": "experiments.posterior_families",
}


def get(name: str) -> ModuleType:
    """The experiment module called ``name``; an unknown name is refused with the list of known ones."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])
