"""The table a paper cites: one row per configuration, each metric as mean ± a 95% interval.

The interval is the percentile bootstrap over seeds (10,000 resamples of the seeds' values, Efron & Tibshirani
1993, ch. 13), printed as the mean ± the interval's half-width and rounded to it (the half-width to two significant
digits, the mean to the same decimal place). A configuration with one seed gets the percentile bootstrap over its
test examples instead, where the run stored one (``over_examples``: ``METRIC_ex_lo`` / ``METRIC_ex_hi``); the
``interval`` column and the table's note say which. Without either the value is printed alone. CSV keeps full
precision, with the interval's ends in ``METRIC_lo`` / ``METRIC_hi`` columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ibkit.models.registry import all_knobs, config_fields, kind_style, knob_help, knob_names, knob_symbol, quiet_knobs

METRICS = ("rate", "distortion", "elbo", "iwae", "mi_lower", "mi_upper", "active_units")
FORMATS = ("markdown", "latex", "csv")


EXAMPLE_RESAMPLES = 2_000  # of a split's examples (N up to tens of thousands): enough for a 95% percentile interval


def bootstrap_interval(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """(low, high): the percentile bootstrap interval of the mean of ``values`` at ``level``; NaNs for fewer
    than two values. Resampled in blocks of about 4M indices, so memory does not grow with N."""
    return bootstrap_intervals(np.asarray(values, dtype=float)[:, None], level, resamples, seed)[0]


def bootstrap_intervals(columns: np.ndarray, level: float = 0.95, resamples: int = 10_000,
                        seed: int = 0) -> list[tuple[float, float]]:
    """``bootstrap_interval`` of each column of ``columns`` [N, M], every column resampled with the same rows (the
    same draws as ``bootstrap_interval`` of that column alone, drawn once for all M)."""
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
    examples (``METRIC_ex_lo``, ``METRIC_ex_hi``): the interval a table reports for a configuration run with one
    seed. Keywords: metric name -> per-example values [N] (e.g. ``E.rate(model, x, per_example=True)``); metrics of
    one length are resampled together."""
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
    significant digits of the mean: '5.86091 ± 0.00000' for an interval narrower than that)."""
    if math.isnan(mean):
        return "–"
    if math.isnan(half_width) or half_width <= 0:
        return f"{mean:.4g}" if half_width != 0 else f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(half_width)))
    if mean != 0:  # an interval far inside the last digit (a saturated bound) gets six significant digits, not 20
        decimals = min(decimals, max(0, 5 - math.floor(math.log10(abs(mean)))))
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def interval_text(values) -> str:
    """'m ± h' for the values of several seeds (h: half-width of the 95% bootstrap interval, rounded as in the
    tables), the value alone for one, '–' for none."""
    return round_to_uncertainty(*_mean_half_width(values))


def _mean_half_width(values, se=None) -> tuple[float, float]:
    """The mean of ``values`` (one per seed) and the half-width of its 95% interval: the bootstrap over seeds, or
    for one value 1.96 times its standard error ``se`` where given (NaN otherwise)."""
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


def within_error(lower: float, lower_hw: float, upper: float, upper_hw: float) -> bool:
    """Whether an inverted pair (lower estimate above the upper one) is within the two estimates' 95% errors."""
    return lower - upper <= math.hypot(np.nan_to_num(lower_hw), np.nan_to_num(upper_hw))


MARK_SYMBOLS = {"clipped": "†", "equal": "‡", "above": "§"}
BRACKET_MARKS = {"clipped": "a negative estimate of I(X;Z) >= 0, shown as 0 (its value and error in runs.csv)",
                 "equal": "the lower estimate exceeded the upper one within their errors: equal within error, both "
                          "shown as the upper",
                 "above": "the lower estimate exceeded the upper one beyond their 95% errors (an estimator's bias at "
                          "this sample size: I(X;Z) <= the upper bound holds exactly): both shown as the upper"}


def bracket_cells(lower: float, lower_hw: float, upper: float, upper_hw: float) -> tuple[str, str, set[str]]:
    """The table cells of a bracket lower <= I(X;Z) <= upper ('m ± h' each) and the marks they need (keys of
    ``BRACKET_MARKS``): "∞" where no upper bound exists; a negative end clipped at 0 ("clipped"); an inverted pair
    printed as one value, the upper, marked as equal within error ("equal") or as the lower estimate's excess
    beyond error ("above"); never an inverted or negative interval."""
    marks = set()
    if lower > upper:  # I(X;Z) <= upper holds exactly; InfoNCE is below I only in expectation
        marks.add("equal" if within_error(lower, lower_hw, upper, upper_hw) else "above")
        lower, lower_hw = upper, upper_hw
    cells = []
    for value, hw in ((lower, lower_hw), (upper, upper_hw)):
        if math.isinf(value) and value > 0:
            cells.append("∞")
        elif value < 0:
            cells.append("0")
            marks.add("clipped")
        else:
            cells.append(round_to_uncertainty(value, hw))
    return cells[0], cells[1], marks


def bracket_text(lower, upper, lower_se=None, upper_se=None, unbounded: str = "no upper bound exists") -> str:
    """I(X;Z)'s bracket in words for a findings sentence, from the values of several seeds (or one, with its
    standard errors): 'between A and B'; 'at least A (unbounded above: ...)' where the upper bound is +inf; a
    negative end clipped at 0 and said so; 'equal within error: about B' where the lower estimate exceeds the
    upper within error. Never an inverted or negative interval."""
    lo, lo_hw = _mean_half_width(lower, lower_se)
    up, up_hw = _mean_half_width(upper, upper_se)
    if math.isnan(lo) and math.isnan(up):
        return "not measured"
    low_text, up_text, marks = bracket_cells(lo, lo_hw, up, up_hw)
    pair = f"the lower estimate {round_to_uncertainty(lo, lo_hw)} and the upper {round_to_uncertainty(up, up_hw)}"
    notes = [f"{pair} are equal within error"] if "equal" in marks else []
    notes += [f"{pair}: the lower exceeds the upper beyond their errors, an estimator's bias at this sample size"
              ] if "above" in marks else []
    notes += ["a negative estimate, clipped at 0: I(X;Z) >= 0"] if "clipped" in marks else []
    if math.isinf(up):
        return f"at least {low_text} (unbounded above: {'; '.join([unbounded, *notes])})"
    said = f" ({'; '.join(notes)})" if notes else ""
    if marks & {"equal", "above"}:
        return f"about {up_text}{said}"
    if low_text == up_text:  # "between 0 and 0": the two ends print alike (both clipped at 0, or a saturated pair)
        return f"about {up_text} ({'; '.join(['the lower and the upper bound alike at this precision', *notes])})"
    return f"between {low_text} and {up_text}{said}"


def direction(diff) -> str:
    """'higher', 'lower' or 'no different' by the interval printed beside it (``interval_text``: the mean of the
    paired differences over seeds ± the half-width of its 95% bootstrap interval), so that a sentence never calls
    "higher" a difference shown as 1.0 ± 1.3; for one seed the sign of the mean, said so."""
    values = pd.Series(diff).dropna()
    lo, hi = bootstrap_interval(values)
    if math.isnan(lo):
        return ("higher" if values.mean() > 0 else "lower") + " (one seed: no interval)"
    mean, half = values.mean(), (hi - lo) / 2
    return "higher" if mean - half > 0 else "lower" if mean + half < 0 else "no different (the interval contains 0)"


def plural(n, noun: str, nouns: str | None = None) -> str:
    """'1 seed', '3 seeds', '0 seeds', '1,438 rows': the count and the noun, singular only for exactly one
    (``nouns``: the plural where it is not ``noun`` + 's')."""
    number = f"{int(n):,}" if float(n).is_integer() else f"{n:g}"
    return f"{number} {noun if n == 1 else nouns or noun + 's'}"


def count_text(values, noun: str, nouns: str | None = None) -> str:
    """A count over seeds in words: '1 active unit' (one seed), '8 active units in every seed' (every seed the same
    count, never '8 ± 0'), '7.3 ± 1.0 active units' where they differ (``interval_text``), '– active units' for
    none."""
    values = pd.Series(values, dtype=float).dropna()
    if len(values) and (values == values.iloc[0]).all():
        return plural(values.iloc[0], noun, nouns) + (" in every seed" if len(values) > 1 else "")
    return f"{interval_text(values)} {nouns or noun + 's'}"


def collapse_text(active_units) -> str:
    """'; its code collapsed in 3 of 3 seeds (no active unit: ...)' for runs whose code carries nothing the
    decoder uses (``active_units`` 0), '' when no seed did: a findings line must not read a dead code as a result."""
    units = pd.Series(active_units).dropna()
    dead = int((units == 0).sum())
    if not dead:
        return ""
    return (f"; its code collapsed in {dead} of {plural(len(units), 'seed')} (no active unit: "
            "the same code for every x, so the decoder can only draw the average image)")


# columns an experiment may add that set runs of one config apart: the decoder (learned, frozen), the training
# schedule (none, warmup, free_bits, aggressive: aggressive training is no knob, so no other column tells it)
SETTING_COLUMNS = ("decoder", "schedule")


def config_columns() -> tuple[str, ...]:
    """The columns that tell one configuration from another: the source folder (in a table ``ibkit compare`` put
    together), kind, posterior family, the decoder it was trained with (learned, frozen, generating) and its schedule
    (where an experiment stores them), latent_dim, the knobs of every registered kind, then their other config fields
    (those an experiment stores as columns, e.g. code_bound)."""
    lead = ("source", "kind", "posterior", *SETTING_COLUMNS, "latent_dim", *all_knobs())
    return lead + tuple(f for f in config_fields() if f not in lead and f != "seed")


def summarise(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per configuration (the config columns a run folder varies): seeds, and for each metric its mean and a 95%
    bootstrap interval (``METRIC``, ``METRIC_lo``, ``METRIC_hi``): over seeds, or for one seed over the split's
    examples where the run stored that interval; ``interval`` says which ("seeds", "examples" or "none")."""
    ok = df[(df["split"] == split) & (df["status"] == "ok")]
    metrics = [m for m in METRICS if m in ok and ok[m].notna().any()]
    quiet = quiet_knobs()  # a schedule no run sets (every value its default, off) is no column
    keys = [c for c in config_columns() if c in ok and ok[c].notna().any() and (ok[c].astype(str) != "").any()
            and not (c in quiet and (ok[c].dropna() == quiet[c]).all())]
    keys = keys or ["run_id"]
    rows = []
    for key, g in ok.groupby(keys, dropna=False, sort=True):
        seeds = g["seed"].nunique()
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True), seeds=seeds,
                   interval="seeds" if seeds > 1 else "none")
        for m in metrics:
            values = g[m].dropna()
            row[m] = values.mean() if len(values) else math.nan
            row[f"{m}_lo"], row[f"{m}_hi"] = bootstrap_interval(values) if np.isfinite(values).all() else (
                math.nan, math.nan)  # an unbounded bound (+inf) has no interval
            if len(values) == 1 and f"{m}_ex_lo" in g and g[f"{m}_ex_lo"].notna().any():
                row[f"{m}_lo"], row[f"{m}_hi"] = g[f"{m}_ex_lo"].iloc[0], g[f"{m}_ex_hi"].iloc[0]
                row["interval"] = "examples"
            elif len(values) == 1 and f"{m}_se" in g and g[f"{m}_se"].notna().any():  # 95%: 1.96 standard errors
                se = float(g[f"{m}_se"].dropna().iloc[0])
                row[f"{m}_lo"], row[f"{m}_hi"] = row[m] - 1.96 * se, row[m] + 1.96 * se
                row["interval"] = "examples"
        rows.append(row)
    return pd.DataFrame(rows)


def left_out(df: pd.DataFrame, split: str = "test") -> str:
    """A sentence naming the runs that tables and figures leave out (status other than "ok": diverged or failed),
    by status, or "" when every run finished: nothing is dropped silently."""
    bad = df[(df["split"] == split) & (df["status"] != "ok")]
    if not len(bad):
        return ""
    parts = [f"{len(g)} {status} ({', '.join(g['run_id'])})" for status, g in bad.groupby("status")]
    return f"left out: {'; '.join(parts)}; see the status and error columns of runs.csv"


LATEX_METRICS = ("rate", "distortion", "elbo", "iwae", "mi_lower", "mi_upper")  # a paper's table: the default metrics
HEADERS = {"latent_dim": "$d$", "seeds": "seeds", "rate": "$R$ (nats)", "distortion": "$D$ (nats)",
           "elbo": "ELBO (nats)", "iwae": r"$\log p(x) \geq$ (IWAE, nats)", "mi_lower": r"$I(X;Z) \geq$ (nats)",
           "mi_upper": r"$I(X;Z) \leq$ (nats)", "active_units": "active units"}
SYMBOLS = {"latent_dim": ("$d$", "latent dimensions"),  # the symbol headers that are no knob, for the caption
           "rate": ("$R$", r"the rate, mean $\mathrm{KL}(q(z|x) \,\|\, p(z))$"),
           "distortion": ("$D$", r"the distortion, mean $-\log p(x|z)$")}
GREEK = {"α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "λ": r"\lambda", "σ": r"\sigma", "τ": r"\tau"}
KNOB_TOLERANCE = 0.01  # a knob's printed value is within 1% of the one trained


def knob_digits(values, tolerance: float = KNOB_TOLERANCE) -> int:
    """The significant digits a knob column is printed to: the fewest, at least 2, that keep its distinct values
    distinct and print each within ``tolerance`` (relative) of itself. For the grid ``np.geomspace(0.05, 20, 10)``
    (0.05, 0.0973, ..., 10.2781, 20) that is 3: two would already keep the grid apart but print 10.2781 as 10, 2.7%
    off and read as a round number; three print 10.3."""
    grid = pd.Series(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    grid = grid[np.isfinite(grid)].unique()
    for digits in range(2, 17):
        printed = [float(f"{v:.{digits}g}") for v in grid]
        if len(set(printed)) == len(grid) and all(abs(p - v) <= tolerance * abs(v) for p, v in zip(
                printed, grid, strict=True)):
            return digits
    return 17


def _column_texts(summary: pd.DataFrame, column: str) -> list[str]:
    """The cells of one config column as a table prints them: a kind by its label (``kind_style``), a knob to
    ``knob_digits`` significant digits, anything else as stored ("–" for none)."""
    values = summary[column]
    if column == "kind":
        return [kind_style(v).label if isinstance(v, str) and v else _cell(v) for v in values]
    if column in all_knobs() and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        digits = knob_digits(values)
        return ["–" if math.isnan(v) else f"{v:.{digits}g}" for v in values.astype(float)]
    return [_cell(v) for v in values]


def format_table(df: pd.DataFrame, fmt: str = "markdown", split: str = "test", source: str | None = None,
                 columns: Sequence[str] | None = None, booktabs: bool = True, siunitx: bool = False) -> str:
    """The summary of a results table as markdown, LaTeX (a ``table`` float to ``\\input``) or CSV. Runs that did
    not finish ok are named in the table's note (``left_out``), after the data's ``source`` ("mnist, t10k split
    8,000/2,000 ...") where given; CSV has no note (the CLI prints it on stderr). Kinds are printed by their labels
    ("noisy AE"), knobs to the digits their grid needs (``knob_digits``: 10.2781 in a grid 0.05..20 as 10.3); CSV
    keeps the stored names and every digit.

    ``columns`` picks and orders the columns (the summary's config columns, ``seeds`` and the metrics); by default
    the config columns that vary (the constant ones are said once in the note) with ``seeds`` and every metric,
    for LaTeX with R, D, the ELBO, the IWAE bound and the I(X;Z) bracket. LaTeX headers are a paper's ($\\beta$,
    $d$, $R$ (nats), ...), each symbol defined in the caption (a knob by its ``help`` metadata and the kinds that
    have it), and the note is the ``\\caption``; ``booktabs`` rules need ``\\usepackage{booktabs}`` (False:
    ``\\hline``), and ``siunitx`` aligns the numbers on the decimal point (``S`` columns, needs
    ``\\usepackage{siunitx}``)."""
    summary = summarise(df, split)
    if not len(summary):
        return "no run finished ok: see the status and error columns of runs.csv"
    if fmt == "csv":
        return summary.to_csv(index=False).rstrip("\n")
    metrics = [m for m in METRICS if m in summary]
    keys = [c for c in summary.columns
            if c not in metrics and not c.endswith(("_lo", "_hi")) and c not in ("seeds", "interval")]
    available = [*keys, "seeds", *metrics]
    shown = {k: _column_texts(summary, k) for k in keys}
    constant = [k for k in keys if len(set(shown[k])) == 1]  # the same in every row: said once
    if columns is None:
        varying = [k for k in keys if k not in constant]
        columns = [*varying, *(m for m in LATEX_METRICS if m in metrics)] if fmt == "latex" else \
            [*varying, "seeds", *metrics]
    for c in columns:
        if c not in available:
            raise ValueError(f"columns: {c!r} is not a column of this table; its columns: {', '.join(available)}")
    data = f"Data: {source}. " if source else ""
    said = [(k, shown[k][0]) for k in constant if k not in columns]  # "latent_dim = 8 in every row."
    note = f"mean ± half-width of the 95% bootstrap interval {_interval_source(summary, split)}; nats per example"
    skipped = left_out(df, split)
    note += f". {skipped[0].upper()}{skipped[1:]}" if skipped else ""
    body, used = [], set()
    for i, (_, r) in enumerate(summary.iterrows()):
        cells = {k: shown[k][i] for k in keys} | {"seeds": str(r["seeds"])}
        cells |= {m: round_to_uncertainty(r[m], (r[f"{m}_hi"] - r[f"{m}_lo"]) / 2) for m in metrics}
        if {"mi_lower", "mi_upper"} <= set(metrics):  # never an inverted, negative or huge-number bracket
            lower, upper, marks = bracket_cells(*(v for m in ("mi_lower", "mi_upper")
                                                  for v in (r[m], (r[f"{m}_hi"] - r[f"{m}_lo"]) / 2)))
            mark = "".join(MARK_SYMBOLS[k] for k in sorted(marks))
            cells.update(mi_lower=lower + mark, mi_upper=upper + mark)
            used |= marks if {"mi_lower", "mi_upper"} & set(columns) else set()
        body.append([cells[c] for c in columns])
    note += "".join(f". {MARK_SYMBOLS[k]} {BRACKET_MARKS[k]}" for k in sorted(used))
    if any("∞" in c for cells in body for c in cells):
        note += ". ∞: no upper bound exists (a deterministic code can carry any amount of information)"
    if fmt == "latex":
        kinds = [k for k in summary["kind"] if isinstance(k, str)] if "kind" in summary else []
        return _latex(columns, body, data, said, note + ".", set(metrics), kinds, booktabs, siunitx)
    lines = ["| " + " | ".join(f"{c} (nats)" if c in metrics and c != "active_units" else c for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines + ["", data + "".join(f"{k} = {v} in every row. " for k, v in said) + note])


_TEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "^": r"\^{}", "~": r"\~{}", "<=": r"$\leq$", ">=": r"$\geq$", "<": "$<$", ">": "$>$",
        "±": r"$\pm$", "–": "--", "−": "$-$", "∞": r"$\infty$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
        "§": r"$^\S$", "×": r"$\times$", "-": "$-$"} | {g: f"${tex}$" for g, tex in GREEK.items()}
# one pass over the text: TeX's special characters escaped, the symbols as math, a number's minus sign as math
_TEX_PATTERN = re.compile("|".join(re.escape(k) for k in sorted(set(_TEX) - {"-"}, key=len, reverse=True))
                          + r"|(?<![\w.])-(?=[\d.])")


def tex(text: str) -> str:
    """``text`` (a cell or a sentence of a note) as LaTeX text: ``_ % & $ # { } ^ ~ \\`` escaped, ± ∞ † ‡ § and
    Greek letters as math, <= and >= as $\\leq$ and $\\geq$, a number's minus sign as $-$ (a hyphen otherwise)."""
    return _TEX_PATTERN.sub(lambda m: _TEX[m.group()], text)


def _latex(columns: Sequence[str], body: list[list[str]], data: str, said: list[tuple[str, str]], note: str,
           metrics: set[str], kinds: list[str], booktabs: bool, siunitx: bool) -> str:
    """A LaTeX ``table`` float: a paper's headers, and the caption: the ``data`` sentence, what each symbol header
    means, the constant columns (``said``: column, cell) by their headers, then ``note``; the packages it needs in a
    comment above it."""
    def number(cell: str) -> str:  # an S column's cell: "4.90 +- 0.05"; anything else braced, so siunitx skips it
        parts = cell.split(" ± ")
        plain = all(p.replace(".", "", 1).lstrip("-").isdigit() for p in parts)
        return " +- ".join(parts) if plain else "{" + tex(cell) + "}"

    numeric = [c in metrics or c == "seeds" for c in columns]
    header = _headers([*columns, *(k for k, _ in said)])
    symbol = {c: SYMBOLS[c][0] if c in SYMBOLS else header[c] for c in header
              if c in SYMBOLS or c not in HEADERS and header[c].startswith("$")}  # $\beta$, $d$, $R$: each defined
    defined = [f"{symbol[c]}: {_meaning(c, kinds)}" for c in symbol if _meaning(c, kinds)]
    caption = (tex(data) + ("; ".join(defined) + ". " if defined else "")
               + "".join(f"{symbol.get(k, header[k])} = {tex(v)} in every row. " for k, v in said)
               + tex(note[:1].upper() + note[1:]))
    spec = "".join(("S[separate-uncertainty]" if siunitx and n else "r" if n else "l") for n in numeric)
    packages = ", ".join(p for p, on in (("booktabs", booktabs), ("siunitx", siunitx)) if on)
    top, mid, bottom = (r"\toprule", r"\midrule", r"\bottomrule") if booktabs else (r"\hline",) * 3
    lines = [*([f"% needs \\usepackage{{{packages}}}"] if packages else []), r"\begin{table}", r"\centering",
             r"\caption{" + caption + "}", r"\begin{tabular}{" + spec + "}", top,
             " & ".join("{" + header[c] + "}" if siunitx and n else header[c] for c, n in zip(columns, numeric,
                                                                                              strict=True))
             + r" \\", mid]
    lines += [" & ".join(number(c) if siunitx and n else tex(c) for c, n in zip(cells, numeric, strict=True))
              + r" \\" for cells in body]
    return "\n".join(lines + [bottom, r"\end{tabular}", r"\end{table}"])


def _headers(columns: Sequence[str]) -> dict[str, str]:
    """{column: its LaTeX header}: ``HEADERS``, a knob's Greek symbol ($\\beta$) where no other column of the table
    has the same one (sparsity and free_bits are both λ), else the name in words."""
    symbol = {c: knob_symbol(c) for c in columns if c not in HEADERS and knob_symbol(c) in GREEK}
    taken = pd.Series(list(symbol.values()), dtype=object).value_counts()
    return {c: HEADERS.get(c) or (f"${GREEK[symbol[c]]}$" if c in symbol and taken[symbol[c]] == 1 else
                                  tex(c.replace("_", " "))) for c in columns}


def _meaning(column: str, kinds: list[str]) -> str:
    """What a symbol header means, for the caption: ``SYMBOLS``, or a knob's ``help`` and the labels of the
    table's kinds that have it ("std of the Gaussian channel noise (noisy AE)"); "" where nothing says."""
    if column in SYMBOLS:
        return SYMBOLS[column][1]
    meaning = tex(knob_help(column))
    having = [kind_style(k).label for k in dict.fromkeys(kinds) if column in knob_names(k)]
    return f"{meaning} ({', '.join(tex(h) for h in having)})" if meaning and having else meaning


def _interval_source(summary: pd.DataFrame, split: str) -> str:
    """What the intervals of ``summary`` are taken over, for the table's note."""
    kinds = set(summary["interval"])
    examples = f"over the {split} split's examples"
    if kinds >= {"seeds", "examples"}:
        return f"over seeds (rows with 1 seed: {examples})"
    if "seeds" in kinds:
        return "over seeds" + (" (rows with 1 seed: none)" if "none" in kinds else "")
    if "examples" in kinds:
        return f"{examples} (one seed)"
    return "(one seed, none stored: values alone)"


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:g}"
    return str(value) or "–"
