"""Training hooks: fit's callback(epoch, metrics) and fit_many's callback(epoch, metrics, index) see every epoch's
history row; TensorBoardCallback writes them as real scalars; training logs its progress."""

import logging

import pandas as pd
import pytest

import ibkit
import ibkit.progress as P
from ibkit.train import TensorBoardCallback


def small_vae(beta: float = 1.0, seed: int = 0):
    return ibkit.build_model("vae", 64, 2, hidden=(16,), beta=beta, seed=seed)


def test_fit_calls_back_after_every_epoch_with_its_history_row(digits):
    seen = []
    history = ibkit.fit(small_vae(), digits.train[:300], epochs=3, progress=False, x_monitor=digits.test[:100],
                        callbacks=[lambda epoch, metrics: seen.append((epoch, metrics))])
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    pd.testing.assert_frame_equal(pd.DataFrame([m for _, m in seen]), history)
    assert {"monitor_loss", "rate", "distortion"} <= set(seen[0][1])
    seen[0][1]["loss"] = 0.0  # a callback holds a copy: the history is its own
    assert history["loss"].iloc[0] != 0.0


def test_fit_many_calls_back_once_per_model_and_epoch_with_its_index(digits):
    models = [small_vae(beta) for beta in (0.5, 1.0, 2.0)]
    seen = []
    histories = ibkit.fit_many(models, digits.train[:300], epochs=2, progress=False, max_models=2,  # two groups
                               callbacks=[lambda epoch, metrics, index: seen.append((index, epoch, metrics))])
    assert sorted((i, e) for i, e, _ in seen) == [(i, e) for i in range(3) for e in (1, 2)]
    for i, history in enumerate(histories):
        rows = [m for j, _, m in seen if j == i]
        pd.testing.assert_frame_equal(pd.DataFrame(rows), history)
    assert histories[0]["loss"].iloc[-1] != histories[2]["loss"].iloc[-1]  # each index its own model's numbers


def test_a_diverging_model_is_not_called_back_for_its_bad_epoch(digits):
    x = digits.train[:200]
    seen = []
    models = [small_vae(1.0), small_vae(1.0, seed=1)]
    out = ibkit.fit_many(models, x, epochs=2, lr=1e9, progress=False,
                         callbacks=[lambda epoch, metrics, index: seen.append((index, epoch))])
    diverged = [i for i, o in enumerate(out) if isinstance(o, ibkit.DivergenceError)]
    assert diverged  # lr 1e9 sends the loss to NaN
    for i in diverged:
        assert [e for j, e in seen if j == i] == list(range(1, out[i].epoch))


def test_callbacks_must_be_a_list_of_callables(digits):
    with pytest.raises(ValueError, match="callbacks=<built-in function print> must be a list of callables"):
        ibkit.fit(small_vae(), digits.train[:50], epochs=1, callbacks=print)
    with pytest.raises(ValueError, match=r"callbacks\[1\]=3 is not callable"):
        ibkit.fit_many([small_vae()], digits.train[:50], epochs=1, callbacks=[print, 3])


def test_training_logs_its_epochs(digits, monkeypatch, caplog):
    monkeypatch.setattr(P, "INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="ibkit")
    ibkit.fit(small_vae(), digits.train[:100], epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fit: 2 of 2 epochs")]
    assert lines and "(100.0%)" in lines[-1] and "; loss " in lines[-1]
    caplog.clear()
    ibkit.fit(small_vae(), digits.train[:100], epochs=2, progress=False)  # progress=False: silent
    assert not [r for r in caplog.records if r.name == "ibkit.progress"]


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the TensorBoard event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_callback_writes_every_epochs_metrics_as_scalars(digits, tmp_path):
    pytest.importorskip("tensorboard")
    with TensorBoardCallback(tmp_path / "run") as tb:
        history = ibkit.fit(small_vae(), digits.train[:200], epochs=3, progress=False, callbacks=[tb])
    read = scalars(tmp_path / "run")
    assert {"loss", "rate", "distortion", "seconds", "beta_used"} <= set(read) and "epoch" not in read
    for name in ("loss", "rate", "distortion"):
        assert [s for s, _ in read[name]] == [1, 2, 3]
        assert [v for _, v in read[name]] == pytest.approx(history[name].tolist(), rel=1e-6)  # float32 on disk


def test_tensorboard_callback_keeps_fit_many_models_apart(digits, tmp_path):
    pytest.importorskip("tensorboard")
    folders = [tmp_path / "a", tmp_path / "b"]
    with TensorBoardCallback(folders) as tb:
        histories = ibkit.fit_many([small_vae(0.5), small_vae(4.0)], digits.train[:200], epochs=2, progress=False,
                                   callbacks=[tb])
    for folder, history in zip(folders, histories, strict=True):
        assert [v for _, v in scalars(folder)["rate"]] == pytest.approx(history["rate"].tolist(), rel=1e-6)
    with TensorBoardCallback(folders[:1]) as tb, pytest.raises(ValueError, match="has 1 log folders; got the "
                                                                                 "metrics of model index=1"):
        tb(1, {"loss": 1.0}, 1)
