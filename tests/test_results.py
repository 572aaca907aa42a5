"""The results store: provenance of a run folder."""

import subprocess

from ibkit.results import git_state


def test_git_state_ignores_the_run_folder_but_not_the_source(tmp_path):
    repo = tmp_path / "repo"
    (repo / "results" / "run").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                       capture_output=True)

    git("init", "-q")
    git("add", "code.py")
    git("commit", "-qm", "init")
    (repo / "results" / "run" / "runs.csv").write_text("a\n")  # what the run itself writes
    state = git_state(exclude=repo / "results" / "run", cwd=repo)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    assert git_state(cwd=repo)["dirty"] is True  # without the exclusion the new file counts
    (repo / "code.py").write_text("x = 2\n")
    assert git_state(exclude=repo / "results" / "run", cwd=repo)["dirty"] is True
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
