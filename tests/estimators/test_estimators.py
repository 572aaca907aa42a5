"""Estimators against closed forms on the linear-Gaussian model (Tipping & Bishop 1999)."""

import math

import pytest
import torch
from torch.distributions import AffineTransform, Independent, MultivariateNormal, Normal, TransformedDistribution

import ibkit
from ibkit import estimators as E


@pytest.fixture(scope="module")
def source(gaussian_source):
    ds = gaussian_source(input_dim=6, latent_dim=3, noise=0.7, n_train=10, n_test=400, seed=3)
    return ds, ds.true_model(), ds.test


def _closed_form_kl(q: MultivariateNormal) -> torch.Tensor:
    """KL(N(mu, S) || N(0, I)) = 1/2 [tr S + mu^T mu - k - ln|S|] per row, float64."""
    mu, S = q.mean.double(), q.covariance_matrix.double()
    return 0.5 * (S.diagonal(dim1=-2, dim2=-1).sum(-1) + mu.pow(2).sum(-1) - mu.shape[-1] - torch.logdet(S))


class ShiftedPosterior:
    """The true model with a deliberately wrong q: the exact posterior mean shifted, a diagonal scale inflated."""

    def __init__(self, model, shift=0.4, scale=1.6):
        self.model, self.shift, self.scale = model, shift, scale

    def posterior(self, x):
        exact = self.model.posterior(x)
        std = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
        return Independent(Normal(exact.mean + self.shift, std * self.scale), 1)

    def prior(self):
        return self.model.prior()

    def log_likelihood(self, x, z):
        return self.model.log_likelihood(x, z)


def _mean_and_se(v: torch.Tensor) -> tuple[float, float]:
    return v.mean().item(), v.std().item() / math.sqrt(len(v))


@pytest.mark.parametrize("k", [1, 30])
def test_iwae_with_exact_posterior_is_log_px(source, k):
    ds, model, x = source
    # chunk_size 7 splits the k samples into many chunks: the running log-sum-exp must still be exact.
    assert E.iwae(model, x, k, chunk_size=7) == pytest.approx(ds.log_px(x).mean().item(), abs=1e-3)
    per_row = E.iwae(model, x, k, per_example=True)
    assert per_row.shape == (len(x),)
    torch.testing.assert_close(per_row, ds.log_px(x), atol=2e-3, rtol=0)


def test_elbo_with_exact_posterior_is_log_px(source):
    ds, model, x = source
    assert E.elbo(model, x, n_samples=1) == pytest.approx(ds.log_px(x).mean().item(), abs=0.15)
    # ELBO = log p(x) - KL(q || p(z|x)) exactly; with many samples the MC error of D shrinks:
    assert E.elbo(model, x, n_samples=2000) == pytest.approx(ds.log_px(x).mean().item(), abs=0.02)


def test_rate_is_the_analytic_kl(source):
    _, model, x = source
    expected = _closed_form_kl(model.posterior(x)).mean().item()
    assert E.rate(model, x) == pytest.approx(expected, abs=1e-4)
    assert expected > 0.5  # not a vacuous comparison


def _closed_form_distortion(ds, model, x) -> torch.Tensor:
    """-E_q log p(x|z) = D/2 log(2 pi s^2) + (||x - W mu - b||^2 + tr(W S W^T)) / (2 s^2) per row [N], with
    q = N(mu, S) the exact posterior of the linear-Gaussian source."""
    q = model.posterior(x)
    W, b, s2 = ds.W.double(), ds.b.double(), ds.noise**2
    resid = (x.double() - q.mean.double() @ W.T - b).pow(2).sum(-1)
    trace = torch.einsum("ij,njk,ik->n", W, q.covariance_matrix.double(), W)
    return 0.5 * x.shape[1] * math.log(2 * math.pi * s2) + (resid + trace) / (2 * s2)


def test_distortion_matches_closed_form(source):
    ds, model, x = source
    expected = _closed_form_distortion(ds, model, x)
    got = E.distortion(model, x, n_samples=500, per_example=True).double()
    gap, se = _mean_and_se(got - expected)  # Monte Carlo error only, independent across rows
    assert abs(gap) < 4 * se + 1e-3
    assert E.distortion(model, x, n_samples=500) == pytest.approx(expected.mean().item(), rel=1e-3)


def test_bounds_are_ordered_for_a_wrong_posterior(source):
    """elbo <= iwae(10) <= iwae(1000) <= log p(x), each gap checked against 4 standard errors of the paired
    per-example difference (independent across examples, so the mean difference is asymptotically normal)."""
    ds, model, x = source
    wrong = ShiftedPosterior(model)
    elbo = E.elbo(wrong, x, n_samples=1, per_example=True, seed=1)
    iw10 = E.iwae(wrong, x, 10, per_example=True, seed=2)
    iw1000 = E.iwae(wrong, x, 1000, per_example=True, seed=3)
    log_px = ds.log_px(x)
    for lower, upper in ((elbo, iw10), (iw10, iw1000), (iw1000, log_px)):
        gap, se = _mean_and_se(upper - lower)
        assert gap > -4 * se
    # the gaps are real, not ties: q is wrong enough that elbo and iwae(10) sit clearly below log p(x)
    gap, se = _mean_and_se(iw10 - elbo)
    assert gap > 4 * se and gap > 0.1
    assert (log_px - iw1000).mean() < (log_px - iw10).mean()


def test_iwae_k1_is_an_elbo(source):
    """With a single sample, iwae = log p(x, z) - log q(z|x), an unbiased ELBO estimate (analytic KL differs)."""
    _, model, x = source
    wrong = ShiftedPosterior(model)
    assert E.iwae(wrong, x, 1, seed=5) == pytest.approx(E.elbo(wrong, x, n_samples=200), abs=0.15)


class UnregisteredPosterior(ShiftedPosterior):
    """q wrapped in an identity transform: torch has no closed-form KL for it, so the rate is Monte Carlo."""

    def posterior(self, x):
        q = super().posterior(x)
        return Independent(TransformedDistribution(q.base_dist, [AffineTransform(0.0, 1.0)]), 1)


def test_monte_carlo_rate_agrees_with_closed_form(source):
    _, model, x = source
    closed = E.rate(ShiftedPosterior(model), x)
    mc = E.rate(UnregisteredPosterior(model), x, n_samples=256, per_example=True)
    mean, se = _mean_and_se(mc)
    assert mean == pytest.approx(closed, abs=4 * se + 1e-3)


class LinearCode:
    """A deterministic code z = x A: identity-like columns and constant columns."""

    def __init__(self, A):
        self.A = A

    def encode(self, x):
        return x @ self.A

    def log_likelihood(self, x, z):
        return -(x - z @ self.A.T).pow(2).sum(-1)


def test_active_units_identity_and_constant_codes(source):
    _, model, x = source
    A = torch.zeros(6, 4)
    A[0, 0] = A[1, 1] = 1.0  # two dims copy the data; two are constant
    assert E.active_units(LinearCode(A), x) == 2
    assert E.active_units(LinearCode(torch.zeros(6, 4)), x) == 0
    # the true posterior means of a model with 3 strong latents: all active; a huge threshold: none
    assert E.active_units(model, x) == 3
    assert E.active_units(model, x, threshold=1e6) == 0


def test_estimators_leave_global_rng_alone(source):
    _, model, x = source
    torch.manual_seed(123)
    before = torch.get_rng_state()
    E.iwae(ShiftedPosterior(model), x, 5)
    assert torch.equal(before, torch.get_rng_state())
    assert E.iwae(ShiftedPosterior(model), x, 5, seed=4) == E.iwae(ShiftedPosterior(model), x, 5, seed=4)


def test_bad_input_is_refused(source, tiny_vae):
    _, model, x = source
    bad = x.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        E.iwae(model, bad, 10)
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        E.rate(model, x[0])
    with pytest.raises(ValueError, match="empty"):
        E.rate(model, x[:0])
    with pytest.raises(ValueError, match="k=0"):
        E.iwae(model, x, 0)
    with pytest.raises(ValueError, match="probe"):
        E.rate(LinearCode(torch.eye(6)), x)
    vae = tiny_vae(input_dim=6, latent_dim=2, hidden=(256, 256))
    with pytest.raises(ValueError, match="input_dim=6"):
        E.elbo(vae, torch.rand(5, 7))
    with pytest.raises(ValueError, match="bernoulli"):
        E.elbo(vae, x)  # real-valued data under a Bernoulli decoder


def test_distortion_with_more_samples_than_a_chunk(source):
    """n_samples = 50 drawn in chunks of 7 (the last one short) against the closed form, per example."""
    ds, model, x = source
    expected = _closed_form_distortion(ds, model, x)
    got = E.distortion(model, x, n_samples=50, chunk_size=7, per_example=True).double()
    gap, se = _mean_and_se(got - expected)
    assert abs(gap) < 4 * se + 1e-3
    assert se < 0.05  # 50 samples per row, not 7 or 1


def test_distortion_of_a_deterministic_code_is_its_forward_distortion():
    ds = ibkit.data.load("digits")
    ae = ibkit.build_model("ae", ds.input_dim, 3, hidden=(16,))
    torch.testing.assert_close(E.distortion(ae, ds.test, per_example=True), ae(ds.test).distortion.detach())


def test_active_units_threshold_is_on_the_variance():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5000, 1, generator=g)
    # per-dimension variance 0.005 and 0.02 (std 0.07 and 0.14): only the second is above 0.01
    A = torch.tensor([[0.005**0.5, 0.02**0.5]])
    assert E.active_units(LinearCode(A), u) == 1
    assert E.active_units(LinearCode(A), u, threshold=0.001) == 2


def test_integer_arguments_must_be_integers(source):
    _, model, x = source
    with pytest.raises(ValueError, match="k=1000.0 must be an integer, e.g. 1000"):
        E.iwae(model, x, 1e3)
    with pytest.raises(ValueError, match="n_samples=2.0 must be an integer"):
        E.distortion(model, x, 2.0)


def test_a_probe_far_finer_than_the_codes_is_summed_without_cancellation():
    """Codes near 0.5 through a probe of 1e-12: the expanded quadratic form would round by 2^-52 0.25 / 1e-24 ~ 5e7
    nats, so the fast path sums the squared differences itself and agrees with the reference log_prob path; 300
    distinct codes carry log 300 exactly."""
    from ibkit.models import InterleavedAE  # a deterministic code in float64

    m = ibkit.build_model("interleaved_ae", 2, 1, code_dim=2, levels=2**16, hidden=(), likelihood="gaussian")
    with torch.no_grad():
        m.encoder[-1].weight.copy_(torch.eye(2))
        m.encoder[-1].bias.zero_()
        m.low.zero_()
        m.high.fill_(1.0)
    assert isinstance(m, InterleavedAE)
    x = torch.rand(300, 2, generator=torch.Generator().manual_seed(0))
    fast = E.mi_bounds(E.probe(m, 1e-12), x)
    reference = E.mi_bounds(E.probe(m, 1e-12), x, fast=False)
    assert fast["infonce"] == pytest.approx(reference["infonce"], abs=1e-9)
    assert fast["infonce"] == pytest.approx(math.log(300), abs=1e-9)
