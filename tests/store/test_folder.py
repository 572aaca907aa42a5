"""The run folder (``ibkit.store.RunFolder``): run records and the tables assembled from them, stored models, findings,
atomic writes (resuming and faults: tests/reliability)."""

import json
import os
import sys

import pandas as pd
import pytest

import ibkit
from ibkit.store import RECORDS, RUNS, RunFolder


def test_records_assemble_into_the_table_and_its_side_tables(tmp_path):
    """Each finished run's record holds its rows and its side-table rows; ``write_tables`` assembles runs.csv (schema
    columns first) and NAME.csv from them, and a folder copied without its records reads the same from the CSVs."""
    folder = RunFolder(tmp_path)
    assert folder.finished_run_ids() == set() and folder.read_records() is None
    for run_id, status in (("vae-d2-seed0", "ok"), ("vae-d2-seed1", "diverged")):
        rows = [dict(run_id=run_id, kind="vae", split=split, status=status, rate=1.5, latent_dim=2)
                for split in ("train", "test")]
        folder.write_record(run_id, rows, {"probe_curve": pd.DataFrame(dict(run_id=[run_id], sigma=[0.1]))})
    folder.write_tables()
    table = folder.load()
    assert len(table) == 4 and folder.finished_run_ids() == {"vae-d2-seed0"}
    assert list(pd.read_csv(tmp_path / RUNS).columns[:3]) == ["run_id", "kind", "latent_dim"]
    assert list(folder.side_table("probe_curve")["run_id"]) == ["vae-d2-seed0", "vae-d2-seed1"]
    for record in (tmp_path / RECORDS).glob("*.json"):
        record.unlink()
    assert folder.read_records() is None
    pd.testing.assert_frame_equal(folder.load(), table, check_like=True)  # the same table, in the schema's order
    assert list(folder.side_table("probe_curve")["sigma"]) == [0.1, 0.1] and folder.side_table("nothing").empty


def test_a_run_folder_stands_where_a_path_does(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert os.fspath(folder) == str(tmp_path / "run") and folder.path == tmp_path / "run"
    assert folder.checkpoint("vae-d2-seed0") == tmp_path / "run" / "checkpoints" / "vae-d2-seed0.pt"
    assert repr(folder) == f"RunFolder({str(tmp_path / 'run')!r})"
    with pytest.raises(FileNotFoundError, match="no results table at .*; run an experiment into"):
        folder.load()


def test_findings_name_the_command_given_else_this_process(tmp_path, monkeypatch):
    """The command that wrote findings.md is an argument (the command line ``ibkit`` ran, as words or as text);
    without it, this process's command line. A quick run's findings say they are not for citing."""
    folder = RunFolder(tmp_path)
    folder.write_findings("# Findings\nbody\n", ["ibkit", "plot", "results/my run"])
    assert (tmp_path / "findings.md").read_text() == \
        "# Findings\n\nWritten by `ibkit plot 'results/my run'` from the stored tables.\nbody\n"
    folder.write_findings("# Findings\nbody\n", "ibkit plot DIR")
    assert "Written by `ibkit plot DIR` from" in (tmp_path / "findings.md").read_text()
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/my_script.py", "--fast"])
    (tmp_path / "manifest.json").write_text(json.dumps({"quick": True}))
    ibkit.results.write_findings(tmp_path, "# Findings\nbody\n")
    text = (tmp_path / "findings.md").read_text()
    assert "Written by `my_script.py --fast` from the stored tables. **A quick run (`--quick`)" in text


def test_an_unreadable_record_or_manifest_is_named(tmp_path):
    (tmp_path / RECORDS).mkdir()
    (tmp_path / RECORDS / "vae-d2-seed0.json").write_text("{half")
    with pytest.raises(ValueError, match="vae-d2-seed0.json is not a readable run record .*delete it to run that"):
        RunFolder(tmp_path).load()
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not an ibkit manifest: expected a JSON object, got list"):
        RunFolder(tmp_path).read_manifest()


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
    for sub in ("records", "checkpoints", "figures"):
        (tmp_path / sub).mkdir()
    stale = [tmp_path / ".runs.csv.x1y2.tmp", tmp_path / "records" / ".vae-d2-seed0.json.ab.tmp",
             tmp_path / "checkpoints" / ".vae-d2-seed0.pt.cd.tmp", tmp_path / "figures" / ".rd.pdf.tmp.pdf"]
    kept = [tmp_path / "runs.csv", tmp_path / "records" / "vae-d2-seed0.json", tmp_path / "figures" / "rd.pdf"]
    for path in stale + kept:
        path.write_text("x")
    assert sorted(RunFolder(tmp_path).remove_stale_temps()) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_take_the_umasks_mode_not_the_temp_files(tmp_path, umask):
    """runs.csv, records, manifests, findings and checkpoints are shared with colleagues: the atomic write's temp
    file is 0600, the file it becomes is what any new file gets (0666 less the umask)."""
    import os

    from ibkit.config import RunSpec, TrainingConfig
    from ibkit.store import atomic_write_text
    from ibkit.sweep import run_grid

    old = os.umask(umask)
    try:
        ds = ibkit.data.load("digits")
        atomic_write_text(tmp_path / "findings.md", "# Findings\n")
        run_grid("t", ds, [RunSpec("vae", dict(latent_dim=2, hidden=(8,)))],
                 lambda m, s: {"test": {"rate": 1.0}}, TrainingConfig(epochs=1), out_dir=tmp_path / "run")
    finally:
        os.umask(old)
    written = [tmp_path / "findings.md", *(p for p in (tmp_path / "run").rglob("*") if p.is_file())]
    assert {p.name for p in written} >= {"findings.md", "runs.csv", "vae-d2-seed0.json",
                                         "vae-d2-seed0.pt"}
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o666 & ~umask)}


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
