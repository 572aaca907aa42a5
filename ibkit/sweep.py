"""Run a grid of model configurations: build, train, evaluate, and keep going when one fails.

Each spec is a dict of ``build_model`` options (kind, latent_dim, hidden, beta, noise, sparsity, code_bound,
seed). Every run becomes rows of the tidy results schema (``ibkit.interface.RunRecord``), one per split; a run
that diverges or raises becomes rows with its status and error, never a stopped sweep.
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

import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from ibkit.batched import fit_many, models_per_batch
from ibkit.checks import check_choice
from ibkit.data import Dataset
from ibkit.executors import InProcess
from ibkit.interface import RunRecord
from ibkit.models import build_model, save_checkpoint
from ibkit.models.config import field_defaults, id_fields, knob_fields
from ibkit.models.registry import all_knobs, knob_names, model_class
from ibkit.progress import Progress
from ibkit.results import (
    CHECKPOINTS,
    finished_run_ids,
    interrupts_deferred,
    load,
    remove_stale_temps,
    write_record,
    write_tables,
)
from ibkit.train import LOGS, DivergenceError, TensorBoardCallback, fit, resolve_device, tensorboard_writer_class

LABEL = "label"  # a spec's key that enters its run id and not its model config
TENSORBOARD = "tensorboard"  # the run folder's subfolder of TensorBoard event files, one folder per run id


def run_id(spec: dict) -> str:
    """A readable id, unique within a grid, from the kind's config: the kind, a posterior family other than the
    default, then each field that enters run ids (``latent_dim`` as d, the knobs, fields with an ``id`` in their
    metadata; a tuple joined by "x") that the spec sets, and the seed: 'vae-d8-beta0.5-seed0',
    'vae-iaf-d8-beta1.0-seed2', 'noisy_ae-d8-noise0.2-boundtanh-seed0', 'hvae-d12-beta1.0-layers8x4-bottom_up-seed0'.
    A spec's ``label`` (not a config field: what sets a run apart from another of the same config in one grid, e.g.
    the frozen decoder it trains on) comes before the seed: 'vae-full-d8-beta1.0-frozen-seed0'."""
    config = model_class(spec["kind"]).Config
    family = spec.get("posterior", field_defaults(config).get("posterior"))
    lead = "" if family == field_defaults(config).get("posterior") else f"-{family}"
    parts = "".join(f"-{short}{_id_text(spec[name])}" for name, short in id_fields(config).items() if name in spec)
    label = f"-{spec[LABEL]}" if spec.get(LABEL) else ""
    return f"{spec['kind']}{lead}{parts}{label}-seed{spec.get('seed', 0)}"


def _id_text(value) -> str:
    """A field's value as a run id writes it: a tuple as its entries joined by "x" ((8, 4) -> "8x4")."""
    return "x".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


IMAGE_DATASETS = ("digits", "mnist")  # the datasets a convolutional network can read (square single-channel images)


def network_fields(network: str, channels: tuple[int, ...], dataset: str) -> dict:
    """The model fields an experiment's ``network`` setting adds to each spec: none for "mlp" (MLP run ids stay as
    they were), ``network="conv"`` and ``channels`` for convolutional networks, which need image data."""
    check_choice("network", network, ("mlp", "conv"))
    if network == "mlp":
        return {}
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"network='conv' needs image data (dataset {' or '.join(IMAGE_DATASETS)}); got "
                         f"dataset={dataset!r}")
    if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
        raise ValueError(f"channels={channels!r} must be one or more positive channel counts, e.g. 32,64")
    return {"network": "conv", "channels": tuple(channels)}


def setting_columns(spec: dict) -> dict:
    """Columns of a run's row that its spec sets beside the schema's: the network, where the spec names one (a run
    id has it, so the table does too; ``results.load`` reads a missing one as the default, "mlp")."""
    return {"network": spec["network"]} if "network" in spec else {}


def schema_fields(experiment: str, dataset: str, spec: dict) -> dict:
    """The schema columns a spec fixes: its config's posterior family ("" for a kind without one), latent_dim and a
    value for every registered knob (the spec's, else the config's default; NaN where the kind has no such knob)."""
    config = model_class(spec["kind"]).Config
    values = {**field_defaults(config), **spec}
    knobs = {k: values.get(k, math.nan) if k in knob_fields(config) else math.nan for k in all_knobs()}
    return dict(experiment=experiment, run_id=run_id(spec), dataset=dataset, kind=spec["kind"],
                posterior=values.get("posterior", ""), latent_dim=spec["latent_dim"], knobs=knobs,
                seed=spec.get("seed", 0))


Evaluate = Callable[[object, dict], dict[str, dict]]  # (model, spec) -> {split: metrics (schema or extra)}
TABLES = "tables"  # evaluate's optional key: {name: DataFrame} rows of side tables (stored as NAME.csv)
HISTORY = "history"  # the side table of per-epoch learning curves (run_grid's ``curves``)
Build = Callable[[dict], nn.Module]  # spec -> an untrained model


def _check_built(model, spec: dict) -> None:
    """A model from a ``build`` hook must be the run its spec names: every knob the spec sets, as set."""
    config = getattr(model, "config", None)
    wrong = {k: (getattr(config, k), v) for k, v in spec.items() if hasattr(config, k) and getattr(config, k) != v}
    if wrong:
        raise ValueError("the built model differs from its spec: " +
                         ", ".join(f"{k}={got!r} (spec: {want!r})" for k, (got, want) in wrong.items()))


@dataclass(frozen=True)
class GridContext:
    """What every training group of a sweep shares; sent once to each worker."""

    experiment: str
    ds: Dataset
    evaluate: Evaluate
    build: Build | None
    epochs: int
    batch_size: int
    lr: float
    device: str
    trainable: str
    curves: bool = False
    log: str = "none"  # "tensorboard": each run's epochs as TensorBoard scalars under out_dir/tensorboard/RUN_ID
    out_dir: str | None = None


def run_grid(experiment: str, ds: Dataset, specs: Sequence[dict], evaluate: Evaluate, *, epochs: int,
             batch_size: int = 128, lr: float = 1e-3, device: str = "auto",
             out_dir: str | Path | None = None, build: Build | None = None, trainable: str = "all",
             batched: bool = True, executor=None, curves: bool = False, log: str = "none") -> pd.DataFrame:
    """Train every spec on ``ds.train`` and evaluate it; one row per run and split.

    Models come from ``build(spec)`` (default: ``build_model`` with the dataset's input size and likelihood)
    and train the parts ``trainable`` names (see ``fit``). With ``batched`` the specs that differ only in
    beta, noise, sparsity and seed train together as one batched model (``fit_many``, the same results as one
    at a time up to float32 rounding; ``train_seconds`` is then the group's training wall time divided equally
    among its models, not a run's own). ``evaluate(model, spec)`` returns {split: {column: value}}; schema columns
    fill the record, the rest become extra columns; under the key "tables" it may add {name: DataFrame} rows to side
    tables, stored as ``NAME.csv``. With
    ``curves`` each run's per-epoch history, with the test split's mean loss, rate and distortion after every epoch
    (``fit``'s ``x_monitor``), becomes rows of the side table ``history.csv`` (column run_id).
    The groups run on ``executor`` (``ibkit.executors``: this process by default, worker processes or a Dask
    cluster, which need ``evaluate`` and ``build`` picklable: module-level functions or partials of them).
    With ``out_dir`` each run, as it comes back, saves its checkpoint and then its record (``ibkit.results``),
    and ``runs.csv`` is reassembled, so a fault (even SIGKILL) loses at most the runs in flight; runs that
    ``out_dir`` already holds as finished ("ok") are kept and skipped, and the others (failed, diverged, never
    finished) are run again, each record replacing its earlier attempt's.

    ``log="tensorboard"`` (needs ``out_dir`` and the ``tensorboard`` extra) writes each run's per-epoch training
    metrics, as ``fit`` returns them, as TensorBoard scalars into ``out_dir/tensorboard/RUN_ID/``
    (``TensorBoardCallback``), replacing an earlier attempt's; ``tensorboard --logdir OUT/tensorboard`` shows them.
    Progress: a bar on a terminal and, on the "ibkit" log, a line at least every 30 s for the sweep, for each
    training group's epochs and for each group's evaluations (``ibkit.progress``).
    """
    check_choice("log", log, LOGS)
    if log == "tensorboard":
        if out_dir is None:
            raise ValueError("log='tensorboard' writes event files into the run folder: give out_dir (ibkit run "
                             "--out DIR), or use log='none'")
        tensorboard_writer_class()  # installed, or refused here, before anything trains
    ids = {run_id(spec) for spec in specs}
    rows: list[dict] = []
    done: set[str] = set()
    if out_dir is not None:
        remove_stale_temps(out_dir)  # what a killed earlier attempt was writing: never read, now gone
        done = finished_run_ids(out_dir) & ids  # rows of other grids are dropped
        rows = load(out_dir).query("run_id in @done").to_dict("records") if done else []
    todo = [spec for spec in specs if run_id(spec) not in done]
    if done:
        print(f"{len(done)} of {len(ids)} runs already finished in {out_dir}; "
              f"{'nothing to train' if not todo else f'training the other {len(todo)}'}", file=sys.stderr)
    context = GridContext(experiment, ds, evaluate, build, epochs, batch_size, lr, str(device), trainable, curves,
                          log, None if out_dir is None else str(out_dir))
    executor = executor or InProcess()
    groups = _groups(todo, batched, ds, batch_size, resolve_device(device), build, executor.workers)
    counts = dict(done=0, failed=0)
    with Progress(experiment, len(todo), "runs") as bar:  # a bar on a terminal, a log line every 30 s
        for group, result in executor.run(train_group, context, groups):
            if isinstance(result, BaseException):  # the group's worker failed (and its retries, if any)
                error = f"the worker running it failed: {type(result).__name__}: {result}"
                result = [(spec, *_failed(experiment, ds, spec, "failed", error), None) for spec in group]
            for spec, run_rows, tables, model in result:
                rows += run_rows
                tqdm.write(run_summary(run_rows), file=sys.stderr)
                counts["done" if all(r["status"] == "ok" for r in run_rows) else "failed"] += 1
                if out_dir is not None:  # the checkpoint first: a record always has its model; Ctrl-C waits
                    with interrupts_deferred():
                        if model is not None:
                            save_checkpoint(model, Path(out_dir) / CHECKPOINTS / f"{run_id(spec)}.pt")
                        write_record(out_dir, run_id(spec), run_rows, tables)
                        write_tables(out_dir)
            bar.set_postfix(**counts, running=executor.running())
            bar.update(len(group))
    return pd.DataFrame(rows)


def run_summary(run_rows: list[dict]) -> str:
    """One line for a finished run: its id, status, training seconds and headline numbers (test split, nats)."""
    row = next((r for r in run_rows if r.get("split") == "test"), run_rows[0])
    if row["status"] != "ok":
        return f"{row['run_id']}: {row['status']} ({str(row.get('error', ''))[:100]})"
    numbers = ", ".join(f"{k} {row[k]:.4g}" for k in ("rate", "distortion", "elbo")
                        if isinstance(row.get(k), float) and math.isfinite(row[k]))
    return f"{row['run_id']}: {row.get('train_seconds', math.nan):.1f} s; {row['split']}: {numbers or 'done'}"


GroupResult = list[tuple[dict, list[dict], dict, nn.Module | None]]  # per spec: rows, side tables, model or None


def train_group(context: GridContext, group: list[dict]) -> GroupResult:
    """Build, train (as one batched model when there are several) and evaluate a group of specs, wherever it
    runs. Per spec: its rows, its side-table rows and the trained model (None where the run failed)."""
    ds = context.ds
    out: GroupResult = []
    models: list[tuple[dict, nn.Module]] = []
    for spec in group:  # a spec that cannot be built fails alone
        try:
            if context.build:
                model = context.build(spec)
            else:
                built = build_model(input_dim=ds.input_dim, likelihood=ds.likelihood, **config_of(spec))
                if built.STARTS_AT_MARGINAL:  # autoencoders: their codes would otherwise be pushed to one corner
                    built.start_at_marginal(ds.train)
                model = built
            _check_built(model, spec)
            models.append((spec, model))
        except Exception as e:
            out.append((spec, *_failed(context.experiment, ds, spec, "failed", f"{type(e).__name__}: {e}"), None))
    start = time.perf_counter()
    try:
        with _training_log(context, [spec for spec, _ in models]) as callbacks:
            trained = _train([m for _, m in models], [spec.get("seed", 0) for spec, _ in models], ds.train,
                             epochs=context.epochs, batch_size=context.batch_size, lr=context.lr,
                             device=context.device, trainable=context.trainable,
                             x_monitor=ds.test if context.curves else None, callbacks=callbacks)
    except Exception as e:  # a fault of the whole group: each of its runs fails with it
        trained = [e] * len(models)
    seconds = (time.perf_counter() - start) / max(1, len(models))
    with Progress("evaluating", len(models), "runs") as bar:
        for (spec, model), outcome in zip(models, trained, strict=True):
            bar.set_postfix(run=run_id(spec))
            out.append(_outcome(context, spec, model, outcome, seconds))
            bar.update(1)
    return out


@contextlib.contextmanager
def _training_log(context: GridContext, specs: list[dict]) -> Iterator[list]:
    """The training callbacks of a group's runs: none, or (``log="tensorboard"``) one ``TensorBoardCallback`` with a
    folder per run, out_dir/tensorboard/RUN_ID (an earlier attempt's event files there removed first), closed
    after training."""
    if context.log != "tensorboard" or context.out_dir is None or not specs:
        yield []
        return
    folders = [Path(context.out_dir) / TENSORBOARD / run_id(spec) for spec in specs]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)  # the attempt this one replaces, as its record is replaced
    with TensorBoardCallback(folders) as callback:
        yield [callback]


def _outcome(context: GridContext, spec: dict, model: nn.Module, outcome, seconds: float) -> tuple:
    """One run of a trained group: its rows, side tables and model (evaluated), or its failed rows."""
    ds = context.ds
    if isinstance(outcome, DivergenceError):
        return spec, *_failed(context.experiment, ds, spec, "diverged", str(outcome), _last_finite(outcome)), None
    if isinstance(outcome, Exception):
        error = f"{type(outcome).__name__}: {outcome}"
        return spec, *_failed(context.experiment, ds, spec, "failed", error), None
    run_rows, tables = _evaluated(context.experiment, ds, spec, model, context.evaluate, seconds)
    if context.curves:
        tables[HISTORY] = outcome.assign(run_id=run_id(spec))
    ok = all(r["status"] == "ok" for r in run_rows)
    return spec, run_rows, tables, model.cpu() if ok else None


def config_of(spec: dict) -> dict:
    """The spec's model config fields: all but its ``label``."""
    return {k: v for k, v in spec.items() if k != LABEL}


def _train(models: list, seeds: list[int], x, **options) -> list:
    """Each model's history, or the ``DivergenceError`` that stopped it: one batched fit, or a lone ``fit``."""
    if len(models) > 1:
        return fit_many(models, x, seed=seeds, max_models=len(models), **options)
    try:
        return [fit(model, x, seed=seed, **options) for model, seed in zip(models, seeds, strict=True)]
    except DivergenceError as e:
        return [e]


def _groups(specs: list[dict], batched: bool, ds: Dataset, batch_size: int, device, build,
            workers: int = 1) -> list[list[dict]]:
    """The specs in training groups: one per spec, or (batched) one per architecture, split to fit memory. With
    several workers the batches are also cut into near-equal parts of at most 1/(4 workers) of the runs, and the
    groups go largest first (weights times runs; aggressive trainings, one model each, before all), so that no
    worker is left running a whole architecture's batch alone at the end."""
    if not batched:
        return sorted(([spec] for spec in specs), key=lambda group: not group[0].get("aggressive"))
    by_architecture: dict[str, list[dict]] = {}
    for spec in specs:
        varying = {*knob_names(spec["kind"]), "seed"}  # what may differ within one batch
        key = repr(sorted((k, v) for k, v in spec.items() if k not in varying))
        by_architecture.setdefault(key, []).append(spec)
    share = math.ceil(len(specs) / (4 * workers)) if workers > 1 else len(specs)
    sized = []
    for group in by_architecture.values():
        try:
            probe = build(group[0]) if build else build_model(input_dim=ds.input_dim, likelihood=ds.likelihood,
                                                               **config_of(group[0]))
            size, weights = models_per_batch(probe, batch_size, device), sum(p.numel() for p in probe.parameters())
        except Exception:  # building fails again, run by run, with its error in the table
            size, weights = 1, 0
        alone = bool(group[0].get("aggressive"))  # fit_many trains these one by one: one per group, in parallel
        parts = len(group) if alone else math.ceil(len(group) / max(1, min(size, share)))
        sized += [(group[i::parts], weights) for i in range(parts)]  # near-equal parts, seeds spread over them
    sized.sort(key=lambda g: (bool(g[0][0].get("aggressive")), g[1] * len(g[0])), reverse=True)
    return [group for group, _ in sized]


def _failed(experiment: str, ds: Dataset, spec: dict, status: str, error: str,
            extra: dict | None = None) -> tuple[list[dict], dict]:
    base = schema_fields(experiment, ds.name, spec)
    return [RunRecord(**base, split=s, status=status, error=error,
                      extra={**setting_columns(spec), **(extra or {})}).to_row()
            for s in ("train", "test")], {}


def _last_finite(error: DivergenceError) -> dict:
    """The columns of a diverged run: the epoch its loss became NaN or infinite, and the training means (loss,
    rate, distortion) of the last epoch before it (NaN when it diverged in the first)."""
    rows = error.history
    return dict(diverged_epoch=error.epoch, **{f"last_train_{k}": float(rows[k].iloc[-1]) if len(rows) else math.nan
                                               for k in ("loss", "rate", "distortion")})


def _evaluated(experiment, ds, spec, model, evaluate, seconds) -> tuple[list[dict], dict]:
    """The rows and side tables of one trained model, or its failed rows if evaluating it fails."""
    base = schema_fields(experiment, ds.name, spec)
    try:
        rows, result = [], dict(evaluate(model, spec))
        tables = result.pop(TABLES, {})
        for split, metrics in result.items():
            known = {k: v for k, v in metrics.items() if k in RunRecord.__dataclass_fields__}
            extra = {**setting_columns(spec), **{k: v for k, v in metrics.items() if k not in known}}
            rows.append(RunRecord(**base, split=split, train_seconds=seconds, **known, extra=extra).to_row())
        return rows, tables
    except Exception as e:  # a failed cell is a row, never a stopped sweep
        return _failed(experiment, ds, spec, "failed", f"{type(e).__name__}: {e}")
