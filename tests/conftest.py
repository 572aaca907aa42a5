"""Shared fixtures: a tiny command-line run of an experiment into a temporary folder."""

import pytest

from ibkit.cli import main


@pytest.fixture(scope="session")
def digits():
    """The digits dataset (scikit-learn's 8x8 digits, binarised)."""
    import ibkit

    return ibkit.data.load("digits")


@pytest.fixture(scope="module")
def run_experiment(tmp_path_factory):
    """run_experiment(name, args) -> the folder of `ibkit run NAME --quick --out DIR ARGS`, asserted to succeed."""

    def run(name: str, args: list[str]):
        out = tmp_path_factory.mktemp(name) / "run"
        assert main(["run", name, "--quick", "--out", str(out), *args]) == 0
        return out

    return run
