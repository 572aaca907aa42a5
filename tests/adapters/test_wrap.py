"""ibkit.wrap: plain torch modules measured and trained as ibkit's own models, checked against closed forms and
against the same network built by ibkit."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

import ibkit
from ibkit import estimators as E
from ibkit.adapters import modules


def _exact_linear_gaussian(sigma: float):
    """x = W z + b + sigma eps with orthogonal columns of W, so the exact posterior is diagonal:
    p(z|x) = N(M^-1 W^T (x - b) / sigma^2, M^-1), M = I + W^T W / sigma^2. Returns an encoder giving its loc and
    log variance, the generating decoder, and log p(x) = log N(x; b, W W^T + sigma^2 I)."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 2, generator=g, dtype=torch.float64))
    W, b = q * torch.tensor([2.0, 0.7], dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    m_inv = 1 / (1 + (W * W).sum(0) / sigma**2)  # diagonal of M^-1
    encoder, decoder = nn.Linear(6, 4), nn.Linear(2, 6)
    with torch.no_grad():
        encoder.weight.copy_(torch.cat([m_inv[:, None] * W.T / sigma**2, torch.zeros(2, 6, dtype=torch.float64)]))
        encoder.bias.copy_(torch.cat([-(m_inv[:, None] * W.T / sigma**2) @ b, m_inv.log()]))
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
    marginal = MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(6, dtype=torch.float64))
    return encoder, decoder, marginal


@pytest.mark.parametrize("sigma,likelihood", [(1.0, "gaussian"), (0.5, "callable")])
def test_with_the_exact_posterior_every_importance_sample_gives_log_p_x(sigma, likelihood):
    encoder, decoder, marginal = _exact_linear_gaussian(sigma)
    fn = (lambda out: Normal(out, sigma)) if likelihood == "callable" else likelihood
    m = ibkit.wrap(encoder, decoder, likelihood=fn)
    assert (m.latent_dim, m.input_dim) == (2, 6)
    x = marginal.sample((300,), ).float()
    log_px = marginal.log_prob(x.double()).float()
    torch.testing.assert_close(E.iwae(m, x, 1, per_example=True), log_px, rtol=0, atol=2e-4)  # log w is constant
    # the ELBO's distortion is a Monte Carlo mean (the rate is closed-form): equal on average
    assert E.elbo(m, x, n_samples=400) == pytest.approx(log_px.mean().item(), abs=0.02)
    # the rate's closed form: KL(N(mu, diag s^2) || N(0, I)) = 1/2 sum (s^2 + mu^2 - 1 - log s^2)
    h = encoder(x)
    mu, logvar = h[:, :2], h[:, 2:]
    assert E.rate(m, x) == pytest.approx(0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1).mean().item(), rel=1e-5)


@pytest.fixture(scope="module")
def vae_and_its_wrapping(tiny_vae):
    own = tiny_vae(input_dim=64, latent_dim=4, seed=3)
    return own, ibkit.wrap(copy.deepcopy(own.encoder), copy.deepcopy(own.decoder), likelihood="bernoulli")


def test_a_wrapped_network_measures_as_the_same_network_built_by_ibkit(digits, vae_and_its_wrapping):
    own, wrapped = vae_and_its_wrapping
    x = digits.test
    for estimate in (E.rate, E.distortion, E.elbo, lambda m, x: E.iwae(m, x, 50),
                     lambda m, x: E.mi_bounds(m, x)["infonce"], E.active_units):
        assert estimate(wrapped, x) == pytest.approx(estimate(own, x), rel=1e-5, abs=1e-5)


def test_a_wrapped_network_trains_as_the_same_network_built_by_ibkit(digits, tiny_vae):
    own = tiny_vae(input_dim=64, latent_dim=4, seed=3)
    wrapped = ibkit.wrap(copy.deepcopy(own.encoder), copy.deepcopy(own.decoder), likelihood="bernoulli")
    ours = ibkit.fit(own, digits.train, epochs=3, seed=1, progress=False)
    theirs = ibkit.fit(wrapped, digits.train, epochs=3, seed=1, progress=False)
    columns = ["loss", "rate", "distortion"]
    pd_ours, pd_theirs = ours[columns].to_numpy(), theirs[columns].to_numpy()
    assert abs(pd_ours - pd_theirs).max() < 1e-3 and pd_theirs[-1, 0] < pd_theirs[0, 0] - 1  # same steps; it learns
    assert E.elbo(wrapped, digits.test) == pytest.approx(E.elbo(own, digits.test), abs=1e-3)


class _ConvEncoder(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2 * d))

    def forward(self, x):
        assert x.shape[1:] == (1, 8, 8), x.shape  # sees its own image shape
        return self.net(x)


class _ConvDecoder(nn.Module):
    """Takes [B, d] only, as most decoders written for training do; counts its calls."""

    def __init__(self, d: int):
        super().__init__()
        self.fc, self.up = nn.Linear(d, 4 * 4 * 4), nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)
        self.calls = 0

    def forward(self, z):
        assert z.dim() == 2, z.shape
        self.calls += 1
        return self.up(torch.relu(self.fc(z)).view(-1, 4, 4, 4))  # logits [B, 1, 8, 8]


def test_images_are_flattened_at_the_boundary_and_samples_reach_the_decoder_in_chunks(digits, monkeypatch):
    m = ibkit.wrap(_ConvEncoder(3), _ConvDecoder(3), likelihood="bernoulli", input_shape=(1, 8, 8))
    assert (m.latent_dim, m.input_dim) == (3, 64)
    x = digits.test[:100]
    z = m.posterior(x).sample((7,))  # [7, 100, 3]
    whole = m.log_likelihood(x, z)
    monkeypatch.setattr(modules, "DECODER_ROWS", 128)
    m.decoder.calls = 0
    assert torch.equal(m.log_likelihood(x, z), whole) and whole.shape == (7, 100)
    assert m.decoder.calls == math.ceil(700 / 128)
    # the Bernoulli likelihood of the logits, by hand
    logits = m.decoder(z.reshape(-1, 3)).reshape(7, 100, 64)
    torch.testing.assert_close(whole, Independent(Bernoulli(logits=logits), 1).log_prob(x))
    assert m.decode(z).shape == (7, 100, 64)
    history = ibkit.fit(m, digits.train, epochs=2, progress=False)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_a_callable_posterior_and_likelihood_see_the_modules_own_outputs(digits):
    def posterior(h):
        return Independent(Normal(h[:, :3], nn.functional.softplus(h[:, 3:]) + 1e-3), 1)

    def likelihood(logits):  # [B, 1, 8, 8]
        return Bernoulli(logits=logits)

    m = ibkit.wrap(_ConvEncoder(3), _ConvDecoder(3), likelihood=likelihood, posterior=posterior,
                   input_shape=(1, 8, 8))
    x = digits.test[:50]
    same = ibkit.wrap(m.encoder, m.decoder, likelihood="bernoulli", posterior=posterior, input_shape=(1, 8, 8))
    z = m.posterior(x).sample((2,))
    torch.testing.assert_close(m.log_likelihood(x, z), same.log_likelihood(x, z))
    torch.testing.assert_close(m.decode(z), torch.sigmoid(m.decoder_params(z)))
    assert E.iwae(m, x, 20) < 0 and E.rate(m, x) > 0


def test_a_deterministic_code_is_measured_through_a_probe(digits):
    encoder, decoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)), nn.Linear(2, 64)
    m = ibkit.wrap(encoder, decoder, likelihood="bernoulli", posterior="none")
    assert not ibkit.interface.is_stochastic(m) and m.latent_dim == 2
    x = digits.test
    torch.testing.assert_close(m.encode(x), encoder(x))
    ibkit.fit(m, digits.train, epochs=3, progress=False)
    assert E.distortion(m, x) == pytest.approx(-m.log_likelihood(x, m.encode(x)).mean().item(), rel=1e-6)
    bounds = E.mi_bounds(E.probe(m, 1e-3), x)
    assert 0.5 * math.log(len(x)) < bounds["infonce"] <= math.log(len(x))  # a 2-number code tells the rows apart


def test_a_learned_prior_module_trains_with_the_model(digits):
    class LearnedPrior(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Parameter(torch.full((3,), 2.0))

        def forward(self):
            return Independent(Normal(self.loc, torch.ones(3)), 1)

    prior = LearnedPrior()
    m = ibkit.wrap(_ConvEncoder(3), _ConvDecoder(3), likelihood="bernoulli", input_shape=(1, 8, 8), prior=prior)
    assert any(p is prior.loc for p in m.parameters())
    ibkit.fit(m, digits.train, epochs=2, lr=1e-2, progress=False)
    assert (prior.loc.detach() - 2.0).abs().max() > 0.05


@pytest.mark.parametrize("kwargs,message", [
    (dict(likelihood="poisson", input_shape=(1, 8, 8)),
     "likelihood='poisson' is not known; choose one of: bernoulli, gaussian"),
    (dict(likelihood="bernoulli", posterior="cauchy", input_shape=(1, 8, 8)),
     "posterior='cauchy' is not known; choose one of: diagonal, full, iaf, none"),
    (dict(likelihood="bernoulli", input_shape=(1, -8, 8)), r"input_shape=\(1, -8, 8\) must be a tuple of positive"),
    (dict(likelihood="bernoulli", input_shape=(1, 7, 7)), r"the encoder failed on an input of shape \(1, 1, 7, 7\)"),
    (dict(likelihood="bernoulli", prior=Independent(Normal(torch.zeros(5), 1.0), 1), input_shape=(1, 8, 8)),
     r"prior gives Independent with batch_shape \[\] and event_shape \[5\]; .* event_shape \[3\]"),
    (dict(likelihood="bernoulli"), "input_shape=None, but the encoder's input shape cannot be read"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ibkit.wrap(_ConvEncoder(3), _ConvDecoder(3), **kwargs)


def test_an_encoder_output_no_family_takes_is_refused():
    with pytest.raises(ValueError, match="the encoder gives 7 outputs per example, which is no diagonal posterior's"):
        ibkit.wrap(nn.Linear(64, 7), nn.Linear(3, 64), likelihood="bernoulli")


class _TwoHeads(nn.Module):
    """The same network as ``body`` (x -> [N, 2d]) with two heads: (mu, logvar) as a tuple, pythae's ModelOutput, or
    a bad form for the refusals."""

    def __init__(self, body: nn.Module, form: str):
        super().__init__()
        self.body, self.form = body, form

    def forward(self, x):
        mu, logvar = self.body(x).chunk(2, -1)  # [N, d] each
        if self.form == "model_output":
            from pythae.models.base.base_utils import ModelOutput

            return ModelOutput(embedding=mu, log_covariance=logvar)
        return {"tuple": (mu, logvar), "three": (mu, logvar, mu), "widths": (mu, logvar[:, 1:]),
                "embedding only": {"embedding": mu}}[self.form]


@pytest.mark.parametrize("form", ["tuple", "model_output"])
def test_a_two_head_encoder_measures_as_the_one_tensor_form_of_the_same_weights(form, digits, vae_and_its_wrapping):
    if form == "model_output":
        pytest.importorskip("pythae", reason="pythae is not installed (pip install -e '.[pythae]')")
    own, flat = vae_and_its_wrapping  # flat: the encoder gives [N, 2d] = [N, 8]
    heads = ibkit.wrap(_TwoHeads(flat.encoder, form), flat.decoder, likelihood="bernoulli")
    x = digits.test
    assert heads.latent_dim == flat.latent_dim == 4
    torch.testing.assert_close(heads.posterior_params(x), flat.posterior_params(x), rtol=0, atol=0)
    for estimate in (E.rate, E.elbo):  # the ELBO's Monte Carlo draws are seeded: the same z
        assert abs(estimate(heads, x) - estimate(flat, x)) <= 1e-6
    assert abs(E.rate(heads, x) - E.rate(own, x)) <= 1e-6


@pytest.mark.parametrize("form,message", [
    ("three", r"the encoder gives a tuple of 3 \(a tensor of shape \[1, 4\], a tensor of shape \[1, 4\], a tensor "
              r"of shape \[1, 4\]\); it must give a tensor \[N, P\], or two heads"),
    ("widths", r"the encoder gives a tuple of 2 \(a tensor of shape \[1, 4\], a tensor of shape \[1, 3\]\); its two "
               r"heads \(mu, logvar\) must be tensors of one shape \[N, d\]"),
    ("embedding only", r"the encoder gives a dict with embedding: a tensor of shape \[1, 4\]; it must give"),
])
def test_a_two_head_encoder_of_a_bad_shape_is_refused_naming_what_came(form, message, vae_and_its_wrapping):
    _, flat = vae_and_its_wrapping
    with pytest.raises(ValueError, match=message):
        ibkit.wrap(_TwoHeads(flat.encoder, form), flat.decoder, likelihood="bernoulli")
