"""The hierarchical VAE (``kind="hvae"``) and ``E.per_layer``, checked against the two-layer linear-Gaussian source,
whose log p(x), I(X;Z1), I(X;Z2), I(X;Z1|Z2), I(Z1;Z2) and exact posterior factors are known in closed form."""

import math

import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.models.generating import generating_hvae

INFERENCE = ("top_down", "bottom_up")


@pytest.fixture(scope="module")
def source(gaussian_source):
    return gaussian_source(latent_dims=(3, 2), input_dim=8, n_train=4000, n_test=2000, seed=0)


@pytest.mark.parametrize("inference", INFERENCE)
def test_with_the_exact_encoder_every_sample_gives_log_p_x(source, inference):
    """log p(x|z) + log p(z) - log q(z|x) = log p(x) at every z when q is the exact posterior: the hvae's prior
    chain, its ancestral q and the likelihood are each right. Its prior is the source's joint prior over (z1, z2)."""
    m = generating_hvae(source, inference, exact=True)
    x = source.test[:50]
    with torch.no_grad():
        q = m.posterior(x)
        z = q.rsample((20,))  # [20, 50, 5]
        log_w = m.log_likelihood(x, z) + m.prior().log_prob(z) - q.log_prob(z)
        torch.testing.assert_close(log_w, source.log_px(x).expand(20, -1), atol=2e-4, rtol=0)
        torch.testing.assert_close(m.prior().log_prob(z), source.true_model().prior().log_prob(z), atol=1e-4,
                                   rtol=1e-5)
        torch.testing.assert_close(q.log_prob(z), source.exact_posterior(x).log_prob(z), atol=2e-4, rtol=1e-5)
    x = source.test[:300]
    assert E.iwae(m, x, 5000) == pytest.approx(source.log_px(x).mean().item(), abs=1e-3)  # chunked, k = 5,000


@pytest.mark.parametrize("inference", INFERENCE)
def test_per_layer_rates_and_bounds_match_the_closed_forms(source, inference):
    """Exact posterior: top-down the layers' conditional KLs are I(X;Z1|Z2) and I(X;Z2); bottom-up they are
    I(X;Z1) - I(Z1;Z2) and I(Z1;Z2). Either way mi_upper of layer 1 is I(X;Z1), InfoNCE sits just below each
    I(X;Z_l), and the rates sum to E.rate."""
    m = generating_hvae(source, inference, exact=True)
    x = source.test
    i1, i2 = source.layer_information()
    expected = ([source.conditional_information(), i2] if inference == "top_down"
                else [i1 - source.latent_information(), source.latent_information()])
    table = E.per_layer(m, x, seed=0)
    assert table["layer"].tolist() == [1, 2] and table["latent_dim"].tolist() == [3, 2]
    for row, want, info in zip(table.itertuples(), expected, (i1, i2), strict=True):
        assert abs(row.rate - want) < 4 * row.rate_se
        assert info - 0.1 < row.mi_lower < info + 3 * row.mi_lower_se
    assert abs(table["mi_upper"].iloc[0] - i1) < 4 * table["mi_upper_se"].iloc[0]
    assert table["mi_upper"].iloc[1] == pytest.approx(table["rate"].iloc[1])
    assert table["rate"].sum() == pytest.approx(E.rate(m, x), abs=4 * E.rate_standard_error(m, x) + 2e-3)
    assert table["active_units"].tolist() == [3, 2] and table["active_units_kl"].tolist() == [3, 2]
    bounds = E.mi_bounds(m, x[:1000], seed=0)
    assert bounds["infonce"] < i1 + 3 * bounds["infonce_se"] and bounds["rate"] > i1 - 0.1


@pytest.mark.parametrize("inference", INFERENCE)
def test_a_trained_encoder_on_the_frozen_generator_approaches_log_p_x(source, inference):
    """Encoder-only training on the frozen generating model: the ELBO comes within 0.15 nats of log p(x) (the
    family holds the exact posterior; 195 Adam steps, the step size decaying from 3e-2 to 3e-3 as the batch grows
    from 500 rows to all 4,000, leave top-down about 0.09 short, bottom-up 0.02), IWAE closes the rest, and each
    layer's rate nears its closed form (within 0.05 here)."""
    m = generating_hvae(source, inference, seed=1)
    before = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("encoder")}
    for seed, (epochs, lr, batch_size) in enumerate([(15, 3e-2, 500), (15, 1e-2, 1000), (15, 3e-3, 4000)]):
        ibkit.fit(m, source.train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, trainable="encoder",
                  progress=False)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # the generator stayed frozen
    x = source.test[:500]
    log_px = source.log_px(x).mean().item()
    assert log_px - 0.15 < E.elbo(m, x) <= log_px + 0.01
    assert E.iwae(m, x, 1000) == pytest.approx(log_px, abs=0.01)
    i1, i2 = source.layer_information()
    rates = E.per_layer(m, x)["rate"].values
    expected = ((source.conditional_information(), i2) if inference == "top_down"
                else (i1 - source.latent_information(), source.latent_information()))
    assert rates == pytest.approx(expected, abs=0.15)


@pytest.mark.parametrize("inference", INFERENCE)
def test_a_beta_sweep_trains_as_one_batch_as_each_alone(inference, digits):
    settings = dict(latent_dims=(4, 2), hidden=(32,), layer_hidden=(16,), inference=inference)
    models = [ibkit.build_model("hvae", digits.input_dim, 6, beta=b, seed=0, **settings) for b in (0.5, 2.0)]
    histories = ibkit.fit_many(models, digits.train, epochs=3, seed=0, progress=False)
    alone = ibkit.build_model("hvae", digits.input_dim, 6, beta=2.0, seed=0, **settings)
    history = ibkit.fit(alone, digits.train, epochs=3, seed=0, progress=False)
    assert histories[1]["loss"].values == pytest.approx(history["loss"].values, rel=1e-5)
    for a, b in zip(models[1].state_dict().values(), alone.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_its_posterior_scores_any_code_against_any_row_and_broadcasts(digits):
    """log_prob of z [r, 1, d] against a batch of m rows gives [r, m], each entry the density of that pair (what
    mi_bounds evaluates); rsample draws [S, N, d]; the prior samples [n, d] with a finite density."""
    m = ibkit.build_model("hvae", digits.input_dim, 5, latent_dims=(3, 2), hidden=(16,), seed=0)
    x = digits.test[:4]
    with torch.no_grad():
        q = m.posterior(x)
        z = q.rsample((2,))
        assert z.shape == (2, 4, 5) and q.batch_shape == (4,) and q.event_shape == (5,)
        pairs = q.log_prob(z[0].unsqueeze(1))  # [4, 4]
        for i in range(4):
            for j in range(4):
                one = m.posterior(x[j: j + 1]).log_prob(z[0, i: i + 1])
                assert pairs[i, j].item() == pytest.approx(one.item(), abs=1e-4)
        draws = m.prior().sample((7,))
        assert draws.shape == (7, 5) and torch.isfinite(m.prior().log_prob(draws)).all()


def test_free_bits_clip_each_layer_at_its_size(digits):
    m = ibkit.build_model("hvae", digits.input_dim, 6, latent_dims=(4, 2), hidden=(16,), free_bits=0.25, seed=0)
    assert m.rate_groups().tolist() == [4.0, 2.0]
    out = m(digits.train[:64])
    terms = m.kl_terms(*_posterior_and_sample(m, digits.train[:64]))
    assert terms.shape == (64, 2)
    assert out.trained_rate.mean().item() >= 0.25 * 6 - 1e-5  # each layer's mean counts at least lambda d_l


def _posterior_and_sample(m, x):
    q = m.posterior(x)
    return q, q.rsample((1,))


def test_hvae_configs_refuse_bad_layers_and_checkpoints_round_trip(tmp_path, digits, tiny_vae):
    with pytest.raises(ValueError, match=r"latent_dims=\(4, 2\) must sum to latent_dim=5"):
        ibkit.build_model("hvae", 64, 5, latent_dims=(4, 2))
    with pytest.raises(ValueError, match="inference='sideways'"):
        ibkit.build_model("hvae", 64, 6, latent_dims=(4, 2), inference="sideways")
    with pytest.raises(ValueError, match=r"latent_dims\[1\]=0 must be >= 1"):
        ibkit.build_model("hvae", 64, 4, latent_dims=(4, 0))
    one = ibkit.build_model("hvae", 64, 5)
    assert one.latent_dims == (5,) and one.config.layer_hidden == one.config.hidden
    m = ibkit.build_model("hvae", digits.input_dim, 6, latent_dims=(4, 2), hidden=(16,), inference="bottom_up")
    ibkit.save_checkpoint(m, tmp_path / "h.pt")
    back = ibkit.load_checkpoint(tmp_path / "h.pt")
    assert back.config == m.config and back.latent_dims == (4, 2)
    torch.manual_seed(0)
    a = E.elbo(m, digits.test, seed=3)
    assert E.elbo(back, digits.test, seed=3) == pytest.approx(a)
    with pytest.raises(ValueError, match="no per-example variational parameters"):
        E.amortization_gap(m, digits.test[:4])
    with pytest.raises(ValueError, match="per_layer needs a hierarchical model"):
        E.per_layer(tiny_vae(input_dim=digits.input_dim, latent_dim=4, hidden=(8,)), digits.test[:10])
    assert math.isfinite(E.iwae(m, digits.test[:20], 50))
