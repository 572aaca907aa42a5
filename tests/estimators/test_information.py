"""Information bounds against closed forms: linear Gaussian channels, probes of identity and constant codes."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Independent, MultivariateNormal, Normal

import ibkit
from ibkit import estimators as E
from ibkit.theory import gaussian_channel_capacity


class LinearGaussianEncoder:
    """z = A x + c + S^(1/2) eps: q(z|x) = N(A x + c, S), prior N(0, I). S diagonal (Independent Normal) or
    full (MultivariateNormal, which takes the reference path of mi_bounds)."""

    def __init__(self, A, c, S):
        self.A, self.c, self.S = A, c, S
        self.diagonal = bool(torch.equal(S, torch.diag(torch.diagonal(S))))

    def posterior(self, x):
        mean = x @ self.A.T + self.c
        if self.diagonal:
            return Independent(Normal(mean, torch.diagonal(self.S).sqrt().expand_as(mean)), 1)
        return MultivariateNormal(mean, covariance_matrix=self.S.expand(len(x), -1, -1))

    def prior(self):
        d = self.A.shape[0]
        return Independent(Normal(torch.zeros(d), torch.ones(d)), 1)

    def log_likelihood(self, x, z):
        raise NotImplementedError("not needed for the information bounds")

    def true_information(self, C):
        """I(X;Z) = 1/2 log det(A C A^T + S) - 1/2 log det S (X ~ N(0, C))."""
        A, S = self.A.double(), self.S.double()
        return 0.5 * (torch.logdet(A @ C.double() @ A.T + S) - torch.logdet(S)).item()


def gaussian_data(n, C, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, C.shape[0], generator=g) @ torch.linalg.cholesky(C).T


C = torch.tensor([[2.0, 0.6, 0.0, 0.2], [0.6, 1.0, 0.3, 0.0], [0.0, 0.3, 1.5, 0.4], [0.2, 0.0, 0.4, 0.8]])
A = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, -0.5, 0.3], [0.2, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "S",
    [torch.diag(torch.tensor([0.3, 0.2, 0.5])), torch.tensor([[0.3, 0.1, 0.0], [0.1, 0.2, 0.05], [0.0, 0.05, 0.5]])],
    ids=["diagonal", "full"],
)
@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_sandwich_around_the_linear_gaussian_channel(S, scale):
    """N = 2,000 points; the true I is 1.2 (scale 0.5) or 3.8 nats (scale 1.5). The tolerance is 4 standard
    errors of the per-point terms (they are independent given the data), about 0.1 nats here."""
    enc = LinearGaussianEncoder(scale * A, torch.tensor([0.3, -0.2, 0.1]), S)
    true_i = enc.true_information(C)
    assert 1.0 < true_i < 4.0
    b = E.mi_bounds(enc, gaussian_data(2000, C))
    assert b["infonce"] <= true_i + 4 * b["infonce_se"]
    assert b["loo"] >= true_i - 4 * b["loo_se"]
    assert b["rate"] >= true_i
    assert abs(b["infonce"] - true_i) < 0.3 and abs(b["loo"] - true_i) < 0.3
    assert b["log_n"] == pytest.approx(math.log(2000))
    assert "entropy_minus_distortion" not in b  # unknown entropy: left out, not zero


def test_fast_path_matches_the_reference():
    enc = LinearGaussianEncoder(A, torch.zeros(3), torch.diag(torch.tensor([0.3, 0.2, 0.5])))
    x = gaussian_data(300, C)
    fast, slow = E.mi_bounds(enc, x, seed=3), E.mi_bounds(enc, x, seed=3, fast=False)
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), d=st.integers(1, 4), log_scale=st.floats(-3, 3), seed=st.integers(0, 10**6))
def test_infonce_never_exceeds_log_n(n, d, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    enc = LinearGaussianEncoder(torch.randn(d, 3, generator=g) * math.exp(log_scale), torch.zeros(d),
                                torch.diag(torch.rand(d, generator=g) + 1e-3))
    b = E.mi_bounds(enc, torch.randn(n, 3, generator=g), seed=seed % 1000)
    assert b["infonce"] <= math.log(n) + 1e-9


class Code:
    """A deterministic code z = f(x) with a decoder that is not needed here."""

    def __init__(self, f, latent_dim):
        self.f, self.latent_dim = f, latent_dim

    def encode(self, x):
        return self.f(x)

    def log_likelihood(self, x, z):
        raise NotImplementedError


def test_probed_identity_code_matches_closed_form_and_constant_code_carries_nothing():
    x = gaussian_data(2000, C, seed=1)
    sigma = 1.0
    true_i = 0.5 * torch.logdet(torch.eye(4) + C.double() / sigma**2).item()  # 1.77 nats, far below log N = 7.6
    b = E.mi_bounds(E.probe(Code(lambda x: x, 4), sigma), x)
    assert abs(b["infonce"] - true_i) < 0.15 and abs(b["loo"] - true_i) < 0.15
    const = E.mi_bounds(E.probe(Code(lambda x: torch.zeros(len(x), 2), 2), 0.1), x)
    assert const["infonce"] == pytest.approx(0.0, abs=1e-9) and const["loo"] == pytest.approx(0.0, abs=1e-9)


def test_probe_curve_of_a_deterministic_code_climbs_to_log_n():
    x = gaussian_data(500, C, seed=2)
    # one real number; at sigma = 1e-4 a few of the 500 values still lie within the noise of each other
    curve = E.probe_curve(Code(lambda x: x[:, :1], 1), x, [1.0, 1e-1, 1e-2, 1e-4, 1e-6])
    assert list(curve["sigma"]) == [1.0, 0.1, 0.01, 1e-4, 1e-6]
    assert curve["infonce"].is_monotonic_increasing
    assert curve["infonce"].iloc[0] < 1.0
    assert curve["infonce"].iloc[-1] == pytest.approx(math.log(500), abs=0.01)  # the whole index, one number
    assert curve["loo"].iloc[-1] > 100  # the upper bound runs away: the information is unbounded
    assert (curve["rate"] >= curve["infonce"] - 1e-6).all()


def test_trained_vae_on_gaussian_data_obeys_the_sandwich(gaussian_source, tiny_vae):
    """h(X) - D <= I(X;Z) <= R (Alemi et al. 2018): checked through infonce/loo, which bracket I."""
    ds = gaussian_source(n_train=3000, n_test=2000)  # D=8, k=2, sigma=0.5, seed 0
    m = tiny_vae(input_dim=8, latent_dim=2, hidden=(), likelihood="gaussian")
    ibkit.fit(m, ds.train, epochs=20, lr=1e-2, progress=False)
    b = E.mi_bounds(m, ds.test, entropy=ds.entropy())
    tol = 4 * max(b["infonce_se"], b["loo_se"])
    assert b["entropy_minus_distortion"] <= b["loo"] + tol
    assert b["infonce"] <= b["rate"] + tol
    assert b["entropy_minus_distortion"] <= b["rate"]
    # near the pPCA optimum the sandwich is nearly tight around the source's own I(X;Z)
    assert b["infonce"] == pytest.approx(ds.mutual_information(), abs=0.3)


def test_kl_per_dim_sums_to_rate_and_capacity_bounds_noisy_ae(tiny_vae):
    ds = ibkit.data.load("digits")
    vae = tiny_vae(input_dim=64, latent_dim=4, hidden=(32,), beta=0.5)
    ibkit.fit(vae, ds.train, epochs=3, progress=False)
    per_dim = E.kl_per_dim(vae, ds.test)
    assert per_dim.shape == (4,)
    assert per_dim.sum().item() == pytest.approx(E.rate(vae, ds.test), rel=1e-5)
    noisy = ibkit.build_model("noisy_ae", 64, 3, hidden=(32,), noise=0.3)
    ibkit.fit(noisy, ds.train, epochs=3, progress=False)
    cap = gaussian_channel_capacity(3, 0.3)
    assert cap == pytest.approx(1.5 * math.log(1 + 1 / 0.09))
    assert E.mi_bounds(noisy, ds.test)["infonce"] <= cap


def test_label_information_of_label_code_and_constant_code():
    ds = ibkit.data.load("digits")
    y = ds.test_labels
    one_hot = Code(lambda x: torch.nn.functional.one_hot(y, 10).float()[: len(x)], 10)
    info = E.label_information(one_hot, ds.test, y)
    assert info["accuracy"] == 1.0
    # each one-hot dimension tells one class apart: H(Bernoulli(1/10)) = 0.33 nats
    assert info["mi_per_dim"].shape == (10,) and (info["mi_per_dim"] > 0.2).all()
    const = E.label_information(Code(lambda x: torch.zeros(len(x), 3), 3), ds.test, y)
    assert const["accuracy"] == pytest.approx(const["chance"], abs=0.02)
    np.testing.assert_allclose(const["mi_per_dim"], 0.0, atol=0.05)  # the k-NN estimator's noise floor


def test_bad_input():
    x = gaussian_data(10, C)
    enc = LinearGaussianEncoder(A, torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="sigma=0 must be > 0"):
        E.probe(Code(lambda x: x, 4), 0)
    with pytest.raises(ValueError, match="sigma=-1.0 must be > 0"):
        E.probe_curve(Code(lambda x: x, 4), x, [1.0, -1.0])
    with pytest.raises(ValueError, match="at least 2 data points"):
        E.mi_bounds(enc, x[:1])
    with pytest.raises(ValueError, match="has neither"):
        E.probe(object(), 0.1)
    with pytest.raises(ValueError, match="probe"):
        E.mi_bounds(Code(lambda x: x, 4), x)
    with pytest.raises(ValueError, match=r"expected shape \[10\], got \[9\]"):
        E.label_information(Code(lambda x: x, 4), x, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="diagonal Gaussian"):
        E.kl_per_dim(LinearGaussianEncoder(A, torch.zeros(3), C[:3, :3]), x)


def test_information_bracket_takes_the_tighter_bounds_and_has_no_upper_bound_for_a_deterministic_code():
    """Linear-Gaussian channel (closed form inside the bracket): the lower end is InfoNCE, the upper the smaller of
    LOO and the rate, each with its standard error; a deterministic code gets +inf above, with the reason."""
    x = gaussian_data(1000, C, seed=3)
    S = torch.diag(torch.tensor([0.3, 0.2, 0.5]))
    enc = LinearGaussianEncoder(A, torch.zeros(3), S)
    out = E.information_bracket(enc, x, seed=0)
    b = E.mi_bounds(enc, x, seed=0)
    assert out["mi_lower"] == b["infonce"] and out["mi_lower_se"] == b["infonce_se"] > 0
    assert out["mi_upper"] == min(b["loo"], b["rate"]) and out["mi_upper_se"] > 0 and out["mi_upper_note"] == ""
    assert out["mi_lower"] - 3 * out["mi_lower_se"] < enc.true_information(C) < out["mi_upper"] + 3 * out["mi_upper_se"]
    det = E.information_bracket(Code(lambda x: x[:, :2], 2), x, probe_sigma=1e-4)
    assert det["mi_upper"] == math.inf and det["mi_upper_note"].startswith("unbounded")
    assert det["mi_lower"] == pytest.approx(math.log(1000), abs=0.05) and det["probe_sigma"] == 1e-4
    assert det["loo"] > 100  # the probe channel's LOO: kept, but not as the code's upper bound
