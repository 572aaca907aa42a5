"""Executors: worker processes and a real Dask LocalCluster give the table this process gives."""

import importlib.util
import time

import pandas as pd
import pytest

from ibkit.cli import main

TINY = ["--set", "epochs=3", "--set", "betas=0.5,4", "--set", "hidden=16", "--set", "iwae_k=5",
        "--set", "eval_rows=200", "--set", "iwae_rows=200"]
KEY = ["run_id", "split"]
METRICS = ["rate", "distortion", "elbo", "iwae", "active_units"]


def _table(out) -> pd.DataFrame:
    return pd.read_csv(out / "runs.csv").sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("executors") / "here"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY]) == 0
    return _table(out)


def test_local_worker_processes_give_the_same_table(tmp_path, in_process):
    out = tmp_path / "jobs"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, "--jobs", "2"]) == 0
    table = _table(out)
    assert (table["status"] == "ok").all() and table[KEY].equals(in_process[KEY])
    pd.testing.assert_frame_equal(table[METRICS], in_process[METRICS], rtol=1e-4)
    assert len(list((out / "records").glob("*.json"))) == table["run_id"].nunique()


needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="Dask distributed is not installed (pip install -e '.[dask]')")


@needs_dask
def test_dask_local_cluster_gives_the_same_table(tmp_path, in_process):
    out = tmp_path / "dask"
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *TINY, "--executor", "dask",
                 "--jobs", "2"]) == 0
    table = _table(out)
    assert (table["status"] == "ok").all() and table[KEY].equals(in_process[KEY])
    pd.testing.assert_frame_equal(table[METRICS], in_process[METRICS], rtol=1e-4)
    assert len(list((out / "checkpoints").glob("*.pt"))) == table["run_id"].nunique()


@needs_dask
def test_unreachable_scheduler_fails_fast_with_the_address(tmp_path, capsys):
    start = time.perf_counter()
    code = main(["run", "rate-distortion", "--quick", "--out", str(tmp_path / "x"), *TINY, "--executor", "dask",
                 "--address", "tcp://127.0.0.1:9"])
    assert code == 2 and time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "tcp://127.0.0.1:9" in err and "no Dask scheduler answered" in err and len(err.strip().splitlines()) == 1


@needs_dask
def test_an_address_where_something_else_answers_is_one_line(tmp_path, capsys):
    """A server that is not a Dask scheduler is named in one line, not a traceback or a hang: one that answers
    with junk bytes, and one that accepts and never speaks (Dask's client would wait for its handshake forever)."""
    import contextlib
    import socket
    import threading

    from ibkit.executors import Dask

    def listening(answer: bytes | None):
        """A server on a free loopback port that answers every connection with ``answer``, or never speaks."""
        server = socket.create_server(("127.0.0.1", 0))

        def serve():
            with contextlib.suppress(OSError):  # the server closed: the test is over
                while True:
                    connection, _ = server.accept()
                    if answer is not None:
                        with connection:
                            connection.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        return server, f"tcp://127.0.0.1:{server.getsockname()[1]}"

    server, address = listening(b"\xff" * 64)
    with server:
        code = main(["run", "rate-distortion", "--quick", "--out", str(tmp_path / "x"), *TINY, "--executor", "dask",
                     "--address", address])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    assert f"address={address!r}: no Dask scheduler answered (what answers there does not speak Dask's" in err
    server, address = listening(None)
    with server, pytest.raises(ValueError, match=r"no Dask scheduler answered \(none within 0.5 s\)"):
        Dask(address=address, timeout=0.5)
    for malformed, why in (("tcp://127.0.0.1", "missing port number"), ("foo://127.0.0.1:9", "unknown address scheme")):
        with pytest.raises(ValueError, match=rf"address='{malformed}' is not a Dask scheduler address.*{why}"):
            Dask(address=malformed)


@pytest.mark.parametrize("args,message", [
    (["--executor", "slurm"], "invalid choice: 'slurm'"),
    (["--jobs", "0"], "jobs=0 must be >= 1"),
    (["--address", "tcp://127.0.0.1:9"], "needs executor='dask'"),
])
def test_bad_executor_options_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["run", "rate-distortion", "--quick", "--out", str(tmp_path / "x"), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _dies_once(model, spec, *, marker):
    """An evaluate whose worker process dies the first time it runs (a node lost mid-run)."""
    import os
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).write_text("died once")
        os._exit(1)
    return {"test": {"distortion": 1.0}}


@needs_dask
def test_a_run_whose_dask_worker_dies_is_retried_elsewhere(tmp_path):
    from functools import partial

    import ibkit
    from ibkit.config import RunSpec, TrainingConfig
    from ibkit.executors import Dask
    from ibkit.sweep import run_grid

    ds = ibkit.data.load("digits")
    specs = [RunSpec("ae", dict(latent_dim=2, hidden=(8,)))]
    marker = tmp_path / "marker"
    rows = run_grid("t", ds, specs, partial(_dies_once, marker=str(marker)), TrainingConfig(epochs=1),
                    out_dir=tmp_path / "out",
                    executor=Dask(jobs=2))
    assert marker.exists() and (rows["status"] == "ok").all() and len(rows) == 1


def _threads(context, group):
    import torch

    return torch.get_num_threads()


def test_each_process_gets_its_share_of_the_cores_or_the_threads_asked_for():
    """torch's intra-op threads: the cores divided among the --jobs processes (oversubscribing them made a fit on
    a busy 2-core machine 30 times slower), or --threads each."""
    import os

    from ibkit.executors import InProcess, Processes, make_executor

    cores = os.cpu_count() or 1
    assert make_executor("local", 1).threads == cores and make_executor("local", 2).threads == max(1, cores // 2)
    assert [r for _, r in InProcess(threads=1).run(_threads, None, [[0]])] == [1]
    assert sorted(r for _, r in Processes(2, threads=1).run(_threads, None, [[0], [1]])) == [1, 1]
    with pytest.raises(ValueError, match="threads=0 must be >= 1"):
        make_executor("local", 1, threads=0)
