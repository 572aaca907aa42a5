"""The results store: run folders (``RunFolder``: run records, tables, manifest, findings, checkpoints, the lock),
their provenance (git state, environment, data, the writing command) and the folder guard of ``ibkit run``.

    folder = RunFolder("results/rate_distortion")
    folder.load()                     # the tidy table: one row per run and split
    folder.side_table("probe_curve")  # a side table
    folder.read_manifest()            # provenance
    folder.load_model(run_id)         # a run's trained model

Every write is atomic, so a process killed at any instant leaves each file whole. Code reads and writes a folder
through its ``RunFolder``; ``ibkit.results`` gives users the reading functions by a folder's path.
"""

from ibkit.store.folder import (
    CHECKPOINTS,
    LOCK,
    MANIFEST,
    RECORDS,
    REQUIRED,
    RUNS,
    RunFolder,
    atomic_write_text,
    filled,
    interrupts_deferred,
    schema_columns,
    text_columns,
)
from ibkit.store.guard import check_folder
from ibkit.store.provenance import (
    COMBINED,
    RUN_VARIABLES,
    data_of,
    data_record,
    environment,
    git_state,
    quick_of,
    writer_command,
)

__all__ = [
    "RunFolder",
    "RUNS",
    "MANIFEST",
    "RECORDS",
    "CHECKPOINTS",
    "LOCK",
    "REQUIRED",
    "COMBINED",
    "RUN_VARIABLES",
    "atomic_write_text",
    "interrupts_deferred",
    "schema_columns",
    "text_columns",
    "filled",
    "check_folder",
    "git_state",
    "environment",
    "data_record",
    "data_of",
    "quick_of",
    "writer_command",
]
