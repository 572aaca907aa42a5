"""Rate against distortion for every kind of bottleneck (Alemi et al. 2018, "Fixing a Broken ELBO").

A beta-VAE sweep traces the rate-distortion curve: a larger beta buys a lower rate (fewer nats through the
code, R = E KL(q(z|x) || p(z)) >= I(X;Z)) at a higher distortion. Beside it, of the same architecture: a
deterministic AE and a sparse AE (no rate: their code can carry unbounded information, so they appear at what
their code carries through a narrow probe channel) and a fixed-noise AE (its KL to N(0, I) bounds its information).

With ``frontier=true`` the data's own R(D) under squared error is estimated from samples (``ibkit.frontier``:
Blahut-Arimoto, Wasserstein gradient descent, the sandwich lower bound), stored as the side table frontier.csv and
drawn under the models as a band (figures/rate_distortion_mse); runs.csv gains each model's rate above the upper
envelope at its MSE (how far above R(D) it is at least) and above the lower bound (at most). With
``binarize=none`` the pixels stay grey and every decoder is Gaussian: a beta-VAE sweep under squared error.

The package: this module (``Config``, ``run``, ``plot``), ``figures`` (the sweep against Shannon's R(D) for a
gaussian source; the plane itself is ``ibkit.plots.rate_distortion``) and ``findings`` (findings.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import ibkit
from ibkit import estimators as E
from ibkit import frontier as F
from ibkit.config import ExperimentConfig, RunSpec, checks_of, setting
from ibkit.data._split import BINARIZE
from ibkit.interface import is_stochastic
from ibkit.models import NoisyAEConfig, SparseAEConfig, VAEConfig
from ibkit.stats import over_examples
from ibkit.store import RunFolder, atomic_write_text
from ibkit.sweep import run_grid
from ibkit.theory import gaussian_rate_at

if TYPE_CHECKING:
    import pandas as pd

NAME = "rate-distortion"
FRONTIER = "frontier"  # the side table of the data's R(D) bounds
IMAGES = ("digits", "mnist")  # the datasets whose pixels ``binarize`` applies to
GAPS = ("rate_above_upper_envelope", "rate_above_lower_bound")  # runs.csv's distances above the frontier's bounds
SUMMARY = "beta-VAE sweep on the rate-distortion plane, beside deterministic, sparse and noisy AEs"


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The grid of the sweep; data, networks and training are ``ExperimentConfig``'s fields (on digits, 1,438
    training images, AEs overfit past ~150 epochs)."""

    eigenvalues: tuple[float, ...] = setting((), "gaussian: the source's covariance spectrum (() = the default "
                                             "source)", low=0, low_open=True)
    scale: float | None = setting(None, "gaussian, or grey pixels: every model's fixed decoder std s (None: learned); "
                                  "theta = beta s^2, the slope 1 / (2 beta s^2) per unit of squared error",
                                  low=0, low_open=True)
    latent_dim: int = setting(8, "d, width of every model's code", low=1)
    conv_betas: tuple[float, ...] = setting((), "a conv VAE beta sweep (channels) beside the models above; digits, "
                                            "mnist", **checks_of(VAEConfig, "beta"))
    betas: tuple[float, ...] = setting(tuple(float(b) for b in np.geomspace(0.05, 20, 10).round(4)), "VAE KL weights",
                                       nonempty=True, **checks_of(VAEConfig, "beta"))
    noise: float = setting(0.1, "std of the noisy AE's channel noise (its code is tanh-bounded)",
                           **checks_of(NoisyAEConfig, "noise"))
    sparsity: float = setting(0.01, "L1 weight on the sparse AE's code", **checks_of(SparseAEConfig, "sparsity"))
    iwae_k: int = setting(1000, "importance samples of the IWAE bound on log p(x)", low=1)
    probe_sigma: float = setting(1e-4, "deterministic codes: std of the probe channel their information is read "
                                 "through", low=0, low_open=True)
    eval_rows: int = setting(2000, "rows of each split for the information bounds (N^2 pairs); all for R, D, MSE",
                             low=2)
    iwae_rows: int = setting(2000, "rows of each split for IWAE (iwae_k decoder passes each; MNIST: 500 fits 20 "
                             "minutes)", low=1)
    binarize: str = setting("threshold", "digits, mnist: threshold | stochastic | none (grey pixels in [0, 1], every "
                            "decoder Gaussian: the sweep under squared error)", choices=BINARIZE)
    frontier: bool = setting(False, "estimate the data's R(D) under squared error (ibkit.frontier.estimate) into "
                             "frontier.csv, draw it under the models, and add each model's rate above its bounds")
    frontier_lambdas: tuple[float, ...] = setting((0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0), "frontier: slopes, "
                                                  "nats per unit of squared error", nonempty=True, low=0,
                                                  low_open=True)
    frontier_methods: tuple[str, ...] = setting(F.METHODS, "frontier: the estimators", nonempty=True,
                                                choices=F.METHODS)
    frontier_rows: int = setting(8000, "frontier: rows of each split it is estimated on", low=2)
    frontier_steps: int = setting(400, "frontier: gradient steps of wgd and sandwich per slope", low=1)
    frontier_iterations: int = setting(200, "frontier: Blahut-Arimoto's most iterations per slope", low=1)

    def __post_init__(self):
        super().__post_init__()
        if self.binarize != "threshold" and self.dataset not in IMAGES:
            raise ValueError(f"binarize={self.binarize!r} applies to the image datasets {', '.join(IMAGES)}; got "
                             f"dataset={self.dataset!r}")
        if self.conv_betas:
            self.network_fields("conv")
        if self.eigenvalues and self.dataset != "gaussian":
            raise ValueError(f"eigenvalues apply to dataset='gaussian' (a source with a known spectrum); got "
                             f"dataset={self.dataset!r}")
        if self.scale is not None and self.dataset != "gaussian" and self.binarize != "none":
            raise ValueError(f"scale={self.scale!r} fixes a Gaussian decoder's std: it applies to dataset='gaussian' "
                             f"or to grey pixels (binarize='none'); got dataset={self.dataset!r}, "
                             f"binarize={self.binarize!r}")

GROWS = ("betas", "conv_betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(epochs=100, seeds=(0,), iwae_k=100, frontier_steps=100, frontier_iterations=50, frontier_rows=1000)


def load_data(config: Config):
    """The dataset of the sweep; for gaussian data with ``eigenvalues``, the source with that spectrum (its
    generating dimension is the number of eigenvalues above the smallest, the isotropic floor)."""
    if config.dataset == "gaussian" and config.eigenvalues:
        k = max(1, sum(v > min(config.eigenvalues) for v in config.eigenvalues))
        return ibkit.data.load("gaussian", eigenvalues=config.eigenvalues, latent_dim=k)
    if config.dataset in IMAGES:
        return ibkit.data.load(config.dataset, binarize=config.binarize)
    return ibkit.data.load(config.dataset)


def source_spectrum(ds) -> list[float] | None:
    """The population covariance eigenvalues of a gaussian source (largest first), or None for other data."""
    if not hasattr(ds, "covariance"):
        return None
    return torch.linalg.eigvalsh(ds.covariance().double()).flip(0).tolist()


def model_grid(config: Config) -> list[RunSpec]:
    """The models of the sweep, for every seed."""
    common = dict(latent_dim=config.latent_dim, hidden=config.hidden, **config.network_fields())
    if config.scale is not None:
        common["scale"] = config.scale
    models = [("vae", dict(beta=b)) for b in config.betas]
    models += [("ae", {}), ("sparse_ae", dict(sparsity=config.sparsity)), ("noisy_ae", dict(noise=config.noise))]
    conv = config.network_fields("conv") if config.conv_betas else {}
    models += [("vae", dict(beta=b, **conv)) for b in config.conv_betas]
    return [RunSpec(kind, {**common, **fields}, seed) for seed in config.seeds for kind, fields in models]


def evaluate(model, x, iwae_k: int, seed: int, spectrum: list[float] | None = None, probe_sigma: float = 1e-4,
             entropy: float | None = None, eval_rows: int | None = None,
             iwae_rows: int | None = None) -> dict:
    """The schema's metrics of one model on one split, nats per example; NaN where the kind has none.

    mi_lower / mi_upper bracket I(X;Z) (``E.information_bracket`` on the first ``eval_rows`` rows, with standard
    errors): for a stochastic code through its own channel (InfoNCE, or h(X) - D where the data ``entropy`` is
    known; the smaller of leave-one-out and the rate above), for a deterministic code through a probe channel of
    std ``probe_sigma`` below (InfoNCE cannot exceed log N) and +inf above, with ``mi_upper_note`` saying why.
    Also ``mse`` (squared error per example) and, where the source's ``spectrum`` is known, ``shannon_rate`` =
    R(mse) (Shannon's rate-distortion function) and ``rate_above_shannon`` = rate - R(mse), the distance above
    it. Distortion, rate, ELBO and IWAE carry their 95% interval over the split's examples (``over_examples``)."""
    distortion = E.distortion(model, x, seed=seed, per_example=True)
    metrics: dict[str, Any] = dict(**over_examples(distortion=distortion), mse=E.mse(model, x, seed=seed),
                   active_units=E.active_units(model, x))
    few = x[:eval_rows]  # the N^2 pair matrix of the bounds: the first eval_rows rows
    metrics.update(E.information_bracket(model, few, seed=seed, entropy=entropy, probe_sigma=probe_sigma),
                   entropy=math.nan if entropy is None else entropy)
    if is_stochastic(model):
        rate = E.rate(model, x, seed=seed, per_example=True)
        metrics.update(over_examples(rate=rate, elbo=-(distortion + rate),  # IWAE: k passes per row
                                     iwae=E.iwae(model, x[:iwae_rows], iwae_k, seed=seed, per_example=True)))
    if spectrum is not None:
        metrics["shannon_rate"] = gaussian_rate_at(spectrum, metrics["mse"])
        metrics["rate_above_shannon"] = metrics.get("rate", math.nan) - metrics["shannon_rate"]
    return metrics


def evaluate_splits(model, spec: RunSpec, *, splits: dict, iwae_k: int, spectrum: list[float] | None,
                    probe_sigma: float, entropy: float | None, eval_rows: int, iwae_rows: int) -> dict:
    return {name: evaluate(model, x, iwae_k, spec.seed, spectrum, probe_sigma, entropy, eval_rows, iwae_rows)
            for name, x in splits.items()}


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train and evaluate every model of the grid; one row per run and split (train, test); see ``run_grid``."""
    ds = load_data(config)
    evaluate_all = partial(evaluate_splits, splits={"train": ds.train, "test": ds.test}, iwae_k=config.iwae_k,
                           spectrum=source_spectrum(ds), probe_sigma=config.probe_sigma,
                           entropy=ds.entropy() if hasattr(ds, "entropy") else None, eval_rows=config.eval_rows,
                           iwae_rows=config.iwae_rows)
    runs = run_grid(NAME, ds, model_grid(config), evaluate_all, config.training, out_dir=out_dir, executor=executor)
    if not config.frontier:
        return runs
    table = data_frontier(config, ds, out_dir)
    runs = with_frontier_gaps(runs, table)
    if out_dir is not None:
        _store_gaps(RunFolder(out_dir), runs)
    return runs


def _store_gaps(folder: RunFolder, runs: pd.DataFrame) -> None:
    """Write each run's rate above the frontier's bounds into its record (the tables are assembled from them), in
    the order the records were written."""
    import pandas as pd

    gaps = runs.set_index(["run_id", "split"])[list(GAPS)]
    for record in folder.records():
        rows = [{**row, **gaps.loc[(row["run_id"], row["split"])].to_dict()} for row in record["rows"]]
        folder.write_record(rows[0]["run_id"], rows, {name: pd.DataFrame(t) for name, t in record["tables"].items()})
    folder.write_tables()


def data_frontier(config: Config, ds, out_dir: str | Path | None = None) -> pd.DataFrame:
    """The data's R(D) bounds (``ibkit.frontier.estimate``) on the first ``frontier_rows`` rows of each split; kept
    as OUT/frontier.csv, and read back from there when it holds the same slopes and methods (a resumed run)."""
    import pandas as pd

    path = Path(out_dir) / f"{FRONTIER}.csv" if out_dir is not None else None
    if path is not None and path.is_file():
        stored = pd.read_csv(path)
        slopes = set(stored["lambda"].dropna())
        if slopes == set(config.frontier_lambdas) and set(stored["method"]) == set(config.frontier_methods):
            return stored
    options = {"blahut_arimoto": dict(max_iter=config.frontier_iterations), "wgd": dict(steps=config.frontier_steps),
               "sandwich": dict(steps=config.frontier_steps)}
    table = F.estimate(ds.train[: config.frontier_rows], config.frontier_lambdas, config.frontier_methods,
                       held_out=ds.test[: config.frontier_rows],
                       options={m: o for m, o in options.items() if m in config.frontier_methods})
    if path is not None:
        atomic_write_text(path, table.to_csv(index=False))
    return table


def with_frontier_gaps(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """runs with each model's ``rate_above_upper_envelope`` (rate - U(mse): U is achievable, so at least that far
    above R(D)) and ``rate_above_lower_bound`` (rate - L(mse): at most that far), nats, per split
    (``ibkit.frontier.frontier_at``; the envelope counts every model of the split as achievable). NaN for a code
    without a rate."""
    runs = runs.copy()
    for column in GAPS:
        runs[column] = math.nan
    for split, rows in runs[(runs["status"] == "ok") & runs["rate"].notna()].groupby("split"):
        achieved = list(zip(rows["mse"], rows["rate"], strict=True))
        lower, upper = F.frontier_at(table, rows["mse"].to_numpy(), split=str(split), achieved=achieved)
        runs.loc[rows.index, "rate_above_upper_envelope"] = rows["rate"].to_numpy() - upper
        runs.loc[rows.index, "rate_above_lower_bound"] = rows["rate"].to_numpy() - lower
    return runs


def plot(run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
    """figures/rate_distortion.{pdf,png} from the stored table of ``run_dir``, for a gaussian source
    figures/rd_shannon.{pdf,png} (the sweep against Shannon's R(D)), and findings.md."""
    from ibkit import plots

    from .figures import rd_shannon
    from .findings import write_findings

    df = ibkit.results.load(run_dir)
    figures = Path(run_dir) / "figures"
    data = ibkit.results.data_text(run_dir)
    paths = plots.save_figure(plots.rate_distortion(df), figures, "rate_distortion", data=data)
    frontier = ibkit.results.side_table(run_dir, FRONTIER)
    if len(frontier):  # the plane under squared error, the data's R(D) under it
        df = with_frontier_gaps(df, frontier)
        for split in ("train", "test"):
            fig = plots.rate_distortion(df, split, frontier=frontier)
            paths += plots.save_figure(fig, figures, f"rate_distortion_mse_{split}", data=data)
    manifest = ibkit.results.read_manifest(run_dir) or {}
    stored: dict[str, Any] = manifest.get("config", {})
    if stored.get("dataset") == "gaussian" and "mse" in df:  # the source's R(D) is known: draw it
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
        config = Config(**values)
        spectrum = source_spectrum(load_data(config))
        if spectrum is not None:
            fig = rd_shannon(df, spectrum, config.latent_dim, config.scale)
            paths += plots.save_figure(fig, figures, "rd_shannon", data=data)
    return paths + [ibkit.results.write_findings(run_dir, write_findings(df, frontier=frontier), command)]
