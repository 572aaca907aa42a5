"""ibkit.train: the trainer (closed-form optimum of the linear VAE, determinism, divergence and bad input) and its
hooks (fit's callback(epoch, metrics) and fit_many's callback(epoch, metrics, index) see every epoch's history row;
TensorBoardCallback writes them as real scalars; training logs its progress)."""

import logging
import math

import pandas as pd
import pytest
import torch

import ibkit
import ibkit.progress as P
from ibkit import estimators as E
from ibkit.theory import ppca_max_log_likelihood
from ibkit.train import TensorBoardCallback


def test_linear_vae_reaches_the_ppca_optimum(gaussian_source, tiny_vae):
    """A linear VAE with a diagonal posterior attains the pPCA maximum likelihood (Lucas et al. 2019): its test
    ELBO is within 1% of L_max on the test data (an upper bound on any pPCA model's test log-likelihood).
    Training takes about a second on two CPU cores (30 epochs of 40 steps)."""
    ds = gaussian_source(n_train=5000, n_test=5000)  # D=8, k=2, sigma=0.5, seed 0
    m = tiny_vae(input_dim=ds.input_dim, latent_dim=2, hidden=(), likelihood="gaussian")
    ibkit.fit(m, ds.train, epochs=30, lr=1e-2, progress=False)
    l_max = ppca_max_log_likelihood(ds.test, 2)
    elbo = E.elbo(m, ds.test, n_samples=10)
    assert elbo <= l_max + 0.01
    assert elbo == pytest.approx(l_max, rel=0.01)
    # the learned noise variance is the mean discarded eigenvalue: sigma^2 = 0.25
    assert math.exp(2 * m.likelihood.log_scale.item()) == pytest.approx(0.25, rel=0.05)


def test_history_and_determinism(digits, tiny_vae):
    runs = []
    for seed in (0, 0, 1):
        m = tiny_vae(input_dim=digits.input_dim, latent_dim=4, hidden=(32,), beta=2.0, seed=seed)
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


def test_fit_leaves_global_rng_alone(digits, tiny_vae):
    torch.manual_seed(7)
    state = torch.get_rng_state()
    ibkit.fit(tiny_vae(input_dim=digits.input_dim, latent_dim=2, hidden=(8,)), digits.train, epochs=1, progress=False)
    assert torch.equal(state, torch.get_rng_state())


def test_divergence_names_epoch_and_last_finite_loss(digits, tiny_vae):
    m = tiny_vae(input_dim=digits.input_dim, latent_dim=2, hidden=(8,))
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


def test_fit_refuses_bad_input(digits, tiny_vae):
    m = tiny_vae(input_dim=digits.input_dim, latent_dim=2, hidden=(8,))
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


def test_integer_sizes_must_be_integers(digits, tiny_vae):
    m = tiny_vae(input_dim=digits.input_dim, latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="epochs=2.0 must be an integer, e.g. 2"):
        ibkit.fit(m, digits.train, epochs=2.0)
    with pytest.raises(ValueError, match="latent_dim=2.0 must be an integer"):
        tiny_vae(input_dim=digits.input_dim, latent_dim=2.0)


def test_monitored_data_give_learning_curves_without_moving_training(digits, tiny_vae):
    """``x_monitor``: the held-out means after every epoch, from noise of their own: the training history is the
    same with and without it, the last epoch's monitor_loss is the trained model's loss there (deterministic
    code: exact), and fit_many's curves are fit's."""
    from ibkit.batched import fit_many

    x, held_out = digits.train[:512], digits.test[:300]
    plain = tiny_vae(input_dim=64, latent_dim=4, seed=1)
    watched = tiny_vae(input_dim=64, latent_dim=4, seed=1)
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
    many = [tiny_vae(input_dim=64, latent_dim=4, seed=1, beta=b) for b in (1.0, 2.0)]
    hs = fit_many(many, x, epochs=3, seed=2, progress=False, x_monitor=held_out)
    pd.testing.assert_series_equal(hs[0]["monitor_loss"], h1["monitor_loss"], rtol=1e-4)
    assert (hs[1]["monitor_loss"] != hs[0]["monitor_loss"]).all()
    with pytest.raises(ValueError, match="x_monitor"):
        ibkit.fit(ae, x, epochs=1, progress=False, x_monitor=held_out[:, :10])


# ------------------------------------------------------------------------------------------------------------
# training hooks: callbacks, logging, TensorBoard


def test_fit_calls_back_after_every_epoch_with_its_history_row(digits, tiny_vae):
    seen = []
    history = ibkit.fit(tiny_vae(), digits.train[:300], epochs=3, progress=False, x_monitor=digits.test[:100],
                        callbacks=[lambda epoch, metrics: seen.append((epoch, metrics))])
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    pd.testing.assert_frame_equal(pd.DataFrame([m for _, m in seen]), history)
    assert {"monitor_loss", "rate", "distortion"} <= set(seen[0][1])
    seen[0][1]["loss"] = 0.0  # a callback holds a copy: the history is its own
    assert history["loss"].iloc[0] != 0.0


def test_fit_many_calls_back_once_per_model_and_epoch_with_its_index(digits, tiny_vae):
    models = [tiny_vae(beta=beta) for beta in (0.5, 1.0, 2.0)]
    seen = []
    histories = ibkit.fit_many(models, digits.train[:300], epochs=2, progress=False, max_models=2,  # two groups
                               callbacks=[lambda epoch, metrics, index: seen.append((index, epoch, metrics))])
    assert sorted((i, e) for i, e, _ in seen) == [(i, e) for i in range(3) for e in (1, 2)]
    for i, history in enumerate(histories):
        rows = [m for j, _, m in seen if j == i]
        pd.testing.assert_frame_equal(pd.DataFrame(rows), history)
    assert histories[0]["loss"].iloc[-1] != histories[2]["loss"].iloc[-1]  # each index its own model's numbers


def test_a_diverging_model_is_not_called_back_for_its_bad_epoch(digits, tiny_vae):
    x = digits.train[:200]
    seen = []
    models = [tiny_vae(beta=1.0), tiny_vae(beta=1.0, seed=1)]
    out = ibkit.fit_many(models, x, epochs=2, lr=1e9, progress=False,
                         callbacks=[lambda epoch, metrics, index: seen.append((index, epoch))])
    diverged = [i for i, o in enumerate(out) if isinstance(o, ibkit.DivergenceError)]
    assert diverged  # lr 1e9 sends the loss to NaN
    for i in diverged:
        assert [e for j, e in seen if j == i] == list(range(1, out[i].epoch))


def test_callbacks_must_be_a_list_of_callables(digits, tiny_vae):
    with pytest.raises(ValueError, match="callbacks=<built-in function print> must be a list of callables"):
        ibkit.fit(tiny_vae(), digits.train[:50], epochs=1, callbacks=print)
    with pytest.raises(ValueError, match=r"callbacks\[1\]=3 is not callable"):
        ibkit.fit_many([tiny_vae()], digits.train[:50], epochs=1, callbacks=[print, 3])


def test_training_logs_its_epochs(digits, monkeypatch, caplog, tiny_vae):
    monkeypatch.setattr(P, "INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="ibkit")
    ibkit.fit(tiny_vae(), digits.train[:100], epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fit: 2 of 2 epochs")]
    assert lines and "(100.0%)" in lines[-1] and "; loss " in lines[-1]
    caplog.clear()
    ibkit.fit(tiny_vae(), digits.train[:100], epochs=2, progress=False)  # progress=False: silent
    assert not [r for r in caplog.records if r.name == "ibkit.progress"]


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the TensorBoard event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_callback_writes_every_epochs_metrics_as_scalars(digits, tmp_path, tiny_vae):
    pytest.importorskip("tensorboard")
    with TensorBoardCallback(tmp_path / "run") as tb:
        history = ibkit.fit(tiny_vae(), digits.train[:200], epochs=3, progress=False, callbacks=[tb])
    read = scalars(tmp_path / "run")
    assert {"loss", "rate", "distortion", "seconds", "beta_used"} <= set(read) and "epoch" not in read
    for name in ("loss", "rate", "distortion"):
        assert [s for s, _ in read[name]] == [1, 2, 3]
        assert [v for _, v in read[name]] == pytest.approx(history[name].tolist(), rel=1e-6)  # float32 on disk


def test_tensorboard_callback_keeps_fit_many_models_apart(digits, tmp_path, tiny_vae):
    pytest.importorskip("tensorboard")
    folders = [tmp_path / "a", tmp_path / "b"]
    with TensorBoardCallback(folders) as tb:
        histories = ibkit.fit_many([tiny_vae(beta=0.5), tiny_vae(beta=4.0)], digits.train[:200], epochs=2,
                                   progress=False, callbacks=[tb])
    for folder, history in zip(folders, histories, strict=True):
        assert [v for _, v in scalars(folder)["rate"]] == pytest.approx(history["rate"].tolist(), rel=1e-6)
    with TensorBoardCallback(folders[:1]) as tb, pytest.raises(ValueError, match="has 1 log folders; got the "
                                                                                 "metrics of model index=1"):
        tb(1, {"loss": 1.0}, 1)
