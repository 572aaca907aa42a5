"""Provenance (``ibkit.store.provenance``): the git state a run records, the data record of every committed manifest,
the command a generated file names and the data a folder's figures say they show."""

import subprocess
import sys

import pytest

from ibkit.store import COMBINED, data_of, git_state, writer_command


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


def test_every_committed_manifest_names_its_data_and_split():
    """Each committed results/*/manifest.json has a ``data`` record (``ibkit.store.data_record``) with the split;
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


def test_the_writing_command_is_the_one_given_else_this_processs(monkeypatch):
    assert writer_command(["ibkit", "run", "rate-distortion", "--set", "betas=0.5,1"]) == \
        "ibkit run rate-distortion --set betas=0.5,1"
    assert writer_command("ibkit plot DIR") == "ibkit plot DIR"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/analysis.py", "a b"])
    assert writer_command() == writer_command([]) == "analysis.py 'a b'"
    monkeypatch.setattr(sys, "argv", [""])
    assert writer_command() == "python"


def test_the_data_a_manifest_names_with_its_split_and_a_combinations_by_source():
    digits = {"data": {"name": "digits", "split": "1,438/359"}}
    assert data_of(digits) == "digits, 1,438/359"
    assert data_of({"config": {"dataset": "mnist"}}) == "mnist"  # a manifest from before the split was recorded
    assert data_of({}) is None
    combined = {"experiment": COMBINED, "sources": [{"source": "mine", "manifest": digits},
                                                    {"source": "old", "manifest": {}}]}
    assert data_of(combined) == "mine: digits, 1,438/359"
