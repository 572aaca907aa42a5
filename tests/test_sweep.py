"""run_grid: batched groups give the table one-at-a-time training gives; each run is stored under the id of its
spec, and a model built otherwise fails loudly."""

import pandas as pd
import pytest

import ibkit
from ibkit import estimators as E
from ibkit.config import RunSpec, TrainingConfig
from ibkit.sweep import _groups, run_grid

DS = ibkit.data.load("digits")
SPECS = ([RunSpec("vae", dict(latent_dim=3, hidden=(16,), beta=b), s) for s in (0, 1) for b in (0.5, 2.0)]
         + [RunSpec("sparse_ae", dict(latent_dim=3, hidden=(16,), sparsity=0.01)),
            RunSpec("ae", dict(latent_dim=3, hidden=(16,)))])


def evaluate(model, spec):
    x = DS.test
    return {"test": dict(distortion=E.distortion(model, x), rate=E.rate(model, x) if spec.kind == "vae" else None)}


def epochs(n: int, **settings) -> TrainingConfig:
    return TrainingConfig(epochs=n, **settings)


def test_batched_grid_equals_one_at_a_time(tmp_path):
    batched = run_grid("t", DS, SPECS, evaluate, epochs(3), out_dir=tmp_path / "b")
    alone = run_grid("t", DS, SPECS, evaluate, epochs(3, batched=False), out_dir=tmp_path / "a")
    assert (batched["status"] == "ok").all() and batched["run_id"].tolist() == alone["run_id"].tolist()
    for column in ("distortion", "rate"):
        pd.testing.assert_series_equal(batched[column], alone[column], rtol=1e-4)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == sorted(
        f"{r}.pt" for r in alone["run_id"])


def test_groups_are_architectures_split_to_fit():
    groups = _groups(SPECS, TrainingConfig(device="cpu"), DS, None)
    assert [len(g) for g in groups] == [4, 1, 1]  # the four VAEs (two betas, two seeds) train together
    assert [len(g) for g in _groups(SPECS, TrainingConfig(batched=False), DS, None)] == [1] * 6


def test_several_workers_get_near_equal_groups_largest_first():
    """With two workers no architecture's whole batch is left to run alone at the end: the 12 VAEs (one
    architecture) come in parts of at most 14 / 8 -> 2 runs, the larger network's parts first."""
    wide = [RunSpec("vae", dict(latent_dim=3, hidden=(64,), beta=b), s) for s in (0, 1) for b in (0.5, 2.0)]
    specs = [RunSpec("vae", dict(latent_dim=3, hidden=(16,), beta=b), s) for s in (0, 1, 2) for b in (0.5, 1, 2, 4)]
    cpu = TrainingConfig(device="cpu")
    groups = _groups(specs + wide[:2], cpu, DS, None, workers=2)
    assert [len(g) for g in groups] == [2] + [2] * 6
    assert groups[0] == wide[:2]
    assert sorted(run.get("beta") * 10 + run.seed for g in groups[1:] for run in g) == sorted(
        run.get("beta") * 10 + run.seed for run in specs)
    aggressive = [RunSpec("vae", dict(latent_dim=3, hidden=(16,), beta=1.0, aggressive=True), s) for s in (0, 1)]
    groups = _groups(specs + aggressive, cpu, DS, None, workers=2)
    assert groups[:2] == [[aggressive[0]], [aggressive[1]]]  # trained one at a time, so the longest: first, apart


def test_a_diverging_run_in_a_batch_is_its_own_row(tmp_path):
    def build(spec):
        m = spec.build(DS)
        if spec.get("beta") == 2.0 and spec.seed == 1:
            m.encoder[0].weight.data.fill_(float("nan"))
        return m

    rows = run_grid("t", DS, SPECS[:4], evaluate, epochs(2), build=build).set_index("run_id")
    assert rows.loc["vae-d3-beta2.0-seed1", "status"].tolist() == ["diverged", "diverged"]
    assert "training diverged" in rows.loc["vae-d3-beta2.0-seed1", "error"].iloc[0]
    assert (rows.drop("vae-d3-beta2.0-seed1")["status"] == "ok").all()


@pytest.mark.parametrize("value", ["false", "no"])
def test_batched_is_a_config_switch(value):
    from experiments import rate_distortion
    from ibkit.config import parse_overrides

    assert parse_overrides(rate_distortion.Config, [f"batched={value}"]) == {"batched": False}


def test_a_sweeps_tanh_bounded_noisy_ae_does_not_collapse():
    """run_grid starts each decoder at the data's marginal (start_at_marginal): a tanh-bounded noisy AE then uses
    its code from the first epochs. Built and fit plainly, the same model's code saturates at one corner of the
    box in its first epoch and stays dead (0 active units after 10 epochs on digits)."""
    ds = ibkit.data.load("digits")
    spec = RunSpec("noisy_ae", dict(latent_dim=8, hidden=(128, 128), noise=0.1))
    rows = run_grid("t", ds, [spec], lambda m, s: {"test": {"active_units": E.active_units(m, ds.test),
                                                           "distortion": E.distortion(m, ds.test)}}, epochs(10))
    plain = ibkit.build_model("noisy_ae", input_dim=ds.input_dim, **spec.config)
    ibkit.fit(plain, ds.train, epochs=10, progress=False)
    assert E.active_units(plain, ds.test) == 0 and E.distortion(plain, ds.test) > 24
    assert rows["active_units"].iloc[0] == 8 and rows["distortion"].iloc[0] < 17


def test_log_tensorboard_writes_each_runs_epochs_under_the_run_folder(tmp_path):
    """Two VAEs trained as one batch and a sparse AE alone: each run's event folder, OUT/tensorboard/RUN_ID, holds
    its own per-epoch training loss (the history.csv rows of that run)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    specs = [*SPECS[:2], SPECS[4]]
    out = tmp_path / "run"
    rows = run_grid("t", DS, specs, evaluate, epochs(2, curves=True, log="tensorboard"), out_dir=out)
    assert (rows["status"] == "ok").all()
    history = pd.read_csv(out / "history.csv")
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == sorted(rows["run_id"].unique())
    for run, curve in history.groupby("run_id"):
        events = EventAccumulator(str(out / "tensorboard" / run))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("loss")] == [
            (e, pytest.approx(v, rel=1e-6)) for e, v in zip(curve["epoch"], curve["loss"], strict=True)]
        assert [e.value for e in events.Scalars("monitor_loss")] == pytest.approx(curve["monitor_loss"].tolist(),
                                                                                   rel=1e-6)


def test_log_is_checked_before_anything_trains(tmp_path):
    with pytest.raises(ValueError, match="log='wandb' is not known; choose one of: none, tensorboard"):
        run_grid("t", DS, SPECS[:1], evaluate, epochs(1, log="wandb"), out_dir=tmp_path)
    with pytest.raises(ValueError, match="log='tensorboard' writes event files into the run folder: give out_dir"):
        run_grid("t", DS, SPECS[:1], evaluate, epochs(1, log="tensorboard"))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["rate_distortion", "information_flow", "layer_information", "posterior_families"])
def test_every_experiment_has_log_and_hands_it_to_the_sweep(name, monkeypatch):
    import importlib

    exp = importlib.import_module(f"experiments.{name}")
    assert exp.Config().log == "none"
    with pytest.raises(ValueError, match="log='wandb' is not known"):
        exp.Config(log="wandb")
    passed = []
    monkeypatch.setattr(exp, "run_grid", lambda *args, **options: passed.append(args[4].log) or pd.DataFrame())
    exp.run(exp.Config(log="tensorboard"))
    assert passed and set(passed) == {"tensorboard"}


def test_a_sweep_logs_its_training_and_evaluation_before_its_first_run_finishes(monkeypatch, caplog):
    """A long sweep is never silent: the group's training epochs and its evaluations reach the log (every INTERVAL
    seconds; patched to 0 here) before the first run's summary, and the sweep's own line counts the runs."""
    import logging

    from ibkit import progress

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="ibkit")
    run_grid("t", DS, SPECS[:2], evaluate, epochs(2))
    lines = [r.getMessage() for r in caplog.records if r.name == "ibkit.progress"]
    first_run = next(i for i, line in enumerate(lines) if line.startswith(("t: 1 of 2", "t: 2 of 2")))
    assert any(line.startswith("fit_many (2 models): 1 of 2 epochs") for line in lines[:first_run])
    assert any(line.startswith("evaluating: 1 of 2 runs") for line in lines[:first_run])
    assert any(line.startswith("t: 2 of 2 runs (100.0%)") for line in lines)


def test_run_grid_refuses_a_built_model_that_is_not_its_spec(tiny_vae):
    """A ``build`` hook that drops a knob (here beta) would store a run under the wrong name: it fails loudly."""
    specs = [RunSpec("vae", dict(latent_dim=2, hidden=(8,), beta=0.5))]
    rows = run_grid("t", DS, specs, lambda m, s: {"test": {}}, TrainingConfig(epochs=1),
                    build=lambda spec: tiny_vae(input_dim=DS.input_dim, latent_dim=2, hidden=(8,)))
    assert (rows["status"] == "failed").all()
    assert "the built model differs from its spec: beta=1.0 (spec: 0.5)" in rows["error"].iloc[0]
