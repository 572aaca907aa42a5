"""fit_many: K models of one architecture trained as one stacked model follow their own fit runs."""

import copy

import pytest
import torch

import ibkit
from ibkit.batched import StackedLinear, stack_models
from ibkit.models.generating import generating_vae

DS = ibkit.data.load("digits")
X = DS.train[:600]

FAMILIES = [
    ("vae", [dict(beta=b) for b in (0.1, 1.0, 4.0)], {}),
    ("vae", [dict(beta=b) for b in (0.5, 2.0, 1.0)], dict(posterior="full")),
    ("vae", [dict(beta=b) for b in (0.5, 1.0, 2.0)], dict(posterior="iaf")),
    ("noisy_ae", [dict(noise=s) for s in (0.1, 0.5, 1.0)], {}),
    ("sparse_ae", [dict(sparsity=s) for s in (0.0, 0.01, 0.1)], {}),
    ("ae", [{}, {}, {}], {}),
]


def _models(kind, knobs, common, input_dim=DS.input_dim):
    return [ibkit.build_model(kind, input_dim, 4, hidden=(32, 16), seed=i, **common, **knob)
            for i, knob in enumerate(knobs)]


@pytest.mark.parametrize("kind,knobs,common", FAMILIES, ids=lambda v: str(v) if isinstance(v, str) else None)
@pytest.mark.parametrize("seeds", [[0, 1, 2], 7], ids=["own-seeds", "one-seed"])
def test_fit_many_follows_each_models_own_fit(kind, knobs, common, seeds):
    """Same seed, same minibatch order and channel noise: the histories agree to float32 rounding, and so do the
    trained models' losses on fixed noise (Adam divides by sqrt(v), so a weight whose gradients are all tiny
    can drift by ~1e-3 while every output agrees)."""
    models = _models(kind, knobs, common)
    alone = copy.deepcopy(models)
    histories = ibkit.fit_many(models, X, epochs=3, batch_size=64, seed=seeds, progress=False)
    own = seeds if isinstance(seeds, list) else [seeds] * 3
    for m, a, h, s in zip(models, alone, histories, own, strict=True):
        expected = ibkit.fit(a, X, epochs=3, batch_size=64, seed=s, progress=False)
        for column in ("loss", "rate", "distortion"):
            torch.testing.assert_close(torch.tensor(h[column].values), torch.tensor(expected[column].values),
                                       rtol=2e-5, atol=1e-5, equal_nan=True)
        eps = torch.randn(1, 200, 4, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(m(DS.test[:200], eps).loss, a(DS.test[:200], eps).loss, rtol=1e-4, atol=1e-4)
        for (name, p), q in zip(m.named_parameters(), a.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=3e-3, msg=name)
    assert len({h["loss"].iloc[-1] for h in histories}) == 3  # the knobs reached each model


def test_fit_many_on_a_frozen_generative_model(gaussian_source):
    """trainable='encoder' stacks the frozen decoder too and leaves it as it was."""
    source = gaussian_source(n_train=600, n_test=10)
    models = [generating_vae(source, f, hidden=(8,), seed=s) for f, s in (("full", 0), ("full", 1))]
    alone = copy.deepcopy(models)
    ibkit.fit_many(models, source.train, epochs=2, lr=1e-2, seed=[0, 1], progress=False, trainable="encoder")
    for m, a, s in zip(models, alone, (0, 1), strict=True):
        ibkit.fit(a, source.train, epochs=2, lr=1e-2, seed=s, progress=False, trainable="encoder")
        torch.testing.assert_close(m.decoder[0].weight, source.W)
        for p, q in zip(m.parameters(), a.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-4)


def test_groups_larger_than_max_models_train_in_chunks_with_the_same_result():
    models = _models("vae", [dict(beta=b) for b in (0.1, 0.5, 1.0, 2.0, 4.0)], {})
    chunked = copy.deepcopy(models)
    whole = ibkit.fit_many(models, X, epochs=2, seed=3, progress=False)
    parts = ibkit.fit_many(chunked, X, epochs=2, seed=3, progress=False, max_models=2)
    for a, b in zip(whole, parts, strict=True):
        torch.testing.assert_close(torch.tensor(a["loss"].values), torch.tensor(b["loss"].values), rtol=1e-5, atol=0)


def test_a_diverging_model_does_not_disturb_the_others():
    models = _models("vae", [dict(beta=b) for b in (0.1, 1.0, 4.0)], {})
    with torch.no_grad():
        models[1].encoder[0].weight.fill_(float("nan"))
    alone = copy.deepcopy(models[2])
    out = ibkit.fit_many(models, X, epochs=2, seed=5, progress=False)
    assert isinstance(out[1], ibkit.DivergenceError) and out[1].epoch == 1 and len(out[1].history) == 0
    expected = ibkit.fit(alone, X, epochs=2, seed=5, progress=False)
    torch.testing.assert_close(torch.tensor(out[2]["loss"].values), torch.tensor(expected["loss"].values),
                               rtol=2e-5, atol=0)


def test_stacked_linear_is_each_layer():
    layers = [torch.nn.Linear(5, 3) for _ in range(4)]
    stacked = StackedLinear(layers)
    x = torch.randn(4, 7, 5)
    out = stacked(x)
    shared = stacked(x[0])
    samples = stacked(torch.randn(2, 4, 7, 5))
    for k, layer in enumerate(layers):
        torch.testing.assert_close(out[k], layer(x[k]))
        torch.testing.assert_close(shared[k], layer(x[0]))
    assert samples.shape == (2, 4, 7, 3)


def test_knobs_are_stacked_only_where_they_differ():
    same = stack_models(_models("vae", [dict(beta=1.0), dict(beta=1.0)], {}))
    differ = stack_models(_models("noisy_ae", [dict(noise=0.1), dict(noise=0.5)], {}))
    assert same.beta.shape == () and differ.noise.shape == (2, 1)
    assert differ.encoder[0].weight.shape == (2, DS.input_dim, 32)


def test_fit_many_refuses_what_it_cannot_batch(tiny_vae):
    a = tiny_vae(input_dim=DS.input_dim, latent_dim=4, hidden=(32,))
    with pytest.raises(ValueError, match=r"model 1 differs from model 0 in hidden: \(32,\) vs \(16,\)"):
        ibkit.fit_many([a, tiny_vae(input_dim=DS.input_dim, latent_dim=4, hidden=(16,))], X)
    with pytest.raises(ValueError, match="model 1 differs from model 0 in class: VAE vs DeterministicAE"):
        ibkit.fit_many([a, ibkit.build_model("ae", DS.input_dim, 4, hidden=(32,))], X)
    with pytest.raises(ValueError, match="seed has 3 values for 1 models"):
        ibkit.fit_many([a], X, seed=[0, 1, 2])
    with pytest.raises(ValueError, match="models is empty"):
        ibkit.fit_many([], X)
    with pytest.raises(ValueError, match="max_models=0 must be >= 1"):
        ibkit.fit_many([a], X, max_models=0)


def test_memory_budget_sets_how_many_train_at_once(tiny_vae):
    from ibkit.batched import models_per_batch

    m = tiny_vae(input_dim=DS.input_dim, latent_dim=8, hidden=(128, 128))
    cpu = torch.device("cpu")
    one = 4 * (4 * sum(p.numel() for p in m.parameters()) + 4 * 128 * (128 + 128 + 16 + 128 + 128 + 64))
    assert models_per_batch(m, 128, cpu, budget=int(2.5 * one)) == 2
    assert models_per_batch(m, 128, cpu, budget=1) == 1
    assert models_per_batch(m, 128, cpu) >= 16  # a digits sweep trains as one batch on the default budget
