"""A run folder: ``records/`` (one JSON file per finished run: its rows), ``runs.csv`` (the tidy table assembled from
them: one row per run and split) and the side tables ``NAME.csv``, ``manifest.json`` (provenance), ``findings.md``,
``figures/``, ``checkpoints/`` and, while a run trains into it, its lock ``.lock``.

Every write is atomic (temp file, then rename), so a process killed at any instant leaves each file whole: at most the
runs in flight are lost. ``RunFolder`` reads and writes one folder; the functions below it are the same operations
on a folder given by its path (``load(folder)`` is ``RunFolder(folder).load()``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ibkit.atomic import atomic_open
from ibkit.config import all_knobs, text_fields
from ibkit.interface import RESULT_COLUMNS
from ibkit.models.config import ModelConfig
from ibkit.store.provenance import data_of, environment, git_state, quick_of, writer_command

if TYPE_CHECKING:
    import pandas as pd

RUNS = "runs.csv"
MANIFEST = "manifest.json"
RECORDS = "records"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"  # the advisory lock of a run folder (its content: who holds it)
REQUIRED = ("run_id", "kind", "split", "status")  # the columns without which a table is no ibkit results table


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


def schema_columns() -> tuple[str, ...]:
    """The results schema: ``RESULT_COLUMNS`` with a column per knob of every registered kind after latent_dim."""
    at = RESULT_COLUMNS.index("latent_dim") + 1
    return RESULT_COLUMNS[:at] + all_knobs() + RESULT_COLUMNS[at:]


def text_columns() -> tuple[str, ...]:
    """Columns read as text (never as numbers or NaN): the schema's and the registered configs' text fields."""
    return ("run_id", "kind", "split", "status", "error", "source", *text_fields())


def filled(df: pd.DataFrame) -> pd.DataFrame:
    """A results table with its gaps filled as stored tables read: a text column's by "", a config field left unset
    by its default (a run that left its network unset: "mlp")."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if isinstance(f.default, str)}
    df = df.fillna({c: v for c, v in defaults.items() if c in df})
    return df.fillna({c: "" for c in text_columns() if c in df})


class RunFolder:
    """One run folder, read and written: its run records, tables, manifest, findings, checkpoints and lock.

    A ``RunFolder`` is a path-like (``os.fspath``, ``Path(...)`` take it), so it stands wherever a folder's path
    does. It creates nothing until something is written.

    Args:
        path: the folder.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- run records and tables ----------------------------------------------------------------------------------

    def write_record(self, run_id: str, rows: list[dict], tables: dict[str, pd.DataFrame] | None = None) -> Path:
        """Store one finished run as ``records/RUN_ID.json``, replacing an earlier attempt's.

        Args:
            run_id: the run's id.
            rows: its rows of the results table (one per split).
            tables: the rows it adds to side tables: name -> DataFrame (e.g. a probe curve).

        Returns:
            the record's path.
        """
        record = {"rows": rows, "tables": {name: t.to_dict("records") for name, t in (tables or {}).items()}}
        path = self.path / RECORDS / f"{run_id}.json"
        atomic_write_text(path, json.dumps(record, default=_plain) + "\n")
        return path

    def records(self) -> list[dict]:
        """The run records in the order the runs finished; a ValueError names one that cannot be read.

        Returns:
            one dict per record: ``rows`` (its results rows) and ``tables`` (its side-table rows by name).

        Raises:
            ValueError: a record that is not readable JSON.
        """
        paths = sorted((self.path / RECORDS).glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        records = []
        for path in paths:
            try:
                records.append(json.loads(path.read_text()))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path} is not a readable run record ({e}); delete it to run that run "
                                 "again") from None
        return records

    def read_records(self) -> pd.DataFrame | None:
        """The results rows of every recorded run, or None if none is.

        Returns:
            the rows, unfilled, or None.
        """
        import pandas as pd

        rows = [row for record in self.records() for row in record["rows"]]
        return pd.DataFrame(rows) if rows else None

    def side_table(self, name: str) -> pd.DataFrame:
        """Side table ``name`` (e.g. "probe_curve"): the rows every recorded run added to it, else ``NAME.csv``, else
        an empty table.

        Args:
            name: the side table's name.

        Returns:
            its rows (text columns read as text).
        """
        import pandas as pd

        parts = [pd.DataFrame(r["tables"][name]) for r in self.records() if r["tables"].get(name)]
        if parts:
            return pd.concat(parts, ignore_index=True)
        path = self.path / f"{name}.csv"
        if not path.is_file():
            return pd.DataFrame()
        text = text_columns()
        return pd.read_csv(path, dtype={c: str for c in text}).fillna({c: "" for c in text})

    def write_runs(self, df: pd.DataFrame, lead: Sequence[str] = ()) -> Path:
        """Store the tidy table as ``runs.csv``: the ``lead`` columns (e.g. a combined table's ``source``), then the
        schema's (the knob columns after latent_dim), then the rest; returns its path.

        Args:
            df: the tidy table.
            lead: columns to put first.

        Returns:
            the path of runs.csv.
        """
        first = [*lead, *(c for c in schema_columns() if c in df.columns and c not in lead)]
        df = df[first + [c for c in df.columns if c not in first]]
        path = self.path / RUNS
        atomic_write_text(path, df.to_csv(index=False))
        return path

    def write_tables(self) -> None:
        """Assemble ``runs.csv`` and every side table's ``NAME.csv`` from the run records (atomic writes)."""
        self.write_runs(self.load())
        names = {name for record in self.records() for name in record["tables"]}
        for name in sorted(names):
            atomic_write_text(self.path / f"{name}.csv", self.side_table(name).to_csv(index=False))

    def load(self) -> pd.DataFrame:
        """The tidy table (one row per run and split): assembled from the run records, or read from ``runs.csv``
        where there are none (a folder copied without them). A FileNotFoundError where there is neither, a
        ValueError for a table that is not an ibkit results table.

        Returns:
            the table, its gaps filled (``filled``).

        Raises:
            FileNotFoundError: neither run records nor runs.csv.
            ValueError: an unreadable table, or one without the columns run_id, kind, split and status.
        """
        import pandas as pd

        df = self.read_records()
        path = self.path / (RECORDS if df is not None else RUNS)
        if df is None:
            if not path.is_file():
                raise FileNotFoundError(f"no results table at {path}; run an experiment into {self.path} first "
                                        "(ibkit run ...)")
            try:
                df = pd.read_csv(path, dtype={c: str for c in text_columns()})
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
                raise ValueError(f"{path} is not a readable results table ({e})") from None
        missing = [c for c in REQUIRED if c not in df]
        if missing:
            raise ValueError(f"{path} is not an ibkit results table: it lacks the columns {missing}")
        return _valid_upper(filled(df))

    def finished_run_ids(self) -> set[str]:
        """The run_ids stored here whose rows all have status "ok" (a resumed sweep skips them).

        Returns:
            the run ids; empty for a folder without results.
        """
        if not (self.path / RUNS).is_file() and not any((self.path / RECORDS).glob("*.json")):
            return set()
        df = self.load()
        ok = df.groupby("run_id")["status"].agg(lambda s: bool((s == "ok").all()))
        return set(ok[ok].index)

    # -- checkpoints ---------------------------------------------------------------------------------------------

    def checkpoint(self, run_id: str) -> Path:
        """The path of run ``run_id``'s checkpoint: ``checkpoints/RUN_ID.pt``.

        Args:
            run_id: the run's id.

        Returns:
            the path (the file may not exist).
        """
        return self.path / CHECKPOINTS / f"{run_id}.pt"

    def load_model(self, run_id: str):
        """The trained model of run ``run_id`` (its checkpoint), for a notebook's analysis; a ValueError names the
        runs that have a checkpoint where this one has none.

        Args:
            run_id: the run's id (the ``run_id`` column of ``load()``).

        Returns:
            the model, on the CPU (``ibkit.load_checkpoint``).

        Raises:
            ValueError: a run without a checkpoint here, naming those with one.
        """
        from ibkit.models import load_checkpoint

        path = self.checkpoint(run_id)
        if not path.is_file():
            known = sorted(p.stem for p in (self.path / CHECKPOINTS).glob("*.pt"))
            raise ValueError(f"run_id={run_id!r} has no checkpoint in {self.path}; runs with one: "
                             f"{', '.join(known) if known else 'none (checkpoints are not kept in git)'}")
        return load_checkpoint(path)

    # -- cleaning up ---------------------------------------------------------------------------------------------

    def remove_stale_temps(self) -> list[Path]:
        """Delete the temporary files (``.NAME.*.tmp``, ``.NAME.tmp.png``) that a writer killed mid-write (SIGKILL)
        left in the folder, its records, checkpoints and figures; the files they were to replace are whole. Call it
        only where no other process writes to the folder (a sweep resuming in it). Returns the paths removed.

        Returns:
            the paths removed.
        """
        stale = [p for sub in ("", RECORDS, CHECKPOINTS, "figures") for p in (self.path / sub).glob(".*.tmp*")
                 if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def clear(self) -> None:
        """Remove the tables, run records and generated notes (``--overwrite``); figures and checkpoints are
        rewritten as the new runs finish."""
        for path in (*self.path.glob("*.csv"), *self.path.glob("*.md"), self.path / MANIFEST,
                     *(self.path / RECORDS).glob("*")):
            path.unlink(missing_ok=True)

    # -- manifest and notes --------------------------------------------------------------------------------------

    def read_manifest(self) -> dict | None:
        """The manifest, or None when there is none. Read as JSON data, nothing executed; a ValueError for one that
        is not a JSON object.

        Returns:
            the manifest, or None.

        Raises:
            ValueError: a manifest that is not a JSON object.
        """
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a valid manifest (JSON): {e}") from None
        if not isinstance(manifest, dict):
            raise ValueError(f"{path} is not an ibkit manifest: expected a JSON object, got "
                             f"{type(manifest).__name__}")
        return manifest

    def write_manifest(self, **fields) -> Path:
        """Write ``manifest.json``: the given fields (experiment, config, seeds, times...) plus this process's
        command line (``sys.argv``), the git state (``git``: given, the state when the run started; else now, the
        folder itself excluded) and the environment; returns its path.

        Args:
            **fields: the manifest's fields; ``git`` replaces the git state read now.

        Returns:
            the path of manifest.json.
        """
        git = fields.pop("git", None) or git_state(exclude=self.path)
        manifest = {**fields, "command": sys.argv, "git": git, "environment": environment()}
        path = self.path / MANIFEST
        atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
        return path

    def data_text(self) -> str | None:
        """The data the manifest names, with its split (``ibkit.store.provenance.data_of``): "mnist, t10k split
        8,000/2,000 (test_fraction 0.2, seed 0)"; None without a manifest or data.

        Returns:
            the text, or None.
        """
        return data_of(self.read_manifest() or {})

    def is_quick(self) -> bool:
        """Whether the folder holds a quick run (``ibkit run --quick``): its manifest says ``quick``, or, without a
        manifest that says, its name ends in -quick (the default folder of a quick run).

        Returns:
            True for a quick run.
        """
        return quick_of(self.read_manifest() or {}, self.path)

    def write_findings(self, text: str, command: str | Sequence[str] | None = None) -> Path:
        """Write ``findings.md``: the experiment's generated ``text`` ("# title" first) with, under the title, the
        command that wrote it and, for a quick run (the manifest's ``quick``), that its numbers are not for citing.

        Args:
            text: the findings, a markdown title line first.
            command: the command writing them (``ibkit plot DIR``, as text or words); None: this process's
                (``ibkit.store.provenance.writer_command``).

        Returns:
            the path of findings.md.
        """
        manifest = self.read_manifest() or {}
        title, _, body = text.partition("\n")
        lines = [title, "", f"Written by `{writer_command(command)}` from the stored tables."]
        if manifest.get("quick"):
            lines[-1] += (" **A quick run (`--quick`): few epochs and seeds, a check that the pipeline works, not "
                          "numbers to cite.**")
        path = self.path / "findings.md"
        atomic_write_text(path, "\n".join(lines) + "\n" + body)
        return path

    # -- the lock ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's advisory lock (``flock`` on ``.lock``) for the block, so that two ``ibkit run``s never
        train into one folder: the second is refused with a ValueError naming the holder. The file is removed as the
        block ends (a clean exit, an exception, Ctrl-C), so a finished folder holds none; the kernel releases the
        lock when its process ends in any other way (SIGKILL included), so the file a killed run leaves never blocks.

        The holder removes the file while it still holds the lock, and a process that locked a file which is then no
        longer the one at ``.lock`` (removed as it waited to check) tries again on the new one: two processes never
        both hold the lock of one folder.

        Yields:
            nothing; the lock is held inside the block.

        Raises:
            ValueError: the folder locked by another process, naming it.
        """
        import fcntl  # POSIX; imported here so that reading results works where it is missing

        path = self.path / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise ValueError(f"{self.path} is in use by another ibkit run ({holder}); wait for it to finish or "
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


def _plain(value):
    """numpy scalars and the like as JSON numbers or strings."""
    return value.item() if hasattr(value, "item") else str(value)


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
