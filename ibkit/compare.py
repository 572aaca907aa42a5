"""``ibkit compare``: several stored folders (``ibkit analyse`` reports, ``ibkit run`` folders, earlier combinations)
as one table and one rate-distortion plane, stored as a folder that ``ibkit plot`` and ``ibkit table`` read as they
read a run folder."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ibkit.store import COMBINED, MANIFEST, RUNS, RunFolder, filled

if TYPE_CHECKING:
    import pandas as pd


def combine(dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, *,
            overwrite: bool = False) -> pd.DataFrame:
    """Several stored folders as one table with a ``source`` column: each row's folder name, which tells the sources
    apart (an earlier combination's rows keep theirs beneath it: "outer/inner").

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

    Raises:
        ValueError: no folders, a folder without runs.csv or manifest.json, two sources of one name, or an ``out``
            that is a source, lies inside or holds one, is a file, or holds files without ``overwrite``.
    """
    import pandas as pd

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
    manifests = [RunFolder(folder).read_manifest() for folder in folders]
    parts = []
    for name, folder in zip(names, folders, strict=True):
        table = RunFolder(folder).load()
        inner = table.pop("source").astype(str) if "source" in table else None  # an earlier combination's sources
        table.insert(0, "source", name if inner is None else name + "/" + inner)
        parts.append(table)
    combined = filled(pd.concat(parts, ignore_index=True))
    if out is not None:
        store = RunFolder(out)
        if overwrite:
            store.clear()
        store.path.mkdir(parents=True, exist_ok=True)
        store.write_runs(combined, lead=("source",))
        sources = [{"source": name, "folder": str(d), "manifest": manifest}
                   for name, d, manifest in zip(names, dirs, manifests, strict=True)]
        store.write_manifest(experiment=COMBINED, sources=sources,
                             written=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
        plot_combined(store.path)
    return combined


def plot_combined(folder: str | os.PathLike) -> list[Path]:
    """Redraw the figure of a folder ``combine`` wrote, from its stored table: every source on one rate-distortion
    plane, each in its own colour and named in the legend (``ibkit.plots.rate_distortion`` with ``by="source"``),
    as ``FOLDER/figures/rate_distortion.pdf`` and ``.png``; returns the paths. ``ibkit plot`` calls it.

    Args:
        folder: a folder ``combine`` wrote.

    Returns:
        the paths of the figure's files.
    """
    from ibkit import plots

    store = RunFolder(folder)
    fig = plots.rate_distortion(store.load(), by="source")
    return plots.save_figure(fig, store.path / "figures", "rate_distortion", data=store.data_text())


__all__ = ["combine", "plot_combined"]
