"""The model protocol as a new user meets it: models built from plain torch modules, subclassing nothing, measured by
every estimator; what they return is checked against the protocol's shapes, and what is missing or wrong is
refused with the fix (ibkit.interface)."""

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Beta, Independent, Normal, constraints

import ibkit
import ibkit.interface as interface
from ibkit import estimators as E

D, d, N = 6, 4, 200
X = (torch.rand(N, D, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def _linear(n_in: int, n_out: int, seed: int, gain: float = 1.0) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(gain * torch.randn(n_out, n_in, generator=g))
        layer.bias.copy_(0.3 * torch.randn(n_out, generator=g))
    return layer


class OutsideVAE:
    """A user's VAE: a linear encoder to (mu, log sigma), a linear Bernoulli decoder, prior N(0, I).
    ``independent=False`` returns the posterior as a bare Normal (the mistake), ``bad_prior=True`` the prior."""

    def __init__(self, independent: bool = True, bad_prior: bool = False):
        self.enc, self.dec = _linear(D, 2 * d, 1, gain=1.5), _linear(d, D, 2)
        self.independent, self.bad_prior = independent, bad_prior

    def posterior_params(self, x):
        return self.enc(x)

    def posterior_from_params(self, h):
        mu, log_s = h.chunk(2, dim=-1)
        q = Normal(mu, (log_s - 1.0).exp())
        return Independent(q, 1) if self.independent else q

    def posterior(self, x):
        return self.posterior_from_params(self.posterior_params(x))

    def prior(self):
        p = Normal(torch.zeros(d), torch.ones(d))
        return p if self.bad_prior else Independent(p, 1)

    def log_likelihood(self, x, z):
        return torch.distributions.Bernoulli(logits=self.dec(z), validate_args=False).log_prob(x).sum(-1)


def _closed_form_rate(model: OutsideVAE, x) -> float:
    """E_x KL(N(mu, diag s^2) || N(0, I)) = E_x 1/2 sum_k (s_k^2 + mu_k^2 - 1 - 2 log s_k), float64."""
    mu, log_s = model.posterior_params(x).detach().double().chunk(2, dim=-1)
    s = (log_s - 1.0).exp()
    return (0.5 * (s.pow(2) + mu.pow(2) - 1 - 2 * s.log()).sum(-1)).mean().item()


# ------------------------------------------------------------------------------------------------------------
# 1. a posterior or prior of the wrong shape is refused, with the fix

def test_the_rate_of_an_independent_posterior_is_the_closed_form_kl():
    model = OutsideVAE()
    expected = _closed_form_rate(model, X)
    assert expected > 3.0  # d = 4 dimensions of several nats: a rate divided by d would be far off
    assert E.rate(model, X) == pytest.approx(expected, rel=1e-5)
    assert E.kl_per_dim(model, X).sum().item() == pytest.approx(expected, rel=1e-5)


WRONG_SHAPE_CALLS = {
    "rate": lambda m: E.rate(m, X),
    "rate_standard_error": lambda m: E.rate_standard_error(m, X),
    "distortion": lambda m: E.distortion(m, X),
    "elbo": lambda m: E.elbo(m, X),
    "iwae": lambda m: E.iwae(m, X, 5),
    "mi_bounds": lambda m: E.mi_bounds(m, X),
    "probe": lambda m: E.mi_bounds(E.probe(m, 0.1), X),
    "kl_per_dim": lambda m: E.kl_per_dim(m, X),
    "active_units": lambda m: E.active_units(m, X),
    "posterior_correlation": lambda m: E.posterior_correlation(m, X, k=5),
    "rate_decomposition": lambda m: E.rate_decomposition(m, X),
    "amortization_gap": lambda m: E.amortization_gap(m, X, steps=1, k=2),
}


@pytest.mark.parametrize("call", sorted(WRONG_SHAPE_CALLS))
def test_a_bare_normal_posterior_is_refused_by_every_estimator(call):
    """Normal(mu, s) has batch [N, d] and event []: the rate would come out divided by d. Refused, with the fix."""
    with pytest.raises(ValueError, match=r"posterior\(x\) returned Normal with batch_shape \[8, 4\] and event_shape "
                                         r"\[\] .*expected batch_shape \[8\] and event_shape \[d\].*"
                                         r"Independent\(Normal\(mu, sigma\), 1\)"):
        WRONG_SHAPE_CALLS[call](OutsideVAE(independent=False))


@pytest.mark.parametrize("call", ["rate", "elbo", "iwae", "kl_per_dim", "posterior_correlation", "probe"])
def test_a_bare_normal_prior_is_refused(call):
    with pytest.raises(ValueError, match=r"prior\(\) returned Normal with batch_shape \[4\] and event_shape \[\]; "
                                         r"expected batch_shape \[\] and event_shape \[4\].*Independent"):
        WRONG_SHAPE_CALLS[call](OutsideVAE(bad_prior=True))


def test_a_log_likelihood_that_forgets_to_sum_is_refused():
    class Unsummed(OutsideVAE):
        def log_likelihood(self, x, z):
            return torch.distributions.Bernoulli(logits=self.dec(z), validate_args=False).log_prob(x)  # [S, N, D]

    with pytest.raises(ValueError, match=r"log_likelihood\(x, z\) returned shape \[1, 8, 6\] .* expected \[1, 8\]"):
        E.elbo(Unsummed(), X)


# ------------------------------------------------------------------------------------------------------------
# 2. a code with only encode can be probed: its width comes from the code

class OutsideCode:
    """Only ``encode``: no decoder, no latent_dim, no prior."""

    def __init__(self):
        self.net = _linear(D, 2, 3)

    def encode(self, x):
        return self.net(x)


def test_a_code_with_only_encode_can_be_probed():
    code, sigma = OutsideCode(), 0.1
    b = E.mi_bounds(E.probe(code, sigma), X)
    assert math.isfinite(b["infonce"]) and 0.5 < b["infonce"] <= math.log(N) + 1e-9
    assert math.isfinite(b["loo"]) and b["loo"] >= b["infonce"]
    # the rate against N(0, I_2), 2 read from the code: E_x 1/2 sum_k (sigma^2 + f_k(x)^2 - 1 - 2 log sigma)
    f = code.encode(X).detach().double()
    expected = (0.5 * (sigma**2 + f.pow(2) - 1 - 2 * math.log(sigma)).sum(-1)).mean().item()
    assert b["rate"] == pytest.approx(expected, rel=1e-5)
    assert "rate_note" not in b
    with pytest.raises(ValueError, match=r"distortion needs the decoder's log p\(x\|z\): OutsideCode has no "
                                         r"log_likelihood"):
        E.distortion(code, X)
    assert not hasattr(E.probe(code, sigma), "log_likelihood")  # the probe has no decoder the code lacks


def test_a_posterior_without_a_prior_gets_information_bounds_and_a_nan_rate_with_the_reason():
    class NoPrior:
        def __init__(self):
            self.model = OutsideVAE()

        def posterior(self, x):
            return self.model.posterior(x)

    with_prior = E.mi_bounds(OutsideVAE(), X)
    b = E.mi_bounds(NoPrior(), X)
    assert b["infonce"] == with_prior["infonce"] and b["loo"] == with_prior["loo"]
    assert math.isnan(b["rate"]) and "has no prior()" in b["rate_note"]
    with pytest.raises(ValueError, match=r"rate needs the prior p\(z\): NoPrior has no prior\(\)"):
        E.rate(NoPrior(), X)


def test_a_code_of_the_wrong_shape_is_refused():
    class Flat:
        def encode(self, x):
            return x.sum(-1)  # [N], not [N, 1]

    with pytest.raises(ValueError, match=r"Flat.encode\(x\) must return a tensor \[N, d\] = \[8, d\].*got \[8\]"):
        E.mi_bounds(E.probe(Flat(), 0.1), X)


# ------------------------------------------------------------------------------------------------------------
# 3. mse needs decode, and uses nothing else

class LinearAE:
    """z = x A, E[x|z] = z A^T: an outside deterministic autoencoder with a decoder mean."""

    def __init__(self):
        self.A = torch.randn(D, 3, generator=torch.Generator().manual_seed(4)) / 2

    def encode(self, x):
        return x @ self.A

    def decode(self, z):
        return z @ self.A.T


def test_mse_of_an_outside_model_uses_its_decode():
    ae = LinearAE()
    expected = (X - X @ ae.A @ ae.A.T).pow(2).sum(-1).mean().item()
    assert expected > 0.5
    assert E.mse(ae, X) == pytest.approx(expected, rel=1e-6)
    assert E.mse(E.probe(ae, 1e-3), X, n_samples=200) == pytest.approx(expected, rel=1e-3)


def test_mse_without_decode_says_to_add_it():
    with pytest.raises(ValueError, match=r"mse needs the decoder's mean E\[x\|z\]: OutsideVAE has no decode\(z\); "
                                         r"add a method decode\(z\)"):
        E.mse(OutsideVAE(), X)


def test_mse_of_an_ibkit_model_is_its_decoders_squared_error():
    ae = ibkit.build_model("ae", D, 3, hidden=(8,), seed=1)
    expected = (X - ae.decode(ae.encode(X))).pow(2).sum(-1).mean().item()
    assert E.mse(ae, X) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------------------------
# 4. data outside the likelihood's support

class WithSupport(OutsideVAE):
    support = constraints.unit_interval


class WithCheck(WithSupport):
    def check_data(self, x, name="x"):
        if x.max() > 1:
            raise ValueError(f"{name}: WithCheck scores binary images only")


class BetaDecoder(OutsideVAE):
    """Beta(a, b) pixels: log_prob is NaN for a value outside (0, 1) (torch does not validate here)."""

    def log_likelihood(self, x, z):
        h = self.dec(z)
        a, b = 1 + torch.nn.functional.softplus(h), 1 + torch.nn.functional.softplus(-h)
        return Beta(a, b, validate_args=False).log_prob(x).sum(-1)


def test_data_outside_a_declared_support_is_refused_with_the_range_and_the_support():
    with pytest.raises(ValueError, match=r"x has values in \[0, 255\] but WithSupport's likelihood has support "
                                         r"\[0, 1\]"):
        E.elbo(WithSupport(), X * 255)
    assert math.isfinite(E.elbo(WithSupport(), X))


def test_the_models_own_check_data_comes_first():
    with pytest.raises(ValueError, match="x: WithCheck scores binary images only"):
        E.rate(WithCheck(), X * 255)


def test_a_nan_log_likelihood_is_refused_naming_the_likely_cause():
    grey = X.clamp(0.05, 0.95)  # inside (0, 1): every Beta density is finite
    assert math.isfinite(E.elbo(BetaDecoder(), grey))
    with pytest.raises(ValueError, match=r"BetaDecoder.log_likelihood\(x, z\) returned NaN .* x with values in "
                                         r"\[0.1, 1.9\]: most likely x lies outside the support"):
        E.iwae(BetaDecoder(), grey * 2, 3)  # pixels rescaled to [0, 2] by mistake


def test_likelihoods_declare_their_support_and_ibkit_models_keep_their_message(tiny_vae):
    from ibkit.registry import LIKELIHOODS

    assert LIKELIHOODS["bernoulli"].support is constraints.unit_interval
    assert LIKELIHOODS["gaussian"].support is constraints.real
    vae = tiny_vae(input_dim=D, latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"x has values in \[0, 255\] but likelihood='bernoulli' needs values in "
                                         r"\[0, 1\]"):
        E.rate(vae, X * 255)
    assert E.rate(tiny_vae(input_dim=D, latent_dim=2, hidden=(8,), likelihood="gaussian"), X * 255) > 0


# ------------------------------------------------------------------------------------------------------------
# the protocol itself

class ProtocolOnly:
    """An ibkit VAE seen only through the declared protocol: a model that has nothing else to reach into."""

    def __init__(self, model):
        self._m = model

    def posterior(self, x):
        return self._m.posterior(x)

    def prior(self):
        return self._m.prior()

    def log_likelihood(self, x, z):
        return self._m.log_likelihood(x, z)

    def decode(self, z):
        return self._m.decode(z)

    def check_data(self, x, name="x"):
        self._m.check_data(x, name)

    def posterior_params(self, x):
        return self._m.posterior_params(x)

    def posterior_from_params(self, h):
        return self._m.posterior_from_params(h)

    @property
    def input_dim(self):
        return self._m.input_dim


def test_estimators_read_only_the_protocol(tiny_vae):
    """Every estimator gives the same numbers on an ibkit VAE and on a wrapper that exposes only the protocol."""
    vae = tiny_vae(input_dim=D, latent_dim=3, hidden=(8,), seed=2)
    outside = ProtocolOnly(vae)
    for call in (lambda m: E.rate(m, X), lambda m: E.distortion(m, X), lambda m: E.mse(m, X),
                 lambda m: E.iwae(m, X, 4), lambda m: E.mi_bounds(m, X)["loo"], lambda m: E.active_units(m, X),
                 lambda m: E.posterior_correlation(m, X, k=4, min_ess=1)["true"],
                 lambda m: E.kl_per_dim(m, X).sum().item(),
                 lambda m: E.amortization_gap(m, X[:20], steps=3, k=4)["elbo_optimised"]):
        assert call(outside) == pytest.approx(call(vae), rel=1e-6, abs=1e-6)
    with pytest.raises(ValueError, match="x has width 5 but the model expects input_dim=6"):
        E.rate(outside, X[:, :5])


def test_amortization_gap_of_an_outside_model():
    r = E.amortization_gap(OutsideVAE(), X[:50], steps=50, lr=5e-2, k=50)
    assert r["amortization_gap"] > 0.5  # a random encoder: per-datapoint optimisation gains a lot
    assert r["approximation_gap"] > -0.5  # log p(x) from q* is above the optimised ELBO, up to noise


def test_ibkit_models_follow_the_declared_protocols(tiny_vae):
    vae, ae = tiny_vae(input_dim=D, latent_dim=2, hidden=(8,)), ibkit.build_model("ae", D, 2, hidden=(8,))
    for protocol in (interface.LatentVariableModel, interface.HasDecode, interface.HasInputDim,
                     interface.HasCheckData, interface.HasSupport, interface.HasPosteriorParams):
        assert isinstance(vae, protocol), protocol.__name__
    assert isinstance(ae, interface.DeterministicCode) and not isinstance(ae, interface.LatentVariableModel)
    assert isinstance(OutsideCode(), interface.DeterministicCode)
    assert not isinstance(OutsideCode(), interface.HasLogLikelihood)


def test_the_interface_imports_nothing_else_from_ibkit():
    tree = ast.parse(Path(interface.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.split(".")[0] == "ibkit"]


class ModuleVAE(nn.Module):
    """OutsideVAE's protocol on an nn.Module (so it has parameters), still without a forward."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = _linear(D, 2 * d, 1, gain=1.5), _linear(d, D, 2)

    def posterior(self, x):
        mu, log_s = self.enc(x).chunk(2, dim=-1)
        return Independent(Normal(mu, log_s.exp()), 1)

    def prior(self):
        return Independent(Normal(torch.zeros(d), torch.ones(d)), 1)

    def log_likelihood(self, x, z):
        return torch.distributions.Bernoulli(logits=self.dec(z), validate_args=False).log_prob(x).sum(-1)


@pytest.mark.parametrize("model", [OutsideVAE(), ModuleVAE()], ids=["plain object", "module without forward"])
def test_fit_says_what_it_needs_of_a_protocol_only_model(model):
    """Measured by every estimator, but fit needs a forward that returns the loss: a ValueError that says so,
    not PyTorch's 'missing the required forward function'."""
    x = (torch.rand(16, D, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert math.isfinite(E.rate(model, x))
    for train in (lambda: ibkit.fit(model, x, epochs=1), lambda: ibkit.fit_many([model], x, epochs=1)):
        with pytest.raises(ValueError, match=r"cannot be trained by fit: fit needs a torch.nn.Module whose "
                                             r"forward\(x, eps\) returns per-example loss"):
            train()
