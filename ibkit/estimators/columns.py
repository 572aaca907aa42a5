"""The registered estimator columns (``ibkit.registry.register_column``), measured where ibkit measures a model:
every run of an experiment (``ibkit.sweep.run_grid``, per split) and every ``ibkit.analyse`` report."""

from __future__ import annotations

import math

from torch import Tensor

from ibkit.registry import COLUMNS


def registered_columns(model, x: Tensor | None, seed: int = 0) -> dict[str, float]:
    """Every registered column of ``model`` on the rows x [N, D].

    Args:
        model: any model an estimator takes.
        x: the rows of one split; None (a split the data lacks) gives no columns.
        seed: the randomness of the columns that draw.

    Returns:
        {column name: its value} (NaN where a column returns None), {} for x None.
    """
    if x is None:
        return {}
    values = {name: column(model, x, seed) for name, column in COLUMNS.items()}
    return {name: math.nan if value is None else float(value) for name, value in values.items()}


def column_help(name: str) -> str:
    """What the registered column ``name`` measures (its ``help``), "" where it said nothing."""
    return COLUMNS.info(name).get("help", "")


__all__ = ["registered_columns", "column_help"]
