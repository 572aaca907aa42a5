"""The results store: run folders (``RunFolder``: run records, tables, manifest, findings, checkpoints, the lock),
their provenance (git state, environment, data, the writing command) and the folder guard of ``ibkit run``.

    folder = RunFolder("results/rate_distortion")
    folder.load()                     # the tidy table: one row per run and split
    folder.side_table("probe_curve")  # a side table
    folder.read_manifest()            # provenance
    folder.load_model(run_id)         # a run's trained model

Every write is atomic, so a process killed at any instant leaves each file whole. ``ibkit.results`` re-exports the
reading functions users call.
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
    clear,
    data_text,
    filled,
    finished_run_ids,
    folder_lock,
    interrupts_deferred,
    is_quick,
    load,
    load_model,
    read_manifest,
    read_records,
    remove_stale_temps,
    schema_columns,
    side_table,
    text_columns,
    write_findings,
    write_manifest,
    write_record,
    write_runs,
    write_tables,
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
    "load",
    "load_model",
    "side_table",
    "read_records",
    "read_manifest",
    "data_text",
    "is_quick",
    "finished_run_ids",
    "write_record",
    "write_runs",
    "write_tables",
    "write_manifest",
    "write_findings",
    "remove_stale_temps",
    "clear",
    "folder_lock",
    "check_folder",
    "git_state",
    "environment",
    "data_record",
    "data_of",
    "quick_of",
    "writer_command",
]
