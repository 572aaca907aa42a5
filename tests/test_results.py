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
