"""Run a grid of models: build, train, evaluate, and keep going when one fails.

Each run is a ``RunSpec`` (``ibkit.config``: a model kind, the config fields the grid sets, a seed and a label);
training settings travel as one ``TrainingConfig``. Every run becomes rows of the tidy results schema
(``ibkit.interface.RunRecord``), one per split; a run that diverges or raises becomes rows with its status and
error, never a stopped sweep.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn
from tqdm.auto import tqdm

from ibkit.batched import fit_many, models_per_batch
from ibkit.checks import resolve_device
from ibkit.config import RunSpec, TrainingConfig
from ibkit.data import Dataset
from ibkit.estimators.columns import registered_columns
from ibkit.executors import InProcess
from ibkit.interface import RunRecord
from ibkit.models import save_checkpoint
from ibkit.progress import Progress
from ibkit.store import RunFolder, interrupts_deferred
from ibkit.train import DivergenceError, TensorBoardCallback, fit, tensorboard_writer_class

if TYPE_CHECKING:
    import pandas as pd

TENSORBOARD = "tensorboard"  # the run folder's subfolder of TensorBoard event files, one folder per run id


Evaluate = Callable[[nn.Module, RunSpec], dict[str, dict]]  # (model, spec) -> {split: metrics (schema or extra)}
TABLES = "tables"  # evaluate's optional key: {name: DataFrame} rows of side tables (stored as NAME.csv)
HISTORY = "history"  # the side table of per-epoch learning curves (TrainingConfig's ``curves``)
Build = Callable[[RunSpec], nn.Module]  # spec -> an untrained model


@dataclass(frozen=True)
class GridContext:
    """What every training group of a sweep shares; sent once to each worker.

    Attributes:
        experiment: the experiment's name, written into every row.
        ds: the dataset: train on ``ds.train``, evaluate on its splits.
        evaluate: ``(model, spec) -> {split: metrics}`` of a trained model.
        build: ``spec -> model``, or None for ``spec.build``.
        training: the sweep's training settings.
        out_dir: the run folder, or None.
    """

    experiment: str
    ds: Dataset
    evaluate: Evaluate
    build: Build | None
    training: TrainingConfig
    out_dir: str | None = None


def run_grid(experiment: str, ds: Dataset, specs: Sequence[RunSpec], evaluate: Evaluate,
             training: TrainingConfig, *, out_dir: str | Path | None = None, build: Build | None = None,
             executor=None) -> pd.DataFrame:
    """Train every spec on ``ds.train`` and evaluate it; one row per run and split.

    Args:
        experiment: the experiment's name, the rows' ``experiment`` column.
        ds: the data; models train on ``ds.train``.
        specs: the runs (``RunSpec``), in the order they are reported.
        evaluate: ``evaluate(model, spec)`` returns {split: {column: value}}; schema columns fill the record, the
            rest become extra columns; under the key "tables" it may add {name: DataFrame} rows to side tables,
            stored as ``NAME.csv``. Every registered estimator column (``ibkit.registry.COLUMNS``) is added per split
            where ``ds`` has that split.
        training: the settings (``TrainingConfig``; an experiment's config gives its own). With ``batched`` the
            specs that differ only in knobs and seed train together as one batched model (``fit_many``, the same
            results as one at a time up to float32 rounding; ``train_seconds`` is then the group's training wall
            time divided equally among its models). With ``curves`` each run's per-epoch history, with the test
            split's mean loss, rate and distortion after every epoch (``fit``'s ``x_monitor``), becomes rows of the
            side table ``history.csv`` (column run_id). ``log="tensorboard"`` (needs ``out_dir`` and the
            ``tensorboard`` extra) writes each run's per-epoch training metrics as TensorBoard scalars into
            ``out_dir/tensorboard/RUN_ID/`` (``TensorBoardCallback``), replacing an earlier attempt's.
        out_dir: the run folder. Each run, as it comes back, saves its checkpoint and then its record
            (``ibkit.store``), and ``runs.csv`` is reassembled, so a fault (even SIGKILL) loses at most the runs in
            flight; runs that ``out_dir`` already holds as finished ("ok") are kept and skipped, and the others
            (failed, diverged, never finished) are run again, each record replacing its earlier attempt's.
        build: ``build(spec)`` makes a run's untrained model (default: ``spec.build(ds)``).
        executor: where the training groups run (``ibkit.executors``: this process by default, worker processes
            or a Dask cluster, which need ``evaluate`` and ``build`` picklable: module-level functions or partials).

    Returns:
        the rows (``RunRecord.to_row``) of every run, those already finished in ``out_dir`` included.

    Progress: a bar on a terminal and, on the "ibkit" log, a line at least every 30 s for the sweep, for each
    training group's epochs and for each group's evaluations (``ibkit.progress``).
    """
    import pandas as pd

    if training.log == "tensorboard":
        if out_dir is None:
            raise ValueError("log='tensorboard' writes event files into the run folder: give out_dir (ibkit run "
                             "--out DIR), or use log='none'")
        tensorboard_writer_class()  # installed, or refused here, before anything trains
    ids = {spec.run_id for spec in specs}
    rows: list[dict] = []
    done: set[str] = set()
    folder = None if out_dir is None else RunFolder(out_dir)
    if folder is not None:
        folder.remove_stale_temps()  # what a killed earlier attempt was writing: never read, now gone
        done = folder.finished_run_ids() & ids  # rows of other grids are dropped
        rows = folder.load().query("run_id in @done").to_dict("records") if done else []
    todo = [spec for spec in specs if spec.run_id not in done]
    if done:
        print(f"{len(done)} of {len(ids)} runs already finished in {out_dir}; "
              f"{'nothing to train' if not todo else f'training the other {len(todo)}'}", file=sys.stderr)
    context = GridContext(experiment=experiment, ds=ds, evaluate=evaluate, build=build, training=training,
                          out_dir=None if out_dir is None else str(out_dir))
    executor = executor or InProcess()
    groups = _groups(todo, training, ds, build, workers=executor.workers)
    counts = dict(done=0, failed=0)
    with Progress(experiment, len(todo), "runs") as bar:  # a bar on a terminal, a log line every 30 s
        for group, result in executor.run(train_group, context, groups):
            if isinstance(result, BaseException):  # the group's worker failed (and its retries, if any)
                error = f"the worker running it failed: {type(result).__name__}: {result}"
                result = [(spec, *_failed(experiment, ds, spec, status="failed", error=error), None) for spec in group]
            for spec, run_rows, tables, model in result:
                rows += run_rows
                tqdm.write(run_summary(run_rows), file=sys.stderr)
                counts["done" if all(r["status"] == "ok" for r in run_rows) else "failed"] += 1
                if folder is not None:  # the checkpoint first: a record always has its model; Ctrl-C waits
                    with interrupts_deferred():
                        if model is not None:
                            save_checkpoint(model, folder.checkpoint(spec.run_id))
                        folder.write_record(spec.run_id, run_rows, tables)
                        folder.write_tables()
            bar.set_postfix(**counts, running=executor.running())
            bar.update(len(group))
    return pd.DataFrame(rows)


def run_summary(run_rows: list[dict]) -> str:
    """One line for a finished run: its id, status, training seconds and headline numbers (test split, nats).

    Args:
        run_rows: the run's rows, one per split.

    Returns:
        the line.
    """
    row = next((r for r in run_rows if r.get("split") == "test"), run_rows[0])
    if row["status"] != "ok":
        return f"{row['run_id']}: {row['status']} ({str(row.get('error', ''))[:100]})"
    numbers = ", ".join(f"{k} {row[k]:.4g}" for k in ("rate", "distortion", "elbo")
                        if isinstance(row.get(k), float) and math.isfinite(row[k]))
    return f"{row['run_id']}: {row.get('train_seconds', math.nan):.1f} s; {row['split']}: {numbers or 'done'}"


GroupResult = list[tuple[RunSpec, list[dict], dict, nn.Module | None]]  # per spec: rows, side tables, model or None


def _build(context: GridContext, spec: RunSpec) -> nn.Module:
    """The spec's untrained model: from the grid's ``build`` hook (checked against the spec), else ``spec.build``."""
    if context.build is None:
        return spec.build(context.ds)
    model = context.build(spec)
    spec.check_built(model)
    return model


def train_group(context: GridContext, group: list[RunSpec]) -> GroupResult:
    """Build, train (as one batched model when there are several) and evaluate a group of specs, wherever it
    runs. Per spec: its rows, its side-table rows and the trained model (None where the run failed).

    Args:
        context: what the sweep's groups share.
        group: the specs trained together.

    Returns:
        per spec: (spec, rows, side tables, model or None).
    """
    ds = context.ds
    out: GroupResult = []
    models: list[tuple[RunSpec, nn.Module]] = []
    for spec in group:  # a spec that cannot be built fails alone
        try:
            models.append((spec, _build(context, spec)))
        except Exception as e:
            out.append((spec, *_failed(context.experiment, ds, spec, status="failed", error=f"{type(e).__name__}: {e}"),
                        None))
    start = time.perf_counter()
    try:
        with _training_log(context, [spec for spec, _ in models]) as callbacks:
            trained = _train([m for _, m in models], [spec.seed for spec, _ in models], ds.train, context.training,
                             trainable=group[0].trainable, x_monitor=ds.test if context.training.curves else None,
                             callbacks=callbacks)
    except Exception as e:  # a fault of the whole group: each of its runs fails with it
        trained = [e] * len(models)
    seconds = (time.perf_counter() - start) / max(1, len(models))
    with Progress("evaluating", len(models), "runs") as bar:
        for (spec, model), outcome in zip(models, trained, strict=True):
            bar.set_postfix(run=spec.run_id)
            out.append(_outcome(context, spec, model, outcome, seconds=seconds))
            bar.update(1)
    return out


@contextlib.contextmanager
def _training_log(context: GridContext, specs: list[RunSpec]) -> Iterator[list]:
    """The training callbacks of a group's runs: none, or (``log="tensorboard"``) one ``TensorBoardCallback`` with a
    folder per run, out_dir/tensorboard/RUN_ID (an earlier attempt's event files there removed first), closed
    after training."""
    if context.training.log != "tensorboard" or context.out_dir is None or not specs:
        yield []
        return
    folders = [Path(context.out_dir) / TENSORBOARD / spec.run_id for spec in specs]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)  # the attempt this one replaces, as its record is replaced
    with TensorBoardCallback(folders) as callback:
        yield [callback]


def _outcome(context: GridContext, spec: RunSpec, model: nn.Module, outcome, *, seconds: float) -> tuple:
    """One run of a trained group: its rows, side tables and model (evaluated), or its failed rows."""
    ds = context.ds
    if isinstance(outcome, DivergenceError):
        return spec, *_failed(context.experiment, ds, spec, status="diverged", error=str(outcome),
                              extra=_last_finite(outcome)), None
    if isinstance(outcome, Exception):
        error = f"{type(outcome).__name__}: {outcome}"
        return spec, *_failed(context.experiment, ds, spec, status="failed", error=error), None
    run_rows, tables = _evaluated(context, spec, model, seconds)
    if context.training.curves:
        tables[HISTORY] = outcome.assign(run_id=spec.run_id)
    ok = all(r["status"] == "ok" for r in run_rows)
    return spec, run_rows, tables, model.cpu() if ok else None


def _train(models: list, seeds: list[int], x, training: TrainingConfig, **run) -> list:
    """Each model's history, or the ``DivergenceError`` that stopped it: one batched fit, or a lone ``fit``."""
    if len(models) > 1:
        return fit_many(models, x, training, seed=seeds, max_models=len(models), **run)
    try:
        return [fit(model, x, training, seed=seed, **run) for model, seed in zip(models, seeds, strict=True)]
    except DivergenceError as e:
        return [e]


def _groups(specs: list[RunSpec], training: TrainingConfig, ds: Dataset, build: Build | None, *,
            workers: int = 1) -> list[list[RunSpec]]:
    """The specs in training groups: one per spec, or (batched) one per architecture, split to fit memory. With
    several workers the batches are also cut into near-equal parts of at most 1/(4 workers) of the runs, and the
    groups go largest first (weights times runs; aggressive trainings, one model each, before all), so that no
    worker is left running a whole architecture's batch alone at the end."""
    if not training.batched:
        return sorted(([spec] for spec in specs), key=lambda group: not group[0].get("aggressive"))
    by_architecture: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_architecture.setdefault(spec.batch_key(), []).append(spec)
    share = math.ceil(len(specs) / (4 * workers)) if workers > 1 else len(specs)
    device = resolve_device(training.device)
    sized = []
    for group in by_architecture.values():
        try:
            probe = build(group[0]) if build else group[0].build(ds)
            size = models_per_batch(probe, training.batch_size, device)
            weights = sum(p.numel() for p in probe.parameters())
        except Exception:  # building fails again, run by run, with its error in the table
            size, weights = 1, 0
        alone = bool(group[0].get("aggressive"))  # fit_many trains these one by one: one per group, in parallel
        parts = len(group) if alone else math.ceil(len(group) / max(1, min(size, share)))
        sized += [(group[i::parts], weights) for i in range(parts)]  # near-equal parts, seeds spread over them
    sized.sort(key=lambda g: (bool(g[0][0].get("aggressive")), g[1] * len(g[0])), reverse=True)
    return [group for group, _ in sized]


def _failed(experiment: str, ds: Dataset, spec: RunSpec, *, status: str, error: str,
            extra: dict | None = None) -> tuple[list[dict], dict]:
    base, setting = _schema(experiment, ds, spec)
    return [RunRecord(**base, split=s, status=status, error=error, extra={**setting, **(extra or {})}).to_row()
            for s in ("train", "test")], {}


def _schema(experiment: str, ds: Dataset, spec: RunSpec) -> tuple[dict, dict]:
    """The schema fields a spec fixes, and its setting columns (the network, where it names one)."""
    columns = spec.columns()
    setting = columns.pop("network")
    return dict(experiment=experiment, dataset=ds.name, **columns), setting


def _last_finite(error: DivergenceError) -> dict:
    """The columns of a diverged run: the epoch its loss became NaN or infinite, and the training means (loss,
    rate, distortion) of the last epoch before it (NaN when it diverged in the first)."""
    rows = error.history
    return dict(diverged_epoch=error.epoch, **{f"last_train_{k}": float(rows[k].iloc[-1]) if len(rows) else math.nan
                                               for k in ("loss", "rate", "distortion")})


def _evaluated(context: GridContext, spec: RunSpec, model: nn.Module, seconds: float) -> tuple[list[dict], dict]:
    """The rows and side tables of one trained model (with the registered estimator columns), or its failed rows if
    evaluating it fails."""
    ds = context.ds
    base, setting = _schema(context.experiment, ds, spec)
    try:
        rows, result = [], dict(context.evaluate(model, spec))
        tables = result.pop(TABLES, {})
        for split, metrics in result.items():
            metrics = {**metrics, **registered_columns(model, getattr(ds, split, None), spec.seed)}
            known = {k: v for k, v in metrics.items() if k in RunRecord.__dataclass_fields__}
            extra = {**setting, **{k: v for k, v in metrics.items() if k not in known}}
            rows.append(RunRecord(**base, split=split, train_seconds=seconds, **known, extra=extra).to_row())
        return rows, tables
    except Exception as e:  # a failed cell is a row, never a stopped sweep
        return _failed(context.experiment, ds, spec, status="failed", error=f"{type(e).__name__}: {e}")

