"""The table a paper cites: one row per configuration, each metric as mean ± a 95% interval, as markdown, LaTeX or
CSV. The statistics are ``ibkit.stats``'s, the bracket's cells and the note's sentences ``ibkit.prose``'s.

The interval is the percentile bootstrap over seeds (10,000 resamples of the seeds' values, Efron & Tibshirani
1993, ch. 13), printed as the mean ± the interval's half-width and rounded to it (the half-width to two significant
digits, the mean to the same decimal place). A configuration with one seed gets the percentile bootstrap over its
test examples instead, where the run stored one (``ibkit.stats.over_examples``: ``METRIC_ex_lo`` /
``METRIC_ex_hi``); the ``interval`` column and the table's note say which. Without either the value is printed
alone. CSV keeps full precision, with the interval's ends in ``METRIC_lo`` / ``METRIC_hi`` columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ibkit.config import all_knobs, config_fields, kind_label, knob_help, knob_names, knob_symbol, quiet_knobs
from ibkit.prose import BRACKET_MARKS, MARK_SYMBOLS, bracket_cells, left_out
from ibkit.stats import bootstrap_interval, round_to_uncertainty

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("rate", "distortion", "elbo", "iwae", "mi_lower", "mi_upper", "active_units")
FORMATS = ("markdown", "latex", "csv")


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
    import pandas as pd

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
    import pandas as pd

    grid = pd.Series(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    grid = grid[np.isfinite(grid)].unique()
    for digits in range(2, 17):
        printed = [float(f"{v:.{digits}g}") for v in grid]
        if len(set(printed)) == len(grid) and all(abs(p - v) <= tolerance * abs(v) for p, v in zip(
                printed, grid, strict=True)):
            return digits
    return 17


def _column_texts(summary: pd.DataFrame, column: str) -> list[str]:
    """The cells of one config column as a table prints them: a kind by its label (``ibkit.config.kind_label``), a
    knob to ``knob_digits`` significant digits, anything else as stored ("–" for none)."""
    import pandas as pd

    values = summary[column]
    if column == "kind":
        return [kind_label(v) if isinstance(v, str) and v else _cell(v) for v in values]
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
        return _latex(columns, body, data, said, note=note + ".", metrics=set(metrics), kinds=kinds, booktabs=booktabs,
                      siunitx=siunitx)
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


def _latex(columns: Sequence[str], body: list[list[str]], data: str, said: list[tuple[str, str]], *, note: str,
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
    import pandas as pd

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
    having = [kind_label(k) for k in dict.fromkeys(kinds) if column in knob_names(k)]
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
