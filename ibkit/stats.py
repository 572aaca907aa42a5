"""The statistics every table, figure and findings sentence reports: 95% intervals and numbers rounded to them.

The interval is the percentile bootstrap (Efron & Tibshirani 1993, ch. 13): over seeds (10,000 resamples of the
seeds' values) for a configuration run with several, over a split's test examples (``over_examples``, 2,000
resamples, stored by the run as ``METRIC_ex_lo`` / ``METRIC_ex_hi``) for one run with one seed. A number is printed
as the mean ± the interval's half-width, rounded to it: the half-width to two significant digits, the mean to the same
decimal place (``round_to_uncertainty``).

Experiments call ``over_examples`` while evaluating; ``ibkit.tables`` and ``ibkit.prose`` read the rest.
"""

from __future__ import annotations

import math

import numpy as np

EXAMPLE_RESAMPLES = 2_000  # of a split's examples (N up to tens of thousands): enough for a 95% percentile interval


def bootstrap_interval(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values``, resampled in blocks of about 4M indices, so
    memory does not grow with N.

    Args:
        values: the values [N] (one per seed, or per example).
        level: the interval's coverage (0.95: the 2.5th and 97.5th percentiles of the resampled means).
        resamples: how many resamples of N values with replacement.
        seed: the resampling's seed (the same values give the same interval).

    Returns:
        (low, high); NaNs for fewer than two values.
    """
    return bootstrap_intervals(np.asarray(values, dtype=float)[:, None], level, resamples, seed)[0]


def bootstrap_intervals(columns: np.ndarray, level: float = 0.95, resamples: int = 10_000,
                        seed: int = 0) -> list[tuple[float, float]]:
    """``bootstrap_interval`` of each column of ``columns``, every column resampled with the same rows (the same
    draws as ``bootstrap_interval`` of that column alone, drawn once for all M).

    Args:
        columns: [N, M], M metrics of the same N examples (or seeds).
        level, resamples, seed: as ``bootstrap_interval``'s.

    Returns:
        M (low, high) pairs, in the order of the columns; NaNs for N < 2.
    """
    n, width = columns.shape
    if n < 2:
        return [(math.nan, math.nan)] * width
    rng = np.random.default_rng(seed)
    block = max(1, 2**22 // n)
    means = np.empty((resamples, width))
    for i in range(0, resamples, block):
        rows = rng.integers(0, n, size=(min(block, resamples - i), n))
        for j in range(width):
            means[i: i + len(rows), j] = np.take(columns[:, j], rows).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)
    return [(float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)]


def over_examples(**per_example) -> dict[str, float]:
    """Each metric's mean over a split's examples and the 95% percentile-bootstrap interval of that mean over the
    examples (``EXAMPLE_RESAMPLES`` resamples): the interval a table reports for a configuration run with one seed.
    Metrics of one length are resampled together.

    Args:
        **per_example: metric name -> its per-example values [N] (e.g. ``E.rate(model, x, per_example=True)``).

    Returns:
        {METRIC: mean, METRIC_ex_lo: low, METRIC_ex_hi: high} for each metric.
    """
    values = {name: np.asarray(v, dtype=float) for name, v in per_example.items()}
    intervals: dict[str, tuple[float, float]] = {}
    for n in dict.fromkeys(len(v) for v in values.values()):
        names = [name for name, v in values.items() if len(v) == n]
        columns = np.stack([values[name] for name in names], axis=1)  # [N, metrics]
        intervals.update(zip(names, bootstrap_intervals(columns, resamples=EXAMPLE_RESAMPLES), strict=True))
    out = {}
    for name, v in values.items():
        out[name] = float(v.mean())
        out[f"{name}_ex_lo"], out[f"{name}_ex_hi"] = intervals[name]
    return out


def round_to_uncertainty(mean: float, half_width: float) -> str:
    """'4.90 ± 0.05': the half-width to two significant digits, the mean to the same decimal place (at most six
    significant digits of the mean: '5.86091 ± 0.00000' for an interval narrower than that).

    Args:
        mean: the value; NaN prints as '–'.
        half_width: the half-width of its interval; NaN (or below 0) prints the mean alone to four significant
            digits, 0 as 'm ± 0'.

    Returns:
        the text.
    """
    if math.isnan(mean):
        return "–"
    if math.isnan(half_width) or half_width <= 0:
        return f"{mean:.4g}" if half_width != 0 else f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(half_width)))
    if mean != 0:  # an interval far inside the last digit (a saturated bound) gets six significant digits, not 20
        decimals = min(decimals, max(0, 5 - math.floor(math.log10(abs(mean)))))
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def mean_half_width(values, se=None) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its 95% interval: the bootstrap over seeds, or for one value
    1.96 times its standard error ``se`` where given.

    Args:
        values: one value per seed (NaNs dropped).
        se: the standard errors of the values (read for one value only), or None.

    Returns:
        (mean, half-width); (NaN, NaN) for no value, a NaN half-width for an infinite value or one value without a
        standard error.
    """
    import pandas as pd

    values = pd.Series(values, dtype=float).dropna()
    if not len(values):
        return math.nan, math.nan
    if np.isinf(values).any():
        return float(values.mean()), math.nan
    if len(values) == 1:
        se_value = pd.Series(se, dtype=float).dropna() if se is not None else pd.Series(dtype=float)
        return float(values.iloc[0]), 1.96 * float(se_value.iloc[0]) if len(se_value) else math.nan
    lo, hi = bootstrap_interval(values)
    return float(values.mean()), (hi - lo) / 2


def interval_text(values) -> str:
    """'m ± h' for the values of several seeds (h: half-width of the 95% bootstrap interval, rounded as in the
    tables), the value alone for one, '–' for none."""
    return round_to_uncertainty(*mean_half_width(values))


def within_error(lower: float, lower_hw: float, upper: float, upper_hw: float) -> bool:
    """Whether an inverted pair (lower estimate above the upper one) is within the two estimates' 95% errors:
    lower - upper <= sqrt(lower_hw² + upper_hw²), a NaN half-width counting as 0."""
    return lower - upper <= math.hypot(np.nan_to_num(lower_hw), np.nan_to_num(upper_hw))


__all__ = ["EXAMPLE_RESAMPLES", "bootstrap_interval", "bootstrap_intervals", "over_examples", "round_to_uncertainty",
           "mean_half_width", "interval_text", "within_error"]
