"""Files from elsewhere are data: a checkpoint is read as tensors only, a results folder is never executed, and
the Dask cluster ibkit starts listens on loopback only. (Downloads: checksummed before use and never cached when
they do not match; tests/test_data.py.)"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from ibkit.models import load_checkpoint, save_checkpoint
from ibkit.results import load_model


class _Payload:
    """Unpickling this runs code: it would write the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_checkpoint_that_carries_pickled_code_is_refused_and_the_code_never_runs(tmp_path, tiny_vae):
    marker = tmp_path / "ran"
    folder = tmp_path / "run"
    model = tiny_vae(input_dim=8, latent_dim=2, hidden=(4,))
    state = {"config": {"kind": "vae"}, "state_dict": model.state_dict(), "x": _Payload(marker)}
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(state, folder / "checkpoints" / "vae-d2-beta1.0-seed0.pt")
    with pytest.raises(ValueError, match=r"cannot load checkpoint .*: not an ibkit weights-only checkpoint"):
        load_model(folder, "vae-d2-beta1.0-seed0")
    assert not marker.exists()


@pytest.mark.parametrize("blob, problem", [
    ({"state_dict": {}}, "KeyError"),
    ({"config": {"kind": "vae", "input_dim": 8, "latent_dim": 2, "hidden": [4], "evil": 1}, "state_dict": {}},
     r"ValueError: unknown option\(s\) \['evil'\]"),
    ({"config": {"kind": "vae", "input_dim": 8, "latent_dim": 2, "hidden": [4]}, "state_dict": {"w": torch.ones(2)}},
     "RuntimeError"),
])
def test_tensors_that_are_not_an_ibkit_model_are_refused_by_name(tmp_path, blob, problem):
    path = tmp_path / "odd.pt"
    torch.save(blob, path)
    with pytest.raises(ValueError, match=rf"cannot load checkpoint .*odd.pt: not an ibkit checkpoint \({problem}"):
        load_checkpoint(path)


def test_a_checkpoint_of_ours_round_trips(tmp_path, tiny_vae):
    model = tiny_vae(input_dim=8, latent_dim=2, hidden=(4,), seed=3)
    save_checkpoint(model, tmp_path / "m.pt")
    back = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(5, 8).round()
    torch.testing.assert_close(back.posterior(x).mean, model.posterior(x).mean)


EACH_COMMAND = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from ibkit.cli import main
    answers = {}
    for command in ("plot", "gallery", "table"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            answers[command] = (main([command, sys.argv[1]]), err.getvalue())
    print(json.dumps(answers))
    """
)


def test_reading_a_results_folder_from_elsewhere_never_executes_anything_in_it(tmp_path):
    """A folder whose manifest names a module it ships (and a runs.csv with spreadsheet formulas): `ibkit plot`
    and `ibkit table` refuse or print it as text; nothing in the folder is imported or run."""
    folder = tmp_path / "foreign"
    folder.mkdir()
    marker = tmp_path / "ran"
    for module in ("evil.py", "experiments.py"):
        (folder / module).write_text(f"open({str(marker)!r}, 'w')\n")
    (folder / "manifest.json").write_text(json.dumps({"experiment": "evil", "config": {}}))
    (folder / "runs.csv").write_text("experiment,run_id,dataset,kind,seed,split,status,rate\n"
                                     "x,=SYSTEM(\"rm -rf /\"),digits,vae,0,test,ok,1.0\n")
    # one interpreter started in the folder, with it first on sys.path as `python -m ibkit.cli` would put it
    proc = subprocess.run([sys.executable, "-c", EACH_COMMAND, str(folder)], cwd=folder, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(code in (0, 2) and "Traceback" not in err for code, err in answers.values())
    assert answers["plot"][0] == 2 and "unknown experiment 'evil'" in answers["plot"][1]
    assert not marker.exists()


def test_the_dask_cluster_ibkit_starts_listens_on_loopback_only():
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install -e '.[dask]')")
    from ibkit.executors import Dask

    executor = Dask(jobs=1)
    try:
        info = executor.client.scheduler_info()
        assert executor.client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(address.startswith("tcp://127.0.0.1:") for address in info["workers"])
    finally:
        executor.close()
