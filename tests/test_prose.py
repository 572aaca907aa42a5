"""The sentences findings are made of (``ibkit.prose``): a bracket never negative or inverted, a count singular only
for one, a verdict that agrees with the interval printed beside it."""

import math

import pandas as pd
import pytest

from ibkit.prose import bracket_text, collapse_text, count_text, direction, plural
from ibkit.stats import interval_text


@pytest.mark.parametrize("lower, upper, lower_se, upper_se, text", [
    ([1.0, 1.2, 1.1], [2.0, 2.1, 2.2], None, None, "between 1.10 ± 0.10 and 2.10 ± 0.10"),
    ([-0.002052], [-0.002055], [0.0004], [0.0004], "about 0 (the lower estimate -0.00205 ± 0.00078 and the upper "
     "-0.00205 ± 0.00078 are equal within error; a negative estimate, clipped at 0: I(X;Z) >= 0)"),
    ([0.0178], [0.0138], [0.003], [0.0001], "about 0.01380 ± 0.00020 (the lower estimate 0.0178 ± 0.0059 and the "
     "upper 0.01380 ± 0.00020 are equal within error)"),
    ([5.29], [math.inf], [0.005], [math.nan], "at least 5.2900 ± 0.0098 (unbounded above: no upper bound exists)"),
    ([-0.003], [-0.001], [0.0004], [0.0004], "about 0 (the lower and the upper bound alike at this precision; a "
     "negative estimate, clipped at 0: I(X;Z) >= 0)"),  # never "between 0 and 0"
])
def test_a_findings_bracket_agrees_with_its_numbers(lower, upper, lower_se, upper_se, text):
    assert bracket_text(lower, upper, lower_se, upper_se) == text


@pytest.mark.parametrize("n, noun, text", [(1, "seed", "1 seed"), (3, "seed", "3 seeds"), (0, "seed", "0 seeds"),
                                          (1438, "row", "1,438 rows"), (1.0, "active unit", "1 active unit"),
                                          (2.5, "epoch", "2.5 epochs")])
def test_a_count_takes_the_singular_only_for_one(n, noun, text):
    assert plural(n, noun) == text


@pytest.mark.parametrize("values, text", [([1], "1 active unit"), ([1, 1, 1], "1 active unit in every seed"),
                                          ([8, 8, 8], "8 active units in every seed"),
                                          ([0.0, 0.0], "0 active units in every seed"), ([], "– active units")])
def test_a_count_over_seeds_is_a_word_never_n_plus_minus_0(values, text):
    assert count_text(values, "active unit") == text


def test_counts_that_differ_between_seeds_get_their_interval_and_a_plural():
    assert count_text([1, 2, 3], "active unit") == f"{interval_text([1, 2, 3])} active units"
    assert collapse_text([0]).startswith("; its code collapsed in 1 of 1 seed (no active unit")
    assert collapse_text([0, 3, 0]).startswith("; its code collapsed in 2 of 3 seeds (") and collapse_text([2]) == ""


def test_a_findings_line_says_one_active_unit():
    """A VAE line of the rate-distortion findings: '1 active unit in every seed', not '1 ± 0 active units'."""
    from experiments.rate_distortion.findings import _vae_line

    g = pd.DataFrame(dict(rate=[0.5, 0.52, 0.51], mi_lower=[0.4, 0.41, 0.42], mi_upper=[0.5, 0.52, 0.51],
                          distortion=[190.0, 191, 192], elbo=[-191.0, -192, -193], iwae=[-180.0, -181, -182],
                          active_units=[1, 1, 1], seed=[0, 1, 2]))
    assert _vae_line(20, g).endswith(", IWAE -181.0 ± 1.0, 1 active unit in every seed.")


def test_a_findings_verdict_agrees_with_the_interval_printed_beside_it():
    """Three seeds whose percentile bootstrap interval excludes 0 while the printed mean ± half-width does not
    (1.0 ± 1.3 read as 'higher'): the verdict follows what the reader sees."""
    diff = [0.1, 0.2, 2.7]
    assert interval_text(diff).startswith("1.0 ± 1.") and direction(diff).startswith("no different")
    assert direction([1.0, 1.1, 1.2]) == "higher" and direction([-1.0, -1.1, -1.2]) == "lower"
    assert direction([0.5]) == "higher (one seed: no interval)"


def test_a_configurations_bracket_reads_its_standard_errors_where_stored():
    """``runs_bracket``: the bracket of one configuration's rows, with one seed's standard errors where the table has
    them and the value alone where it does not."""
    from ibkit.prose import runs_bracket

    one = pd.DataFrame(dict(mi_lower=[1.0], mi_upper=[2.0], mi_lower_se=[0.01], mi_upper_se=[0.02]))
    assert runs_bracket(one) == "between 1.000 ± 0.020 and 2.000 ± 0.039"
    assert runs_bracket(one[["mi_lower", "mi_upper"]]) == "between 1 and 2"


def test_the_runs_left_out_are_named_by_status():
    from ibkit.prose import left_out

    runs = pd.DataFrame(dict(run_id=["a", "b", "c", "c"], split=["test", "test", "test", "train"],
                             status=["ok", "diverged", "failed", "failed"]))
    assert left_out(runs) == "left out: 1 diverged (b); 1 failed (c); see the status and error columns of runs.csv"
    assert left_out(runs[runs["status"] == "ok"]) == ""
