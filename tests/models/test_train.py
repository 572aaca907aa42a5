"""The trainer: closed-form optimum of the linear VAE, determinism, divergence and bad input."""

import math

import pandas as pd
import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.theory import ppca_max_log_likelihood


def test_linear_vae_reaches_the_ppca_optimum():
    """A linear VAE with a diagonal posterior attains the pPCA maximum likelihood (Lucas et al. 2019): its test
    ELBO is within 1% of L_max on the test data (an upper bound on any pPCA model's test log-likelihood).
    Training takes about a second on two CPU cores (30 epochs of 40 steps)."""
    ds = ibkit.data.load("gaussian", input_dim=8, latent_dim=2, noise=0.5, n_train=5000, n_test=5000, seed=0)
    m = ibkit.build_model("vae", ds.input_dim, 2, hidden=(), likelihood="gaussian")
    ibkit.fit(m, ds.train, epochs=30, lr=1e-2, progress=False)
    l_max = ppca_max_log_likelihood(ds.test, 2)
    elbo = E.elbo(m, ds.test, n_samples=10)
    assert elbo <= l_max + 0.01
    assert elbo == pytest.approx(l_max, rel=0.01)
    # the learned noise variance is the mean discarded eigenvalue: sigma^2 = 0.25
    assert math.exp(2 * m.likelihood.log_scale.item()) == pytest.approx(0.25, rel=0.05)


def test_history_and_determinism(digits):
    runs = []
    for seed in (0, 0, 1):
        m = ibkit.build_model("vae", digits.input_dim, 4, hidden=(32,), beta=2.0, seed=seed)
        runs.append(ibkit.fit(m, digits.train, epochs=3, seed=seed, progress=False))
    h = runs[0]
    assert list(h.columns) == ["epoch", "loss", "rate", "distortion", "seconds", "beta_used", "capacity_used",
                               "trained_rate"]  # what the KL schedule used (the rate and beta here)
    assert list(h["epoch"]) == [1, 2, 3]
    # loss = distortion + beta * rate holds for the epoch means too
    pd.testing.assert_series_equal(h["loss"], h["distortion"] + 2 * h["rate"], check_names=False, rtol=1e-5)
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]
    cols = ["loss", "rate", "distortion"]
    pd.testing.assert_frame_equal(runs[0][cols], runs[1][cols])
    assert not runs[0][cols].equals(runs[2][cols])


def test_fit_leaves_global_rng_alone(digits):
    torch.manual_seed(7)
    state = torch.get_rng_state()
    ibkit.fit(ibkit.build_model("vae", digits.input_dim, 2, hidden=(8,)), digits.train, epochs=1, progress=False)
    assert torch.equal(state, torch.get_rng_state())


def test_divergence_names_epoch_and_last_finite_loss(digits):
    m = ibkit.build_model("vae", digits.input_dim, 2, hidden=(8,))
    calls = {"n": 0}
    regularizer = m.regularizer

    def explode_in_epoch_3(z, rate):
        calls["n"] += 1
        steps_per_epoch = math.ceil(len(digits.train) / 128)
        bad = calls["n"] > 2 * steps_per_epoch
        return regularizer(z, rate) + (math.nan if bad else 0.0)

    m.regularizer = explode_in_epoch_3
    with pytest.raises(ibkit.DivergenceError, match="epoch 3; last finite epoch loss: [0-9.]+") as info:
        ibkit.fit(m, digits.train, epochs=5, progress=False)
    assert info.value.epoch == 3
    assert list(info.value.history["epoch"]) == [1, 2]  # what was computed before the fault is kept


def test_fit_refuses_bad_input(digits):
    m = ibkit.build_model("vae", digits.input_dim, 2, hidden=(8,))
    with pytest.raises(ValueError, match="epochs=0 must be >= 1"):
        ibkit.fit(m, digits.train, epochs=0)
    with pytest.raises(ValueError, match="lr=0.0 must be > 0"):
        ibkit.fit(m, digits.train, lr=0.0)
    with pytest.raises(ValueError, match="input_dim=64"):
        ibkit.fit(m, torch.rand(10, 63))
    with pytest.raises(ValueError, match="NaN"):
        ibkit.fit(m, torch.full((10, 64), math.nan))
    with pytest.raises(ValueError, match="bernoulli"):
        ibkit.fit(m, 3 * torch.rand(10, 64))
    with pytest.raises(ValueError, match="device='tpu'"):
        ibkit.fit(m, digits.train, device="tpu")


def test_epoch_means_weight_every_example_once(digits):
    """With a learning rate too small to move the weights, the epoch's mean loss is the loss of the model on the
    whole training set, even though 1438 rows do not divide into batches of 100 (the last batch has 38)."""
    ae = ibkit.build_model("ae", digits.input_dim, 3, hidden=(16,))
    expected = ae(digits.train).loss.mean().item()
    h = ibkit.fit(ae, digits.train, epochs=1, batch_size=100, lr=1e-30, progress=False)
    assert h["loss"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_integer_sizes_must_be_integers(digits):
    m = ibkit.build_model("vae", digits.input_dim, 2, hidden=(8,))
    with pytest.raises(ValueError, match="epochs=2.0 must be an integer, e.g. 2"):
        ibkit.fit(m, digits.train, epochs=2.0)
    with pytest.raises(ValueError, match="latent_dim=2.0 must be an integer"):
        ibkit.build_model("vae", digits.input_dim, 2.0)


def test_monitored_data_give_learning_curves_without_moving_training(digits):
    """``x_monitor``: the held-out means after every epoch, from noise of their own: the training history is the
    same with and without it, the last epoch's monitor_loss is the trained model's loss there (deterministic
    code: exact), and fit_many's curves are fit's."""
    from ibkit.batched import fit_many

    x, held_out = digits.train[:512], digits.test[:300]
    plain = ibkit.build_model("vae", 64, 4, hidden=(16,), seed=1)
    watched = ibkit.build_model("vae", 64, 4, hidden=(16,), seed=1)
    h0 = ibkit.fit(plain, x, epochs=3, seed=2, progress=False)
    h1 = ibkit.fit(watched, x, epochs=3, seed=2, progress=False, x_monitor=held_out)
    pd.testing.assert_frame_equal(h0.drop(columns="seconds"), h1[h0.columns].drop(columns="seconds"))
    assert list(h1.columns[-3:]) == ["monitor_loss", "monitor_rate", "monitor_distortion"]
    assert (h1["monitor_loss"] - h1["monitor_rate"] - h1["monitor_distortion"]).abs().max() < 1e-3  # beta = 1
    assert h1["monitor_loss"].iloc[-1] == pytest.approx(-E.elbo(watched, held_out, n_samples=200), rel=0.01)
    ae = ibkit.build_model("ae", 64, 4, hidden=(16,), seed=1)
    h = ibkit.fit(ae, x, epochs=2, progress=False, x_monitor=held_out)
    with torch.no_grad():
        assert h["monitor_loss"].iloc[-1] == pytest.approx(ae(held_out).loss.mean().item(), rel=1e-5)
    many = [ibkit.build_model("vae", 64, 4, hidden=(16,), seed=1, beta=b) for b in (1.0, 2.0)]
    hs = fit_many(many, x, epochs=3, seed=2, progress=False, x_monitor=held_out)
    pd.testing.assert_series_equal(hs[0]["monitor_loss"], h1["monitor_loss"], rtol=1e-4)
    assert (hs[1]["monitor_loss"] != hs[0]["monitor_loss"]).all()
    with pytest.raises(ValueError, match="x_monitor"):
        ibkit.fit(ae, x, epochs=1, progress=False, x_monitor=held_out[:, :10])
