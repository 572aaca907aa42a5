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
is ``ibkit.store``; this module only re-exports from it and from ``ibkit.compare``.
"""

from ibkit.compare import combine, plot_combined
from ibkit.store import (
    RunFolder,
    data_text,
    is_quick,
    load,
    load_model,
    read_manifest,
    side_table,
    write_findings,
)

__all__ = ["RunFolder", "load", "load_model", "side_table", "read_manifest", "data_text", "is_quick", "combine",
           "plot_combined", "write_findings"]
