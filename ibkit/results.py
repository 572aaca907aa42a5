"""Reading stored results: the functions a user calls on a run folder that ``ibkit run`` (or ``ibkit analyse``,
``ibkit compare``) wrote.

    import ibkit
    runs = ibkit.results.load("results/rate_distortion")                  # the tidy table: a row per run and split
    ibkit.results.side_table("results/information_flow", "probe_curve")  # a side table
    ibkit.results.read_manifest("results/rate_distortion")                # provenance: config, seeds, git, ...
    ibkit.results.load_model("results/rate_distortion", run_id)           # a run's trained model (its checkpoint)
    ibkit.results.combine(["mine", "results/rate_distortion"], out="both")  # one table and plane of several

An experiment's ``plot(run_dir, command=None)`` reads its tables with these and writes its notes with
``write_findings``. The store itself (records, tables, manifest, lock, checkpoints, provenance, the folder guard)
is ``ibkit.store``; each function here reads one folder by its path through a ``RunFolder``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ibkit.compare import combine, plot_combined
from ibkit.store import RunFolder

if TYPE_CHECKING:
    import pandas as pd

Folder = str | os.PathLike


def load(folder: Folder) -> pd.DataFrame:
    """The tidy table of a stored run folder: one row per run and split (``RunFolder.load``)."""
    return RunFolder(folder).load()


def side_table(folder: Folder, name: str) -> pd.DataFrame:
    """The side table ``name`` (``NAME.csv``: probe_curve, layers, history, ...) of a run folder, empty where the
    runs wrote none (``RunFolder.side_table``)."""
    return RunFolder(folder).side_table(name)


def load_model(folder: Folder, run_id: str):
    """The trained model of run ``run_id`` (its checkpoint), on the CPU (``RunFolder.load_model``)."""
    return RunFolder(folder).load_model(run_id)


def read_manifest(folder: Folder) -> dict | None:
    """A run folder's manifest: its experiment, config, seeds, data, git state, machine (``RunFolder.read_manifest``);
    None where there is none."""
    return RunFolder(folder).read_manifest()


def data_text(folder: Folder) -> str | None:
    """The data a run folder's runs read, in a few words for a figure or table ("digits, test split of 359 rows");
    None where the manifest does not say (``RunFolder.data_text``)."""
    return RunFolder(folder).data_text()


def is_quick(folder: Folder) -> bool:
    """Whether a folder holds a ``--quick`` run, not for citing (``RunFolder.is_quick``)."""
    return RunFolder(folder).is_quick()


def write_findings(folder: Folder, text: str, command: str | list[str] | None = None):
    """Write an experiment's generated ``findings.md`` into its run folder, naming the ``command`` that wrote it
    (``RunFolder.write_findings``); its path."""
    return RunFolder(folder).write_findings(text, command)


__all__ = ["RunFolder", "load", "load_model", "side_table", "read_manifest", "data_text", "is_quick", "combine",
           "plot_combined", "write_findings"]
