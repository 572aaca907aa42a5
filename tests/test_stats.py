"""The statistics every table and sentence reports (``ibkit.stats``): the percentile bootstrap interval, the interval
over a split's examples, and numbers rounded to their uncertainty."""

import math

import numpy as np
import pytest

from ibkit.stats import bootstrap_interval, bootstrap_intervals, over_examples, round_to_uncertainty


def test_bootstrap_interval_matches_the_normal_interval_for_many_seeds():
    values = np.random.default_rng(1).standard_normal(400)
    lo, hi = bootstrap_interval(values)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1) and lo < values.mean() < hi
    assert all(math.isnan(v) for v in bootstrap_interval([3.0]))


@pytest.mark.parametrize("mean,half,text", [(4.8992, 0.0512, "4.899 ± 0.051"), (0.14254, 0.0012, "0.1425 ± 0.0012"),
                                            (-13.3, 2.4, "-13.3 ± 2.4"), (152.3, 17, "152 ± 17"),
                                            (3.25, math.nan, "3.25"), (math.nan, 1.0, "–"),
                                            (5.86090681867721930, 4.4e-16, "5.86091 ± 0.00000")])
def test_numbers_are_rounded_to_their_uncertainty(mean, half, text):
    assert round_to_uncertainty(mean, half) == text


def test_columns_resampled_together_get_the_interval_each_gets_alone():
    """``bootstrap_intervals`` draws the rows once for every column: each column's interval is the one
    ``bootstrap_interval`` gives it alone (the same seed, the same draws)."""
    columns = np.random.default_rng(3).normal(size=(50, 3))
    together = bootstrap_intervals(columns, resamples=500)
    assert together == [bootstrap_interval(columns[:, j], resamples=500) for j in range(3)]


def test_metrics_over_examples_of_two_lengths_get_their_own_intervals():
    """A metric measured on fewer rows (IWAE on the first rows) is resampled apart from the full-length ones."""
    rng = np.random.default_rng(4)
    rate, iwae = rng.normal(2.0, 1.0, 400), rng.normal(-90.0, 3.0, 100)
    out = over_examples(rate=rate, iwae=iwae)
    assert set(out) == {"rate", "rate_ex_lo", "rate_ex_hi", "iwae", "iwae_ex_lo", "iwae_ex_hi"}
    for name, values in (("rate", rate), ("iwae", iwae)):
        assert out[name] == pytest.approx(values.mean()) and out[f"{name}_ex_lo"] < out[name] < out[f"{name}_ex_hi"]
        half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
        assert (out[f"{name}_ex_hi"] - out[f"{name}_ex_lo"]) / 2 == pytest.approx(half, rel=0.15)
