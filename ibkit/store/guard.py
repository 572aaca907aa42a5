"""The folder guard: before ``ibkit run`` writes anything, its ``--out`` must be able to take the run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ibkit.store.folder import MANIFEST, RUNS, RunFolder


def check_folder(folder: str | os.PathLike, experiment: str, config: dict, *, overwrite: bool,
                 defaults: dict | None = None, grows: Sequence[str] = ()) -> Path:
    """Make sure ``folder`` can take this run: a folder (not a file), writable, and not holding the results of a
    different experiment or config unless ``overwrite``. The same experiment and config resume: the sweep skips the
    runs that finished. Creates nothing (a refused command leaves no trace).

    Args:
        folder: the run folder (``--out``); it need not exist yet.
        experiment: the experiment's name, as the manifest stores it.
        config: the run's config as a dict (``dataclasses.asdict``).
        overwrite: replace results of another experiment or config (``--overwrite``).
        defaults: the experiment's default config: a field the stored config lacks (one the experiment gained
            since) counts as its value here; one it has that the config no longer has is ignored.
        grows: the fields (the grid's lists: betas, seeds) that may gain values, so that a finished sweep grows
            without retraining what it holds; they may not lose any.

    Returns:
        the folder as a Path; a ValueError says why it cannot take the run and what to do.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder; pick a folder path")
    manifest = RunFolder(folder).read_manifest() if folder.is_dir() else None
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


__all__ = ["check_folder"]
