"""The README's `ibkit run` commands, run as a new user would: in a fresh clone, where `results/` holds the
committed reference folders. Each must be accepted and write where the README says (a default folder must never
be a committed reference). Made cheap with --set overrides of the training size; MNIST needs the shared test set."""

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from ibkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHARED_MNIST = ROOT.parent / "shared" / "data"
CHEAP = {"epochs": "1", "seeds": "0", "betas": "1", "hidden": "16", "iwae_k": "5", "eval_rows": "50", "iwae_rows": "50"}


def readme_commands() -> list[str]:
    """Every concrete `ibkit run` command of the README (code lines and inline code), placeholders and remote
    schedulers left out."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"^(?:pip install [^&]*&& )?((?:IBKIT_DATA=\S+ )?ibkit run [^#\n`]*?)\s*(?:#.*)?$", text,
                       flags=re.M)
    found += re.findall(r"`((?:IBKIT_DATA=\S+ )?ibkit run [^`]+)`", text)
    keep = []
    for command in dict.fromkeys(c.strip() for c in found):
        words = shlex.split(command)
        if "--address" in words or any(w.isupper() or w.startswith("[") for w in words) or "--out" in words:
            continue  # a placeholder (NAME, DIR), a remote scheduler, or a reference's own folder
        keep.append(command)
    return keep


def test_the_readme_has_the_commands_this_test_runs():
    assert readme_commands() == [
        "ibkit run rate-distortion --quick", "ibkit run rate-distortion --jobs 4",
        "ibkit run rate-distortion --executor dask --jobs 4",
        "IBKIT_DATA=/path/to/mnist ibkit run rate-distortion --set dataset=mnist"]


@pytest.fixture
def clone(tmp_path):
    """A fresh clone of this repository (its committed results included), one per command."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: no fresh clone to make")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tmp_path / "ibkit")], check=True)
    return tmp_path / "ibkit"


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) if "--jobs" in c else c
                                     for c in readme_commands()])  # the executors: tested in tests/sweeps too
def test_a_readme_command_runs_in_a_fresh_clone(clone, command, monkeypatch, capsys):
    """In this process, from the clone's root (the console script's own behaviour, one line and exit 2 on a bad
    command, is tested in tests/cli): a fresh interpreter would add only its imports' seconds."""
    words = shlex.split(command)
    monkeypatch.delenv("IBKIT_DATA", raising=False)
    if words[0].startswith("IBKIT_DATA="):
        if not (SHARED_MNIST / "mnist").is_dir():
            pytest.skip(f"the MNIST test set is not at {SHARED_MNIST / 'mnist'} (only in the project workspace)")
        monkeypatch.setenv("IBKIT_DATA", str(SHARED_MNIST))
        words = words[1:]
    if "dask" in words and importlib.util.find_spec("distributed") is None:
        pytest.skip("Dask distributed is not installed (pip install -e '.[dask]')")
    overrides = [x for key, value in CHEAP.items() for x in ("--set", f"{key}={value}")]
    monkeypatch.chdir(clone)
    assert main([*words[1:], *overrides]) == 0, capsys.readouterr().err[-2000:]
    dataset = "mnist" if "dataset=mnist" in command else "digits"
    folder = clone / "results" / f"rate_distortion-{dataset}{'-quick' if '--quick' in words else ''}"
    assert (folder / "runs.csv").is_file() and (folder / "findings.md").is_file()
    assert not subprocess.run(["git", "status", "--porcelain", "--", *(str(p.relative_to(clone)) for p in (
        clone / "results").iterdir() if p != folder)], cwd=clone, capture_output=True, text=True).stdout
