"""The results store: provenance of a run folder, run records, stored models (resuming: tests/reliability)."""

import subprocess

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


def test_a_resumed_sweep_removes_the_temp_files_a_killed_writer_left(tmp_path):
    """SIGKILL mid-write leaves '.NAME.*.tmp' beside the (whole) file it was to replace; the next sweep in the
    folder deletes them, and nothing else."""
    from ibkit.results import remove_stale_temps

    for sub in ("records", "checkpoints", "figures"):
        (tmp_path / sub).mkdir()
    stale = [tmp_path / ".runs.csv.x1y2.tmp", tmp_path / "records" / ".vae-d2-seed0.json.ab.tmp",
             tmp_path / "checkpoints" / ".vae-d2-seed0.pt.cd.tmp", tmp_path / "figures" / ".rd.pdf.tmp.pdf"]
    kept = [tmp_path / "runs.csv", tmp_path / "records" / "vae-d2-seed0.json", tmp_path / "figures" / "rd.pdf"]
    for path in stale + kept:
        path.write_text("x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_take_the_umasks_mode_not_the_temp_files(tmp_path, umask):
    """runs.csv, records, manifests, findings and checkpoints are shared with colleagues: the atomic write's temp
    file is 0600, the file it becomes is what any new file gets (0666 less the umask)."""
    import os

    from ibkit.results import atomic_write_text
    from ibkit.sweep import run_grid

    old = os.umask(umask)
    try:
        ds = ibkit.data.load("digits")
        atomic_write_text(tmp_path / "findings.md", "# Findings\n")
        run_grid("t", ds, [dict(kind="vae", latent_dim=2, hidden=(8,), seed=0)],
                 lambda m, s: {"test": {"rate": 1.0}}, epochs=1, out_dir=tmp_path / "run")
    finally:
        os.umask(old)
    written = [tmp_path / "findings.md", *(p for p in (tmp_path / "run").rglob("*") if p.is_file())]
    assert {p.name for p in written} >= {"findings.md", "runs.csv", "vae-d2-seed0.json",
                                         "vae-d2-seed0.pt"}
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o666 & ~umask)}


def test_every_committed_manifest_names_its_data_and_split():
    """Each committed results/*/manifest.json has a ``data`` record (``ibkit.results.data_record``) with the split;
    MNIST (IDX files) names each file with its SHA-256, checked against the file where that folder is at hand. A
    record added after its run says so (``added_afterwards``: date, commit, how)."""
    import hashlib
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(["git", "ls-files", "--", "results/*/manifest.json"], cwd=root, capture_output=True,
                            text=True)
    paths = [root / p for p in listed.stdout.split()] if listed.returncode == 0 else []
    if not paths:
        pytest.skip("not a git checkout holding results/")
    for path in paths:
        data = json.loads(path.read_text()).get("data")
        assert isinstance(data, dict) and data.get("name") and data.get("split"), f"{path}: no data record"
        if data["name"] == "mnist":
            assert data["files"] and all(re.fullmatch("[0-9a-f]{64}", h) for h in data["files"].values()), path
            folder = Path(data["folder"])
            for name, sha in data["files"].items():
                if (folder / name).is_file():
                    assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, f"{path}: {name}"
        if "added_afterwards" in data:
            note = data["added_afterwards"]
            assert re.fullmatch("[0-9a-f]{40}", note["commit"]) and note["date"] and "not recorded at run time" in \
                note["how"], path


def test_a_stored_negative_upper_bound_is_read_as_the_rate(tmp_path):
    """A table written before the tightest-upper rule kept min(LOO, rate) even below 0: load takes the rate instead,
    its standard error from the stored 95% interval, and says why; a valid bound is left as stored."""
    import math

    import pandas as pd

    rows = pd.DataFrame(dict(run_id=["a", "b"], kind="vae", split="test", status="ok", rate=[4e-5, 3.0],
                             rate_ex_lo=[3.9e-5, 2.9], rate_ex_hi=[4.1e-5, 3.1], loo=[-2e-5, 2.5],
                             mi_upper=[-2e-5, 2.5], mi_upper_se=[1e-3, 0.1], mi_upper_note=math.nan))
    rows.to_csv(tmp_path / "runs.csv", index=False)
    t = ibkit.results.load(tmp_path).set_index("run_id")
    assert t.loc["a", "mi_upper"] == 4e-5 and t.loc["a", "mi_upper_se"] == pytest.approx(0.2e-5 / 3.92)
    assert t.loc["a", "mi_upper_note"].startswith("rate: the leave-one-out estimate -2e-05 is below 0")
    assert t.loc["b", "mi_upper"] == 2.5 and t.loc["b", "mi_upper_se"] == 0.1
