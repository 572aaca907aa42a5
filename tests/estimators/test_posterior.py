"""posterior_correlation's adaptive importance sampler and amortization_gap's run to convergence, on the linear-Gaussian
source, whose posterior p(z|x) and log p(x) are known in closed form."""

import math

import pandas as pd
import pytest
import torch
from torch.distributions import Independent, Normal

from ibkit import estimators as E
from ibkit.estimators.posterior import _WeightedMoments
from ibkit.models.generating import generating_vae

ROWS = 40


@pytest.fixture(scope="module")
def source(gaussian_source):
    return gaussian_source(n_train=200, n_test=200)


@pytest.fixture(scope="module")
def closed(source):
    """|Corr[z_1, z_2 | x]| of the exact posterior (the same for every x: 0.56)."""
    C = source.exact_posterior(source.test[:1]).covariance_matrix[0].double()
    return (C[0, 1] / (C[0, 0] * C[1, 1]).sqrt()).abs().item()


class PoorDiagonal:
    """The exact model with a poor q: diagonal, its mean shifted by one exact posterior sd, its sd 0.6 of the best
    diagonal one (too narrow, the usual failure of an encoder)."""

    def __init__(self, exact):
        self.exact = exact

    def posterior(self, x):
        p = self.exact.posterior(x)
        sd = p.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
        best = 1 / torch.linalg.inv(p.covariance_matrix).diagonal(dim1=-2, dim2=-1).sqrt()
        return Independent(Normal(p.mean + sd, 0.6 * best), 1)

    def prior(self):
        return self.exact.prior()

    def log_likelihood(self, x, z):
        return self.exact.log_likelihood(x, z)


def test_adaptive_proposal_recovers_the_exact_posterior_where_q_is_poor(source, closed):
    x = source.test[:ROWS]
    r = E.posterior_correlation(PoorDiagonal(source.true_model()), x, k=1000)
    assert r["q"] == 0.0  # a diagonal q shows no correlation
    assert r["ess_from_q"] < 0.05 * 1000  # q itself as the proposal: a few effective draws of 1,000
    assert r["ess_q10"] > 0.5 * 1000 and r["ess_min"] > 0.4 * 1000  # adapted: most of them, in every row
    assert r["true"] == pytest.approx(closed, abs=0.01)
    assert r["reliable_rows"] == r["rows"] == ROWS and r["k"] == 1000 and r["min_ess"] == 100
    rows = r["per_row"]
    assert list(rows.columns[:5]) == ["row", "ess", "q_correlation", "true_correlation", "reliable"]
    assert len(rows) == ROWS and rows["row"].tolist() == list(range(ROWS)) and rows["reliable"].dtype == bool
    assert (rows["stage"] >= 1).all()  # every estimate from an adapted stage
    assert r["ess"] == pytest.approx(rows["ess"].mean()) and r["ess_median"] == pytest.approx(rows["ess"].median())
    assert r["ess_min"] <= r["ess_q10"] <= r["ess_median"] <= r["ess_q90"] <= 1000


def test_a_non_gaussian_q_starts_from_its_sample_moments(source, closed):
    """An untrained IAF encoder on the exact generative model: stage 0 is fitted to the moments of q's draws, and the
    stages still find p(z|x)."""
    m = generating_vae(source, "iaf", hidden=(), seed=0)
    r = E.posterior_correlation(m, source.test[:20], k=1000)
    assert r["ess_from_q"] < 0.2 * 1000 and r["ess_median"] > 0.8 * 1000
    assert r["reliable_rows"] >= 18 and r["true"] == pytest.approx(closed, abs=0.01)
    assert 0 < r["q"] < 0.3  # the flow's own correlations, from its draws: not the posterior's


def test_exact_posterior_as_q_keeps_every_weight_equal(source, closed):
    r = E.posterior_correlation(source.true_model(), source.test[:ROWS], k=500)
    assert r["ess"] == pytest.approx(500, rel=1e-9) and r["ess_from_q"] == pytest.approx(500, rel=1e-9)
    assert (r["per_row"]["stage"] == -1).all()  # the plain stage: no adaptation needed, none run
    assert r["q"] == pytest.approx(closed, abs=1e-4) and r["true"] == pytest.approx(closed, abs=0.02)


def test_k_beyond_the_chunk_is_drawn_in_sample_chunks(source, closed):
    """chunk_size < k: one row at a time, its draws in chunks, the moments combined by a running log-sum-exp."""
    r = E.posterior_correlation(PoorDiagonal(source.true_model()), source.test[:6], k=600, chunk_size=250)
    assert r["ess_min"] > 0.4 * 600
    assert r["true"] == pytest.approx(closed, abs=0.03)


def test_chunked_weighted_moments_equal_the_direct_ones():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 3, 2, generator=g, dtype=torch.float64) + 5.0  # [S, n, d], far from 0
    log_w = 40 * torch.randn(300, 3, generator=g, dtype=torch.float64)  # a few draws dominate
    log_w[:, 2] = torch.where(torch.arange(300) < 100, -math.inf, log_w[:, 2])  # a first chunk of zero weight
    acc = _WeightedMoments(torch.zeros(3, 2, dtype=torch.float64))
    for j in range(0, 300, 100):
        acc.add(log_w[j:j + 100], z[j:j + 100])
    ess, mean, cov = acc.result()
    w = torch.softmax(log_w, dim=0)
    direct_mean = (w.unsqueeze(-1) * z).sum(0)
    zc = z - direct_mean
    torch.testing.assert_close(ess, 1 / w.pow(2).sum(0), rtol=1e-10, atol=0)
    torch.testing.assert_close(mean, direct_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cov, torch.einsum("sn,sni,snj->nij", w, zc, zc), rtol=1e-8, atol=1e-12)


def test_rows_under_min_ess_are_flagged_and_left_out_of_true(source):
    model, x = PoorDiagonal(source.true_model()), source.test[:ROWS]
    r = E.posterior_correlation(model, x, k=200, stages=0)  # no adaptation: the ESS varies from row to row
    rows = r["per_row"]
    threshold = float(rows["ess"].median())
    flagged = E.posterior_correlation(model, x, k=200, stages=0, min_ess=threshold)
    reliable = flagged["per_row"]["reliable"]
    pd.testing.assert_series_equal(reliable, rows["ess"] >= threshold, check_names=False)
    assert 0 < flagged["reliable_rows"] == reliable.sum() < ROWS
    assert flagged["true"] == pytest.approx(rows["true_correlation"][reliable].mean())
    none = E.posterior_correlation(model, x[:4], k=50, stages=0, min_ess=51)  # ESS <= k: no row can pass
    assert none["reliable_rows"] == 0 and math.isnan(none["true"]) and not math.isnan(none["q"])
    with pytest.raises(ValueError, match="min_ess=0 must be >= 1"):
        E.posterior_correlation(model, x, min_ess=0)
    with pytest.raises(ValueError, match="widen=0.5 must be >= 1"):
        E.posterior_correlation(model, x, widen=0.5)


def test_amortization_gap_converges_to_log_px_with_a_full_family(source):
    """The full family holds the exact posterior, so the optimised ELBO reaches log p(x) (approximation gap 0), from
    an encoder that has not been trained at all: within 0.05 nats (it stops 0.01-0.02 short, where the gain per 50
    steps falls below tol), where the best diagonal q would stay 0.19 short."""
    x = source.test[:100]
    m = generating_vae(source, "full", hidden=())
    r = E.amortization_gap(m, x, lr=0.1, k=500, check_every=50, tol=0.005)
    log_px = source.log_px(x).mean().item()
    assert r["converged"] and r["last_improvement"] < 0.005 and r["steps"] < 5000 and r["steps"] % 50 == 0
    assert r["lr"] == pytest.approx(1e-3)  # two tenfold cuts at plateaus before it stopped
    assert r["log_px"] == pytest.approx(log_px, abs=0.01)
    assert r["elbo_optimised"] == pytest.approx(log_px, abs=0.05)
    assert abs(r["approximation_gap"]) < 0.05
    assert r["amortization_gap"] > 1.0  # the untrained encoder's q is far off


def test_amortization_gap_with_steps_takes_exactly_those_steps(source):
    m = generating_vae(source, "diagonal", hidden=())
    x = source.test[:ROWS]
    r = E.amortization_gap(m, x, steps=70, lr=5e-2, k=10, check_every=50)  # checked at steps 20 and 70
    assert r["steps"] == 70 and r["lr"] == 5e-2 and math.isfinite(r["last_improvement"])
    assert r["converged"] == (r["last_improvement"] < 0.01)
    few = E.amortization_gap(m, x, steps=30, k=10, check_every=50)
    assert few["steps"] == 30 and math.isnan(few["last_improvement"]) and few["converged"] is False
    capped = E.amortization_gap(m, x, lr=1e-3, max_steps=120, k=10, check_every=50, tol=1e-9)
    assert capped["steps"] == 120 and capped["converged"] is False
    assert E.amortization_gap(m, x, steps=0, k=10)["amortization_gap"] == 0.0  # the same q at the same draws
    with pytest.raises(ValueError, match="check_every=0 must be >= 1"):
        E.amortization_gap(m, x, check_every=0)
