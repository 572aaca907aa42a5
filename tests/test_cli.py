"""The command line: the rate-distortion experiment end to end, one-line errors with exit status 2, and the
experiments found through the installed packages' entry points."""

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibkit.cli import main
from ibkit.interface import RESULT_COLUMNS

TINY = ["--set", "epochs=2", "--set", "betas=0.5,4", "--set", "hidden=16", "--set", "iwae_k=5",
        "--set", "eval_rows=200", "--set", "iwae_rows=200"]


@pytest.fixture(scope="module")
def quick_run(run_experiment):
    return run_experiment("rate-distortion", TINY)


def test_rate_distortion_quick_writes_table_manifest_figure(quick_run):
    df = pd.read_csv(quick_run / "runs.csv")
    assert set(RESULT_COLUMNS) <= set(df.columns)
    # 2 VAEs + AE + sparse AE + noisy AE, one seed, train and test splits
    assert len(df) == 10 and set(df["split"]) == {"train", "test"}
    assert (df["status"] == "ok").all()
    vae = df[df["kind"] == "vae"]
    assert vae[["rate", "distortion", "elbo", "iwae"]].notna().all().all()
    assert (vae["elbo"] - (-(vae["distortion"] + vae["rate"]))).abs().max() < 1e-6
    ae = df[df["kind"].isin(["ae", "sparse_ae"])]
    assert ae["rate"].isna().all() and ae["distortion"].notna().all()
    # no upper bound exists for a deterministic code: +inf with its reason, never the probe's huge LOO number
    assert (ae["mi_upper"] == float("inf")).all() and ae["mi_upper_note"].str.startswith("unbounded").all()
    assert (ae["loo"] > ae["mi_lower"]).all() and (df["mi_lower_se"] > 0).all()
    assert df[df["kind"] == "noisy_ae"]["rate"].gt(0).all()
    manifest = json.loads((quick_run / "manifest.json").read_text())
    assert manifest["experiment"] == "rate-distortion" and manifest["config"]["epochs"] == 2
    assert manifest["finished"] and manifest["environment"]["torch"]
    # every provenance field a paper's reproduction needs
    for field in ("config", "command", "seeds", "git", "device", "executor", "started", "finished", "quick"):
        assert field in manifest, field
    assert set(manifest["git"]) == {"commit", "dirty"} and manifest["device"] == "cpu"
    for field in ("ibkit", "python", "torch", "numpy", "machine", "cuda"):
        assert field in manifest["environment"], field
    assert manifest["data"] == {"name": "digits", "binarize": "threshold",
                                "split": "scikit-learn's 1,797 digits split 1,438/359 (test_fraction 0.2, seed 0)"}
    assert all(k.startswith(("IBKIT_", "OMP_", "MKL_", "OPENBLAS_", "CUDA_", "CUBLAS_", "PYTORCH_"))
               for k in manifest["environment"]["variables"])
    for ext in ("pdf", "png"):
        assert (quick_run / "figures" / f"rate_distortion.{ext}").stat().st_size > 1000
    assert len(list((quick_run / "checkpoints").glob("*.pt"))) == 5
    assert not (quick_run / ".lock").exists()  # the lock went as the run finished: none in a finished folder


def test_plot_and_table_read_stored_results(quick_run, capsys):
    findings = (quick_run / "findings.md").read_text()
    assert f"Written by `ibkit run rate-distortion --quick --out {quick_run}" in findings
    assert "**A quick run (`--quick`): few epochs and seeds, a check that the pipeline works, not numbers to " \
        "cite.**" in findings
    (quick_run / "figures" / "rate_distortion.png").unlink()
    assert main(["plot", str(quick_run)]) == 0
    assert f"Written by `ibkit plot {quick_run}` from the stored tables." in (quick_run / "findings.md").read_text()
    assert (quick_run / "figures" / "rate_distortion.png").exists()
    capsys.readouterr()
    assert main(["table", str(quick_run), "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert r"\toprule" in out and "sparse AE" in out and "sparse\\_ae" not in out  # the kind by its label
    assert main(["table", str(quick_run)]) == 0
    assert "Data: digits, scikit-learn's 1,797 digits split 1,438/359" in capsys.readouterr().out


def test_rerun_with_another_config_is_refused(quick_run, capsys):
    assert main(["run", "rate-distortion", "--quick", "--out", str(quick_run), *TINY, "--set", "epochs=3"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_rerun_resumes_keeps_finished_runs_and_redoes_failed_ones(tmp_path, capsys):
    out = tmp_path / "resume"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY]) == 0
    first = pd.read_csv(out / "runs.csv")
    err = capsys.readouterr().err  # one line per finished run: id, seconds, headline numbers
    vae = first[(first["kind"] == "vae") & (first["split"] == "test")].iloc[0]
    assert f"{vae['run_id']}: {vae['train_seconds']:.1f} s; test: rate {vae['rate']:.4g}, distortion " in err
    # a rerun of the same command trains nothing again, loses nothing, and says so
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY]) == 0
    assert f"5 of 5 runs already finished in {out}; nothing to train" in capsys.readouterr().err
    again = pd.read_csv(out / "runs.csv")
    key = ["run_id", "split"]
    pd.testing.assert_frame_equal(first.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True))
    # a run recorded as failed is run again; the finished ones keep their stored rows (and train_seconds)
    victim = first["run_id"].iloc[0]
    record = out / "records" / f"{victim}.json"
    stored = json.loads(record.read_text())
    rows = [{**row, "status": "failed", "distortion": None} for row in stored["rows"]]
    record.write_text(json.dumps({**stored, "rows": rows}))
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY]) == 0
    healed = pd.read_csv(out / "runs.csv").sort_values(key).reset_index(drop=True)
    assert (healed["status"] == "ok").all() and len(healed) == len(first)
    others = healed[healed["run_id"] != victim].reset_index(drop=True)
    expected = first[first["run_id"] != victim].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(others, expected)
    redone = healed[healed["run_id"] == victim]
    original = first[first["run_id"] == victim].sort_values(key)
    # same seed; trained alone now, in a batch before: equal to float32 rounding
    assert list(redone["distortion"]) == pytest.approx(list(original["distortion"]), rel=1e-4)


def test_overwrite_starts_afresh(tmp_path):
    out = tmp_path / "over"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY]) == 0
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, "--set", "betas=2",
                 "--overwrite"]) == 0
    df = pd.read_csv(out / "runs.csv")
    assert sorted(df[df["kind"] == "vae"]["beta"].unique()) == [2.0]


def test_a_finished_sweep_grows_by_new_betas_without_retraining_what_it_holds(tmp_path, capsys):
    """betas, conv_betas and seeds may gain values in a finished folder: the rerun trains only the new runs and the
    manifest records the grown config. Dropping a value, or changing anything else, is refused as before."""
    out = tmp_path / "grow"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, "--set", "betas=0.5"]) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, "--set", "betas=0.5,4"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert set(after) - set(stamps) == {"vae-d8-beta4.0-seed0.json"}
    assert all(after[name] == stamp for name, stamp in stamps.items())  # nothing it held was trained again
    assert json.loads((out / "manifest.json").read_text())["config"]["betas"] == [0.5, 4.0]
    assert sorted(pd.read_csv(out / "runs.csv").query("kind == 'vae'")["beta"].unique()) == [0.5, 4.0]
    capsys.readouterr()
    for change in (["--set", "betas=4"], ["--set", "betas=0.5,4", "--set", "epochs=3"]):
        assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, *change]) == 2
        err = capsys.readouterr().err
        assert "holds results of another run (rate-distortion, a different config; only betas, conv_betas, seeds " \
               "may gain values)" in err


def test_broken_results_folders_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "runs.csv").write_text("a,b\n1,2\n")
    assert main(["table", str(bad)]) == 2
    assert "lacks the columns" in capsys.readouterr().err
    (bad / "manifest.json").write_text("[1, 2]")
    assert main(["plot", str(bad)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
    assert main(["run", "rate-distortion", "--out", str(tmp_path / "x"), "--set", "device=tpu"]) == 2
    assert "device='tpu'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nope"], "unknown experiment 'nope'; known experiments: cheating-codes, coding, information-flow, "
                          "layer-information, posterior-families, rate-distortion"),
        (["run", "rate-distortion", "--set", "bogus=1"], "--set bogus: unknown config key; valid keys: epochs,"),
        (["run", "rate-distortion", "--set", "lr=abc"], "--set lr='abc': expected float"),
        (["run", "rate-distortion", "--set", "epochs"], "expected key=value"),
        (["run", "rate-distortion", "--set", "noise=-1"], "noise=-1.0 must be > 0"),
        (["run", "rate-distortion", "--set", "betas=-1,2"], "betas[0]=-1.0 must be >= 0"),
        (["run", "rate-distortion", "--set", "dataset=cifar"], "dataset='cifar' is not known"),
        (["run", "rate-distortion", "--set", "latent_dim=0"], "latent_dim=0 must be >= 1"),
        (["table", "/nonexistent/folder"], "no results folder /nonexistent/folder"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ibkit: error: ")
    assert message in err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", "rate-distortion", "--out", str(f), *TINY]) == 2
    assert "is a file" in capsys.readouterr().err


def test_console_script_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "ibkit.cli", "run", "rate-distortion", "--set", "beta=abc"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ibkit: error: --set beta: unknown config key")
    assert "Traceback" not in proc.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["run", "rate-distortion", "--set", "epochs=x", "lr=-1", "betas=", "--out",
                                 "--quick", "table", "plot", "list", "=", "hidden=a", "seeds=1.5", "--format",
                                 "--help", "", "nope"]), max_size=6))
def test_parser_only_ever_fails_cleanly(argv):
    """Generated argument lists never raise anything but the clean exit (no real run: epochs=x always fails)."""
    if "run" in argv and "rate-distortion" in argv and "epochs=x" not in argv:
        argv = [*argv, "--set", "epochs=x"]  # keep every generated run from training
    if "--help" in argv or argv == ["list"]:
        return
    code = main(argv)
    assert code in (0, 2)


BUILT_IN = {"rate-distortion": "experiments.rate_distortion", "information-flow": "experiments.information_flow",
            "posterior-families": "experiments.posterior_families",
            "layer-information": "experiments.layer_information", "coding": "experiments.coding",
            "cheating-codes": "experiments.cheating_codes"}


def test_the_installed_package_registers_its_experiments():
    registered = {ep.name: ep.value for ep in entry_points(group="ibkit.experiments")}
    assert {name: registered.get(name) for name in BUILT_IN} == BUILT_IN
    from ibkit import registry

    assert dict(sorted(registered.items())) == {name: ep.value for name, ep in registry.experiments().items()}
    assert registry.experiment("rate-distortion").NAME == "rate-distortion"
    with pytest.raises(ValueError, match="unknown experiment 'nope'; known experiments: cheating-codes, coding"):
        registry.experiment("nope")


def test_list_finds_the_experiments_through_the_entry_points(tmp_path, monkeypatch, capsys):
    """An experiment another installed package registers is listed and runnable by name, like ibkit's own."""
    (tmp_path / "ibkit_demo_study.py").write_text(
        'NAME = "demo-study"\nSUMMARY = "a study of our own"\nfrom ibkit.config import ExperimentConfig as Config\n'
        'QUICK = {}\ndef run(config, out_dir=None, executor=None): ...\ndef plot(run_dir): ...\n')
    info = tmp_path / "ibkit_demo_study-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ibkit-demo-study\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ibkit.experiments]\ndemo-study = ibkit_demo_study\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ibkit_demo_study", raising=False)
    assert main(["list"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(listed) == {*BUILT_IN, "demo-study"}
    assert listed["demo-study"].endswith("a study of our own")
    assert listed["rate-distortion"].endswith("deterministic, sparse and noisy AEs")
    assert main(["run", "nope"]) == 2
    assert "known experiments: cheating-codes, coding, demo-study, information-flow" in capsys.readouterr().err


def test_list_from_elsewhere_uses_the_installed_package(tmp_path):
    """`python -m ibkit.cli list` in a folder that is not the source tree (and holds an experiments.py of its
    own, which is never imported) lists the registered experiments."""
    marker = tmp_path / "ran"
    (tmp_path / "experiments.py").write_text(f"open({str(marker)!r}, 'w')\n")
    proc = subprocess.run([sys.executable, "-m", "ibkit.cli", "list"], cwd=tmp_path, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == sorted(BUILT_IN)
    assert not marker.exists()


@pytest.mark.parametrize("args, env, message", [
    (["--jobs", "0"], {}, "jobs=0 must be >= 1"),
    (["--set", "dataset=mnist"], {"IBKIT_DATA": "/nonexistent/mnist"}, "IBKIT_DATA"),
    (["--address", "tcp://127.0.0.1:1"], {}, "needs executor='dask'"),
    (["--threads", "0"], {}, "threads=0 must be >= 1"),
])
def test_a_refused_command_leaves_nothing_behind(tmp_path, monkeypatch, capsys, args, env, message):
    """Everything is checked before anything is made: no folder, no manifest, so that the corrected command is
    not then refused as 'another run'."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "deep" / "run"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_in_use_by_another_run_is_refused_and_a_killed_holder_blocks_nothing(tmp_path, capsys):
    """The advisory lock: a second ``ibkit run`` into a folder a first one is training in exits 2 naming the
    holder; once the holder is gone (SIGKILL: no clean-up ran) the folder is free again."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ibkit.store import RunFolder\n"
        f"with RunFolder({str(out)!r}).lock():\n    print('locked', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert f"is in use by another ibkit run (pid {holder.pid} on" in err and err.count("\n") == 1
        assert not (out / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
    from ibkit.store import RunFolder

    with RunFolder(out).lock():  # the killed holder's lock went with its process
        assert f"pid {os.getpid()} on" in (out / ".lock").read_text()
    assert not (out / ".lock").exists()  # removed as the block ended (the killed holder's file, now ours, too)


def test_the_lock_file_goes_when_its_block_ends_by_ctrl_c_and_a_removed_file_is_locked_anew(tmp_path, monkeypatch):
    """A KeyboardInterrupt inside the block removes .lock as a clean exit does. A process that locked a file its
    previous holder removed meanwhile (so that a third process could lock a new one at the path) locks again: the
    file it holds is the one at the path."""
    import fcntl

    from ibkit.store import RunFolder

    with pytest.raises(KeyboardInterrupt), RunFolder(tmp_path).lock():
        assert (tmp_path / ".lock").is_file()
        raise KeyboardInterrupt
    assert not (tmp_path / ".lock").exists()
    calls, flock = [], fcntl.flock

    def holder_leaves_first(fd, op):  # the first time: the previous holder removes its file as this one locks it
        calls.append(os.fstat(fd).st_ino)
        if len(calls) == 1:
            (tmp_path / ".lock").unlink()
        return flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", holder_leaves_first)
    with RunFolder(tmp_path).lock():
        assert len(calls) == 2 and os.stat(tmp_path / ".lock").st_ino == calls[1]
        assert f"pid {os.getpid()} on" in (tmp_path / ".lock").read_text()
    assert not (tmp_path / ".lock").exists()


def test_run_help_lists_the_experiments_keys_with_types_defaults_and_meanings(capsys):
    assert main(["run", "layer-information", "--help"]) == 0
    out = capsys.readouterr().out
    assert "config keys (--set KEY=VALUE, repeatable):" in out
    assert "  epochs (int; default 100): passes over the training split" in out
    assert "  betas (floats (a,b,...); default 0.5,1.0,2.0,4.0): KL weights" in out
    assert "  curves (bool; default true): per-epoch test-split losses of every run (the side table history.csv)" in out
    assert "default results/layer_information-digits; with --quick results/layer_information-digits-quick" in out
    assert main(["plot", "--help"]) == 0
    assert "a folder written by ibkit run" in capsys.readouterr().out


def test_the_default_folder_names_the_dataset_and_a_near_miss_names_the_folder_that_exists(tmp_path, capsys):
    from experiments import rate_distortion
    from ibkit.cli import default_out

    config = rate_distortion.Config(dataset="mnist")
    assert default_out("rate-distortion", config, False) == "results/rate_distortion-mnist"
    assert default_out("rate-distortion", config, True) == "results/rate_distortion-mnist-quick"
    (tmp_path / "rate_distortion-quick").mkdir()
    assert main(["plot", str(tmp_path / "rate-distortion-quick")]) == 2
    assert f"did you mean {tmp_path / 'rate_distortion-quick'}?" in capsys.readouterr().err
