"""The results store: a run folder holds ``records/`` (one JSON file per finished run: its rows), ``runs.csv``
(the tidy table assembled from them: one row per run and split), ``manifest.json`` (provenance), ``figures/``
and ``checkpoints/``. Every write is atomic (temp file, then rename), so a process killed at any instant leaves
each file whole: at most the runs in flight are lost."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from ibkit.atomic import atomic_open
from ibkit.interface import RESULT_COLUMNS
from ibkit.models.config import ModelConfig
from ibkit.models.registry import all_knobs, text_fields

RUNS = "runs.csv"
MANIFEST = "manifest.json"
RECORDS = "records"
CHECKPOINTS = "checkpoints"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one, never half
    (``ibkit.atomic.atomic_open``)."""
    with atomic_open(path) as f:
        f.write(text)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then deliver it: a run's
    checkpoint, record and tables are written together or not at all. Only the main thread receives signals;
    elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):
            previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
        elif held and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def write_runs(df: pd.DataFrame, folder: str | os.PathLike, lead: Sequence[str] = ()) -> Path:
    """Store the tidy table as ``folder/runs.csv``: the ``lead`` columns (e.g. a combined table's ``source``), then
    the schema's (the knob columns after latent_dim), then the rest."""
    first = [*lead, *(c for c in schema_columns() if c in df.columns and c not in lead)]
    df = df[first + [c for c in df.columns if c not in first]]
    path = Path(folder) / RUNS
    atomic_write_text(path, df.to_csv(index=False))
    return path


REQUIRED = ("run_id", "kind", "split", "status")


def schema_columns() -> tuple[str, ...]:
    """The results schema: ``RESULT_COLUMNS`` with a column per knob of every registered kind after latent_dim."""
    at = RESULT_COLUMNS.index("latent_dim") + 1
    return RESULT_COLUMNS[:at] + all_knobs() + RESULT_COLUMNS[at:]


def write_record(folder: str | os.PathLike, run_id: str, rows: list[dict],
                 tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Store one finished run as ``folder/records/RUN_ID.json``: its rows of the results table and the rows it
    adds to any side table (``tables``: name -> DataFrame, e.g. a probe curve), replacing an earlier attempt's."""
    record = {"rows": rows, "tables": {name: t.to_dict("records") for name, t in (tables or {}).items()}}
    path = Path(folder) / RECORDS / f"{run_id}.json"
    atomic_write_text(path, json.dumps(record, default=_plain) + "\n")
    return path


def _plain(value):
    """numpy scalars and the like as JSON numbers or strings."""
    return value.item() if hasattr(value, "item") else str(value)


def _records(folder: str | os.PathLike) -> list[dict]:
    """The run records of ``folder`` in the order the runs finished."""
    paths = sorted((Path(folder) / RECORDS).glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    records = []
    for path in paths:
        try:
            records.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a readable run record ({e}); delete it to run that run again") from None
    return records


def read_records(folder: str | os.PathLike) -> pd.DataFrame | None:
    """The results rows of every run recorded in ``folder/records``, or None if none is."""
    rows = [row for record in _records(folder) for row in record["rows"]]
    return pd.DataFrame(rows) if rows else None


def side_table(folder: str | os.PathLike, name: str) -> pd.DataFrame:
    """Side table ``name`` (e.g. "probe_curve"): the rows every recorded run added to it, else ``NAME.csv``."""
    parts = [pd.DataFrame(r["tables"][name]) for r in _records(folder) if r["tables"].get(name)]
    if parts:
        return pd.concat(parts, ignore_index=True)
    path = Path(folder) / f"{name}.csv"
    if not path.is_file():
        return pd.DataFrame()
    text = text_columns()
    return pd.read_csv(path, dtype={c: str for c in text}).fillna({c: "" for c in text})


def write_tables(folder: str | os.PathLike) -> None:
    """Assemble ``runs.csv`` and every side table's ``NAME.csv`` from the run records (atomic writes)."""
    write_runs(load(folder), folder)
    names = {name for record in _records(folder) for name in record["tables"]}
    for name in sorted(names):
        atomic_write_text(Path(folder) / f"{name}.csv", side_table(folder, name).to_csv(index=False))


def text_columns() -> tuple[str, ...]:
    """Columns read as text (never as numbers or NaN): the schema's and the registered configs' text fields."""
    return ("run_id", "kind", "split", "status", "error", "source", *text_fields())


def load(folder: str | os.PathLike) -> pd.DataFrame:
    """The tidy table of a stored run folder (one row per run and split): assembled from its run records, or
    read from ``runs.csv`` where there are none (a folder copied without them)."""
    df = read_records(folder)
    path = Path(folder) / (RECORDS if df is not None else RUNS)
    if df is None:
        if not path.is_file():
            raise FileNotFoundError(f"no results table at {path}; run an experiment into {folder} first "
                                    "(ibkit run ...)")
        try:
            df = pd.read_csv(path, dtype={c: str for c in text_columns()})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a readable results table ({e})") from None
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise ValueError(f"{path} is not an ibkit results table: it lacks the columns {missing}")
    return _valid_upper(_filled(df))


def _valid_upper(df: pd.DataFrame) -> pd.DataFrame:
    """A table stored before the rule that a negative leave-one-out estimate is no upper bound (ibkit 0.1.0 to
    commit 5967a35 kept min(LOO, rate) even below 0): each such ``mi_upper`` becomes what
    ``ibkit.estimators.information.tightest_upper`` takes now, the stored rate (its standard error from the stored
    95% interval over the examples), with the note. A table written since has none, and is returned unchanged."""
    if "mi_upper" not in df or not (df["mi_upper"] < 0).any():
        return df
    from ibkit.estimators.information import tightest_upper

    df = df.copy()
    df["mi_upper_note"] = df["mi_upper_note"].astype(object) if "mi_upper_note" in df else ""
    for i in df.index[df["mi_upper"] < 0]:
        row = df.loc[i]
        rate_se = (row["rate_ex_hi"] - row["rate_ex_lo"]) / (2 * 1.96) if "rate_ex_hi" in df else math.nan
        value, se, note = tightest_upper({"leave-one-out": (row["mi_upper"], row.get("mi_upper_se", math.nan)),
                                          "rate": (row.get("rate", math.nan), rate_se)})
        df.loc[i, ["mi_upper", "mi_upper_se", "mi_upper_note"]] = [value, se, f"{note} (upgraded at load)"]
    return df


def _filled(df: pd.DataFrame) -> pd.DataFrame:
    """A results table with its gaps filled as stored tables read: a text column's by "", a config field left unset
    by its default (a run that left its network unset: "mlp")."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if isinstance(f.default, str)}
    df = df.fillna({c: v for c, v in defaults.items() if c in df})
    return df.fillna({c: "" for c in text_columns() if c in df})


def load_model(folder: str | os.PathLike, run_id: str):
    """The trained model of run ``run_id`` of a stored run folder (its checkpoint), for a notebook's analysis."""
    from ibkit.models import load_checkpoint

    path = Path(folder) / CHECKPOINTS / f"{run_id}.pt"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(folder) / CHECKPOINTS).glob("*.pt"))
        raise ValueError(f"run_id={run_id!r} has no checkpoint in {folder}; runs with one: "
                         f"{', '.join(known) if known else 'none (checkpoints are not kept in git)'}")
    return load_checkpoint(path)


def finished_run_ids(folder: str | os.PathLike) -> set[str]:
    """The run_ids stored in ``folder`` whose rows all have status "ok" (a resumed sweep skips them)."""
    folder = Path(folder)
    if not (folder / RUNS).is_file() and not any((folder / RECORDS).glob("*.json")):
        return set()
    df = load(folder)
    ok = df.groupby("run_id")["status"].agg(lambda s: bool((s == "ok").all()))
    return set(ok[ok].index)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``, ``.NAME.tmp.png``) that a writer killed mid-write (SIGKILL)
    left in a run folder, its records, checkpoints and figures; the files they were to replace are whole. Call it
    only where no other process writes to the folder (a sweep resuming in it). Returns the paths removed."""
    folder = Path(folder)
    stale = [p for sub in ("", RECORDS, CHECKPOINTS, "figures") for p in (folder / sub).glob(".*.tmp*")
             if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def clear(folder: str | os.PathLike) -> None:
    """Remove the tables, run records and generated notes of a run folder (``--overwrite``); figures and
    checkpoints are rewritten as the new runs finish."""
    folder = Path(folder)
    for path in (*folder.glob("*.csv"), *folder.glob("*.md"), folder / MANIFEST, *(folder / RECORDS).glob("*")):
        path.unlink(missing_ok=True)


COMMAND: list[str] = []  # the ibkit command line being run (set by ``ibkit.cli.main``); else sys.argv


def writer_command() -> str:
    """The command writing results now, for a generated file: ``ibkit run rate-distortion --quick``,
    ``ibkit plot DIR``, or the script that called ibkit from Python."""
    argv = COMMAND or [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return shlex.join(argv)


def write_findings(folder: str | os.PathLike, text: str) -> Path:
    """Write ``folder/findings.md``: the experiment's generated ``text`` ("# title" first) with, under the title,
    the command that wrote it and, for a quick run (the manifest's ``quick``), that its numbers are not for
    citing."""
    manifest = read_manifest(folder) or {}
    title, _, body = text.partition("\n")
    lines = [title, "", f"Written by `{writer_command()}` from the stored tables."]
    if manifest.get("quick"):
        lines[-1] += (" **A quick run (`--quick`): few epochs and seeds, a check that the pipeline works, not "
                      "numbers to cite.**")
    path = Path(folder) / "findings.md"
    atomic_write_text(path, "\n".join(lines) + "\n" + body)
    return path


def data_record(ds) -> dict:
    """The manifest's ``data`` record of a loaded ``ibkit.data.Dataset``: its name, its provenance (for IDX data the
    folder, where it was found and each file's SHA-256) and its split ("t10k split 8,000/2,000 (test_fraction 0.2,
    seed 0)")."""
    return {"name": ds.name, **ds.provenance, "split": ds.split}


def is_quick(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a quick run (``ibkit run --quick``): its manifest says ``quick``, or, without a
    manifest that says, its name ends in -quick (the default folder of a quick run)."""
    manifest = read_manifest(folder) or {}
    if "quick" in manifest:
        return bool(manifest["quick"])
    return Path(folder).name.endswith("-quick")


def data_text(folder: str | os.PathLike) -> str | None:
    """The data a run folder's manifest names, with its split: "mnist, t10k split 8,000/2,000 (test_fraction 0.2,
    seed 0)"; the config's dataset alone for a folder written before manifests recorded the split; for a folder
    ``combine`` wrote, each source's, named ("mine: digits, 359 rows; rate_distortion: digits, ..."); else None."""
    return _data_of(read_manifest(folder) or {})


def _data_of(manifest: dict) -> str | None:
    """``data_text`` of a manifest read already."""
    if manifest.get("experiment") == COMBINED:
        texts = [f"{s.get('source')}: {text}" for s in manifest.get("sources") or []
                 if (text := _data_of(s.get("manifest") or {}))]
        return "; ".join(texts) or None
    data = manifest.get("data") or {}
    name = data.get("name") or manifest.get("config", {}).get("dataset")
    return f"{name}, {data['split']}" if name and data.get("split") else name


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of a run folder, or None when there is none. Read as JSON data, nothing executed."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a valid manifest (JSON): {e}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not an ibkit manifest: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def git_state(exclude: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the git tree around ``cwd`` (ibkit's source by default).

    Changes under ``exclude`` (the run folder being written, when it lies in the tree) and under the tree's
    ``results/`` (other runs' stored outputs: data, not the code that runs) do not make it dirty.
    """

    def git(*args) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd or Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10)

    try:
        sha, top = git("rev-parse", "HEAD"), git("rev-parse", "--show-toplevel")
        if sha.returncode != 0 or top.returncode != 0:
            return {"commit": None, "dirty": None}
        pathspec = [":(top)", ":(top,exclude)results"]
        if exclude is not None:
            try:
                inside = Path(exclude).resolve().relative_to(Path(top.stdout.strip()).resolve())
                pathspec.append(f":(top,exclude){inside.as_posix()}")
            except ValueError:
                pass  # the run folder lies outside the source tree
        status = git("status", "--porcelain", "--", *pathspec)
        return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict:
    """Versions and machine facts for the manifest."""
    import numpy
    import torch

    import ibkit

    return {
        "ibkit": ibkit.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(RUN_VARIABLES)},
    }


# environment variables that change what a run reads or how it computes: the data folder, thread counts, devices
RUN_VARIABLES = ("IBKIT_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
                 "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_")


def write_manifest(folder: str | os.PathLike, **fields) -> Path:
    """Write ``manifest.json``: the given fields (experiment, config, seeds, times...) plus the command
    line, the git state and the environment."""
    git = fields.pop("git", None) or git_state(exclude=folder)  # given: the state when the run started
    manifest = {**fields, "command": sys.argv, "git": git, "environment": environment()}
    path = Path(folder) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def check_folder(folder: str | os.PathLike, experiment: str, config: dict, overwrite: bool,
                 defaults: dict | None = None, grows: Sequence[str] = ()) -> Path:
    """Make sure ``folder`` can take this run: a folder (not a file), writable, and not holding the results
    of a different experiment or config unless ``overwrite``. The same experiment and config resume: the
    sweep skips the runs that finished. The fields named in ``grows`` (the grid's lists: betas, seeds) may gain
    values, so that a finished sweep grows without retraining what it holds; they may not lose any. A field the
    stored config lacks (one the experiment gained since) counts as its value in ``defaults`` (the experiment's
    default config), and one it has that the config no longer has is ignored. Creates nothing (a refused command
    leaves no trace). Returns the folder as a Path."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder; pick a folder path")
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None and (folder / RUNS).exists() and not overwrite:
        raise ValueError(f"{folder} holds a {RUNS} without a {MANIFEST}; choose another --out or pass --overwrite")
    if manifest is not None and not overwrite:
        as_stored = json.loads(json.dumps(config, default=str))
        stored = {**json.loads(json.dumps(defaults or {}, default=str)), **(manifest.get("config") or {})}
        def kept(key: str, value) -> bool:  # the stored value, or a list that holds every stored value
            old = stored.get(key, key)
            return old == value or (key in grows and isinstance(old, list) and isinstance(value, list)
                                    and all(v in value for v in old))

        if manifest.get("experiment") != experiment or not all(kept(k, v) for k, v in as_stored.items()):
            growing = f"; only {', '.join(grows)} may gain values" if grows else ""
            raise ValueError(
                f"{folder} holds results of another run ({manifest.get('experiment')}, a different config{growing}); "
                "choose another --out or pass --overwrite to replace them"
            )
    existing = folder.absolute()
    while not existing.exists():  # the folder is made later: its nearest existing ancestor must take it
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {folder}: {existing} is a file, not a folder; pick a folder path")
    try:
        if existing == folder.absolute():
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise ValueError(f"--out {folder} is not writable ({e.strerror}); pick a folder you can write to") from None
    return folder


COMBINED = "compare"  # the manifest's experiment of a folder that ``combine`` wrote (``ibkit compare``)


def combine(dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, *,
            overwrite: bool = False) -> pd.DataFrame:
    """Several stored folders (``ibkit analyse`` reports, ``ibkit run`` folders, earlier combinations) as one table
    with a ``source`` column: each row's folder name, which tells the sources apart (an earlier combination's rows
    keep theirs beneath it: "outer/inner").

    With ``out`` the combination is stored as a folder that ``ibkit plot`` and ``ibkit table`` read as they read a
    run folder: ``OUT/runs.csv`` (``source`` first), ``OUT/manifest.json`` (experiment "compare"; under "sources"
    each source's name, its folder as given and its manifest whole; then the command, git state and environment)
    and ``OUT/figures/rate_distortion.pdf|png`` (``plot_combined``). Everything is checked before anything is
    written: a refused call leaves no trace.

    Args:
        dirs: the folders, each holding runs.csv and manifest.json; no two of the same name.
        out: the folder to write, or None for the table alone. It may not be a source, lie inside one or hold one;
            where it exists with anything in it, it needs ``overwrite``.
        overwrite: replace the tables, notes and manifest ``out`` holds (as ``ibkit run --overwrite`` does).

    Returns:
        The combined table, one row per source's row (run and split), in the order of ``dirs``.
    """
    if isinstance(dirs, (str, os.PathLike)) or not len(dirs):
        raise ValueError(f"dirs={dirs!r}: expected a list of one or more folders written by ibkit run or ibkit "
                         "analyse")
    folders = [Path(d) for d in dirs]
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder; compare takes folders written by ibkit run or ibkit analyse")
        missing = [name for name in (RUNS, MANIFEST) if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"{folder} has no {' and no '.join(missing)}; compare takes folders written by ibkit run "
                             "or ibkit analyse (a report written before analyse stored its manifest: analyse again)")
    names = [folder.resolve().name for folder in folders]
    twice = [name for name in dict.fromkeys(names) if names.count(name) > 1]
    if twice:
        same = ", ".join(str(f) for f, n in zip(folders, names, strict=True) if n == twice[0])
        raise ValueError(f"two sources are named {twice[0]!r} ({same}); a source is named by its folder, so each "
                         "needs a name of its own: copy or rename one")
    if out is not None:
        target = Path(out).resolve()
        for folder in folders:
            source = folder.resolve()
            if target == source or source in target.parents or target in source.parents:
                where = "is" if target == source else "lies inside" if source in target.parents else "holds"
                raise ValueError(f"--out {out} {where} the source {folder}; write the combination to a folder of its "
                                 "own")
        if target.exists() and not target.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder; pick a folder path")
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise ValueError(f"--out {out} exists and holds other files; choose another --out or pass --overwrite to "
                             "replace its tables and manifest")
    manifests = [read_manifest(folder) for folder in folders]
    parts = []
    for name, folder in zip(names, folders, strict=True):
        table = load(folder)
        inner = table.pop("source").astype(str) if "source" in table else None  # an earlier combination's sources
        table.insert(0, "source", name if inner is None else name + "/" + inner)
        parts.append(table)
    combined = _filled(pd.concat(parts, ignore_index=True))
    if out is not None:
        folder = Path(out)
        if overwrite:
            clear(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_runs(combined, folder, lead=("source",))
        sources = [{"source": name, "folder": str(d), "manifest": manifest}
                   for name, d, manifest in zip(names, dirs, manifests, strict=True)]
        write_manifest(folder, experiment=COMBINED, sources=sources,
                       written=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
        plot_combined(folder)
    return combined


def plot_combined(folder: str | os.PathLike) -> list[Path]:
    """Redraw the figure of a folder ``combine`` wrote, from its stored table: every source on one rate-distortion
    plane, each in its own colour and named in the legend (``ibkit.plots.rate_distortion`` with ``by="source"``),
    as ``FOLDER/figures/rate_distortion.pdf`` and ``.png``; returns the paths. ``ibkit plot`` calls it."""
    from ibkit import plots

    fig = plots.rate_distortion(load(folder), by="source")
    return plots.save_figure(fig, Path(folder) / "figures", "rate_distortion", data=data_text(folder))


LOCK = ".lock"  # the advisory lock of a run folder (its content: who holds it)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the folder's advisory lock (``flock`` on ``FOLDER/.lock``) for the block, so that two ``ibkit run``s
    never train into one folder: the second is refused with a ValueError naming the holder. The file is removed as
    the block ends (a clean exit, an exception, Ctrl-C), so a finished folder holds none; the kernel releases the lock
    when its process ends in any other way (SIGKILL included), so the file a killed run leaves never blocks.

    The holder removes the file while it still holds the lock, and a process that locked a file which is then no
    longer the one at ``FOLDER/.lock`` (removed as it waited to check) tries again on the new one: two processes never
    both hold the lock of one folder."""
    import fcntl  # POSIX; imported here so that reading results works where it is missing

    folder = Path(folder)
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ValueError(f"{folder} is in use by another ibkit run ({holder}); wait for it to finish or "
                             "choose another --out") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        locked = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (locked.st_dev, locked.st_ino):
            break
        os.close(fd)  # the previous holder removed this file as it left: lock the one at the path now
    try:
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.write(fd, f"pid {os.getpid()} on {platform.node()}, since {since}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while the lock is held: no other process holds the file at this path
        os.close(fd)  # releases the lock
