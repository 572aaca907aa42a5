"""The table a paper cites: one row per configuration, each metric as mean ± a 95% interval over seeds.

The interval is the percentile bootstrap over seeds (10,000 resamples of the seeds' values, Efron & Tibshirani
1993, ch. 13), printed as the mean ± the interval's half-width and rounded to it (the half-width to two significant
digits, the mean to the same decimal place). One seed has no interval: its value is printed alone. CSV keeps full
precision, with the interval's ends in ``METRIC_lo`` / ``METRIC_hi`` columns.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

METRICS = ("rate", "distortion", "elbo", "iwae", "mi_lower", "mi_upper", "active_units")
CONFIG_COLUMNS = ("kind", "posterior", "latent_dim", "beta", "noise", "sparsity", "code_bound")
FORMATS = ("markdown", "latex", "csv")


def bootstrap_interval(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """(low, high): the percentile bootstrap interval of the mean of ``values`` at ``level``; NaNs for fewer
    than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def round_to_uncertainty(mean: float, half_width: float) -> str:
    """'4.90 ± 0.05': the half-width to two significant digits, the mean to the same decimal place."""
    if math.isnan(mean):
        return "–"
    if math.isnan(half_width) or half_width <= 0:
        return f"{mean:.4g}" if half_width != 0 else f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(half_width)))
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def interval_text(values) -> str:
    """'m ± h' for the values of several seeds (h: half-width of the 95% bootstrap interval, rounded as in the
    tables), the value alone for one, '–' for none."""
    values = pd.Series(values).dropna()
    if not len(values):
        return "–"
    lo, hi = bootstrap_interval(values)
    return round_to_uncertainty(values.mean(), (hi - lo) / 2)


def summarise(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per configuration (the config columns a run folder varies): seeds, and for each metric its mean and the
    95% bootstrap interval over seeds (``METRIC``, ``METRIC_lo``, ``METRIC_hi``)."""
    ok = df[(df["split"] == split) & (df["status"] == "ok")]
    metrics = [m for m in METRICS if m in ok and ok[m].notna().any()]
    keys = [c for c in CONFIG_COLUMNS if c in ok and ok[c].notna().any() and (ok[c].astype(str) != "").any()]
    keys = keys or ["run_id"]
    rows = []
    for key, g in ok.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)), seeds=g["seed"].nunique())
        for m in metrics:
            values = g[m].dropna()
            row[m] = values.mean() if len(values) else math.nan
            row[f"{m}_lo"], row[f"{m}_hi"] = bootstrap_interval(values)
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame, fmt: str = "markdown", split: str = "test") -> str:
    """The summary of a results table as markdown, booktabs LaTeX (a tabular to ``\\input``) or CSV."""
    summary = summarise(df, split)
    if not len(summary):
        return "no run finished ok: see the status and error columns of runs.csv"
    if fmt == "csv":
        return summary.to_csv(index=False).rstrip("\n")
    metrics = [m for m in METRICS if m in summary]
    keys = [c for c in summary.columns if c not in metrics and not c.endswith(("_lo", "_hi")) and c != "seeds"]
    header = keys + ["seeds"] + [f"{m} (nats)" if m != "active_units" else m for m in metrics]
    body = []
    for _, r in summary.iterrows():
        cells = [_cell(r[k]) for k in keys] + [str(r["seeds"])]
        cells += [round_to_uncertainty(r[m], (r[f"{m}_hi"] - r[f"{m}_lo"]) / 2) for m in metrics]
        body.append(cells)
    if fmt == "latex":
        def tex(cell: str) -> str:
            return cell.replace("_", r"\_").replace(" ± ", r" $\pm$ ").replace("–", "--")

        lines = [r"% mean $\pm$ half-width of the 95% bootstrap interval over seeds; nats per example",
                 r"\begin{tabular}{" + "l" * len(keys) + "r" * (1 + len(metrics)) + "}", r"\toprule",
                 " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(tex(c) for c in cells) + r" \\" for cells in body]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines + ["", "mean ± half-width of the 95% bootstrap interval over seeds; nats per example"])


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:g}"
    return str(value) or "–"
