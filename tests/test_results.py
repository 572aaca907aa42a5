"""The results store: provenance of a run folder, run records, resume after a kill, stored models."""

import subprocess

import pandas as pd
import pytest

import ibkit
from ibkit.results import git_state


def test_git_state_ignores_the_run_folder_and_stored_results_but_not_the_source(tmp_path):
    repo = tmp_path / "repo"
    (repo / "out" / "run").mkdir(parents=True)
    (repo / "results" / "other").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                       capture_output=True)

    git("init", "-q")
    git("add", "code.py")
    git("commit", "-qm", "init")
    (repo / "out" / "run" / "runs.csv").write_text("a\n")  # what the run itself writes
    (repo / "results" / "other" / "runs.csv").write_text("b\n")  # another run's outputs: data, not code
    state = git_state(exclude=repo / "out" / "run", cwd=repo)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    assert git_state(cwd=repo)["dirty"] is True  # without the exclusion the run's new file counts
    (repo / "code.py").write_text("x = 2\n")
    assert git_state(exclude=repo / "out" / "run", cwd=repo)["dirty"] is True
    assert git_state(cwd=tmp_path) == {"commit": None, "dirty": None}  # not a git tree


def test_run_grid_refuses_a_built_model_that_is_not_its_spec():
    """A ``build`` hook that drops a knob (here beta) would store a run under the wrong name: it fails loudly."""
    import ibkit
    from ibkit.sweep import run_grid

    ds = ibkit.data.load("digits")
    specs = [dict(kind="vae", latent_dim=2, hidden=(8,), beta=0.5, seed=0)]
    rows = run_grid("t", ds, specs, lambda m, s: {"test": {}}, epochs=1,
                    build=lambda spec: ibkit.build_model("vae", ds.input_dim, 2, hidden=(8,)))
    assert (rows["status"] == "failed").all()
    assert "the built model differs from its spec: beta=1.0 (spec: 0.5)" in rows["error"].iloc[0]


def test_sigkill_mid_sweep_loses_only_runs_in_flight_and_the_rerun_completes_the_grid(tmp_path):
    """A sweep killed (SIGKILL) after its first records landed: the rerun of the same command skips what
    finished (its records untouched), runs the rest once, and ends with each run once in the table."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    betas = "0.1,0.2,0.5,1,2,4"
    command = [sys.executable, "-m", "ibkit.cli", "run", "rate-distortion", "--quick", "--out", str(out),
               "--set", f"betas={betas}", "--set", "epochs=40", "--set", "hidden=32", "--set", "iwae_k=5",
               "--set", "batched=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    records = out / "records"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(records.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    assert 2 <= len(landed) < 9, "the sweep should be killed part-way (9 runs in the grid)"
    assert subprocess.run(command, capture_output=True, env=env).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    assert all(after[name] == mtime for name, mtime in landed.items())  # finished runs were not run again
    table = pd.read_csv(out / "runs.csv")
    assert len(after) == 9 and table.groupby(["run_id", "split"]).size().eq(1).all()
    assert table["run_id"].nunique() == 9 and (table["status"] == "ok").all()


def test_load_model_gives_a_runs_trained_model(tmp_path):
    from ibkit.cli import main
    from ibkit.results import load_model

    out = tmp_path / "models"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), "--set", "epochs=2", "--set", "betas=1",
                 "--set", "hidden=16", "--set", "iwae_k=5"]) == 0
    table = ibkit.results.load(out).set_index(["run_id", "split"])
    model = load_model(out, "vae-d8-beta1.0-seed0")
    import ibkit.estimators as E

    ds = ibkit.data.load("digits")
    assert E.distortion(model, ds.test) == pytest.approx(table.loc[("vae-d8-beta1.0-seed0", "test"), "distortion"])
    with pytest.raises(ValueError, match="run_id='nope' has no checkpoint in .*; runs with one: ae-d8-seed0"):
        load_model(out, "nope")
