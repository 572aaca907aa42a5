"""The sentences findings are made of, each agreeing with the numbers printed beside it.

A bracket on I(X;Z) is never printed inverted or negative (``bracket_cells`` for a table's cells, ``bracket_text``
for a sentence), a difference is called higher or lower only where its 95% interval excludes 0 (``direction``), a
count takes the singular only for exactly one (``plural``, ``count_text``), a dead code is said to be one
(``collapse_text``) and the runs a table or figure leaves out are named (``left_out``). Experiments' ``findings.py``
build their findings.md from these; ``ibkit.tables`` prints brackets with ``bracket_cells``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ibkit.stats import bootstrap_interval, interval_text, mean_half_width, round_to_uncertainty, within_error

if TYPE_CHECKING:
    import pandas as pd

MARK_SYMBOLS = {"clipped": "†", "equal": "‡", "above": "§"}
BRACKET_MARKS = {"clipped": "a negative estimate of I(X;Z) >= 0, shown as 0 (its value and error in runs.csv)",
                 "equal": "the lower estimate exceeded the upper one within their errors: equal within error, both "
                          "shown as the upper",
                 "above": "the lower estimate exceeded the upper one beyond their 95% errors (an estimator's bias at "
                          "this sample size: I(X;Z) <= the upper bound holds exactly): both shown as the upper"}


def bracket_cells(lower: float, lower_hw: float, upper: float, upper_hw: float) -> tuple[str, str, set[str]]:
    """The table cells of a bracket lower <= I(X;Z) <= upper ('m ± h' each) and the marks they need: "∞" where no
    upper bound exists; a negative end clipped at 0 ("clipped"); an inverted pair printed as one value, the upper,
    marked as equal within error ("equal") or as the lower estimate's excess beyond error ("above"); never an
    inverted or negative interval.

    Args:
        lower, lower_hw: the lower estimate and the half-width of its 95% interval.
        upper, upper_hw: the upper bound (+inf where none exists) and its half-width.

    Returns:
        (lower cell, upper cell, marks): the marks are keys of ``BRACKET_MARKS`` (printed as ``MARK_SYMBOLS``).
    """
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
    """I(X;Z)'s bracket in words for a findings sentence: 'between A and B'; 'at least A (unbounded above: ...)'
    where the upper bound is +inf; a negative end clipped at 0 and said so; 'equal within error: about B' where the
    lower estimate exceeds the upper within error. Never an inverted or negative interval.

    Args:
        lower, upper: the lower estimates and upper bounds of several seeds (or one).
        lower_se, upper_se: for one seed, their standard errors (or None).
        unbounded: why there is no upper bound, where there is none.

    Returns:
        the words, 'not measured' where neither end was.
    """
    lo, lo_hw = mean_half_width(lower, lower_se)
    up, up_hw = mean_half_width(upper, upper_se)
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


def runs_bracket(runs: pd.DataFrame) -> str:
    """The bracket on I(X;Z) of the runs of one configuration in words (``bracket_text`` of their ``mi_lower`` and
    ``mi_upper``, with the standard errors where the table stores them).

    Args:
        runs: rows of a results table, one per seed.

    Returns:
        the words.
    """
    return bracket_text(runs["mi_lower"], runs["mi_upper"], runs.get("mi_lower_se"), runs.get("mi_upper_se"))


def direction(diff) -> str:
    """'higher', 'lower' or 'no different' by the interval printed beside it (``ibkit.stats.interval_text``: the
    mean of the paired differences over seeds ± the half-width of its 95% bootstrap interval), so that a sentence
    never calls "higher" a difference shown as 1.0 ± 1.3; for one seed the sign of the mean, said so.

    Args:
        diff: the paired differences, one per seed (NaNs dropped).

    Returns:
        the word, with why where it is not plainly higher or lower.
    """
    import pandas as pd

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
    import pandas as pd

    values = pd.Series(values, dtype=float).dropna()
    if len(values) and (values == values.iloc[0]).all():
        return plural(values.iloc[0], noun, nouns) + (" in every seed" if len(values) > 1 else "")
    return f"{interval_text(values)} {nouns or noun + 's'}"


def collapse_text(active_units) -> str:
    """'; its code collapsed in 3 of 3 seeds (no active unit: ...)' for runs whose code carries nothing the
    decoder uses (``active_units`` 0), '' when no seed did: a findings line must not read a dead code as a result."""
    import pandas as pd

    units = pd.Series(active_units).dropna()
    dead = int((units == 0).sum())
    if not dead:
        return ""
    return (f"; its code collapsed in {dead} of {plural(len(units), 'seed')} (no active unit: "
            "the same code for every x, so the decoder can only draw the average image)")


def left_out(df: pd.DataFrame, split: str = "test") -> str:
    """A sentence naming the runs that tables and figures leave out (status other than "ok": diverged or failed),
    by status, or "" when every run finished: nothing is dropped silently.

    Args:
        df: a results table (one row per run and split).
        split: the split the table or figure shows.

    Returns:
        'left out: 1 diverged (vae-d8-beta0.1-seed0); see the status and error columns of runs.csv', or "".
    """
    bad = df[(df["split"] == split) & (df["status"] != "ok")]
    if not len(bad):
        return ""
    parts = [f"{len(g)} {status} ({', '.join(g['run_id'])})" for status, g in bad.groupby("status")]
    return f"left out: {'; '.join(parts)}; see the status and error columns of runs.csv"


__all__ = ["MARK_SYMBOLS", "BRACKET_MARKS", "bracket_cells", "bracket_text", "runs_bracket", "direction", "plural",
           "count_text", "collapse_text", "left_out"]
