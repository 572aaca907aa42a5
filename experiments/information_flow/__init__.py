"""Does the encoder cheat? Information through the latent channel of every kind of bottleneck.

A deterministic code, even one real number, can carry unbounded information: through a probe channel of
noise sigma its information climbs towards log N as sigma shrinks (Goldfeld et al. 2019). A sparse code is not
bounded either. Fixed channel noise bounds the information only when the code's power is bounded (tanh):
then I <= d/2 log(1 + 1/sigma^2). A VAE's KL penalty bounds it by the rate R >= I(X;Z). This experiment
trains each kind on one architecture and measures distortion, rate, the InfoNCE / leave-one-out sandwich,
active units, how much of the class label the code keeps, and the probe curve from sigma = 1 to 1e-4.

The package: this module (``Config``, ``run``, ``plot``), ``figures`` (its three figures) and ``findings``
(findings.md and the short model names both use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import ibkit
from ibkit import estimators as E
from ibkit.config import ExperimentConfig, RunSpec, checks_of, setting
from ibkit.interface import is_stochastic
from ibkit.models import NoisyAEConfig, SparseAEConfig, VAEConfig
from ibkit.stats import over_examples
from ibkit.sweep import TABLES, run_grid
from ibkit.theory import gaussian_channel_capacity

if TYPE_CHECKING:
    import pandas as pd

NAME = "information-flow"
SUMMARY = "information through the code vs probe noise: deterministic, sparse, noisy (bounded or not) AEs and VAEs"
PROBE_CURVES = "probe_curve"  # side tables: probe_curve.csv, kl_per_dim.csv
KL_PER_DIM = "kl_per_dim"


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The models compared; data, networks and training are ``ExperimentConfig``'s fields."""

    latent_dim: int = setting(8, "d of the sparse, noisy and variational models", low=1)
    ae_latent_dims: tuple[int, ...] = setting((1, 8), "deterministic AEs: one real number, and d numbers", low=1,
                                              nonempty=True)
    sparsities: tuple[float, ...] = setting((0.01, 0.1, 1.0), "L1 weights of the sparse AEs", nonempty=True,
                                            **checks_of(SparseAEConfig, "sparsity"))
    noises: tuple[float, ...] = setting((0.05, 0.2, 0.5), "channel noise std of the noisy AEs (each tanh and "
                                        "unbounded)", nonempty=True, **checks_of(NoisyAEConfig, "noise"))
    betas: tuple[float, ...] = setting((0.1, 1.0, 4.0), "KL weights of the VAEs", nonempty=True,
                                       **checks_of(VAEConfig, "beta"))
    probe_sigmas: tuple[float, ...] = setting(tuple(float(s) for s in np.geomspace(1, 1e-4, 9)), "probe noise stds",
                                              low=0, low_open=True, nonempty=True)

GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(epochs=100, seeds=(0,), sparsities=(0.1,), noises=(0.2,), betas=(0.1, 4.0),
             probe_sigmas=(1.0, 0.1, 0.01, 1e-3, 1e-4))  # about a minute on two CPU cores


def model_grid(config: Config) -> list[RunSpec]:
    """Every model of the experiment, for every seed."""
    d = config.latent_dim
    models = [("ae", dict(latent_dim=k)) for k in config.ae_latent_dims]
    models += [("sparse_ae", dict(latent_dim=d, sparsity=s)) for s in config.sparsities]
    models += [("noisy_ae", dict(latent_dim=d, noise=n, code_bound=b)) for b in ("tanh", None) for n in config.noises]
    models += [("vae", dict(latent_dim=d, beta=b)) for b in config.betas]
    network = dict(hidden=config.hidden, **config.network_fields())
    return [RunSpec(kind, {**fields, **network}, seed) for seed in config.seeds for kind, fields in models]


def channel_capacity(spec: RunSpec) -> float:
    """The channel capacity bound of a tanh-bounded noisy AE, d/2 log(1 + 1/sigma^2); NaN for every other model.
    Its own column: ``capacity`` is the KL-capacity knob C of the VAEs (``ibkit.models.schedules``)."""
    if spec.kind == "noisy_ae" and spec.get("code_bound") == "tanh":
        return gaussian_channel_capacity(spec.get("latent_dim"), spec.get("noise"))
    return math.nan


def evaluate(model, spec: RunSpec, *, config: Config, splits: dict, entropy: float | None) -> dict:
    """Both splits' information measurements of one model, and its rows of the side tables."""
    import pandas as pd

    rid, smallest = spec.run_id, min(config.probe_sigmas)
    out, tables = {}, {}
    for split, (x, y) in splits.items():
        seed = spec.seed
        distortion = E.distortion(model, x, seed=seed, per_example=True)
        m = dict(**over_examples(distortion=distortion), active_units=E.active_units(model, x),
                 code_bound=spec.get("code_bound") or "", channel_capacity=channel_capacity(spec))
        if is_stochastic(model):  # its own channel
            rate = E.rate(model, x, seed=seed, per_example=True)
            m.update(over_examples(rate=rate, elbo=-(distortion + rate)))
        # a deterministic code: what it carries through the smallest probe below, unbounded above
        m.update(E.information_bracket(model, x, seed=seed, entropy=entropy, probe_sigma=smallest),
                 entropy_minus_distortion=math.nan if entropy is None else entropy - m["distortion"])
        if y is not None:
            info = E.label_information(model, x, y, seed=seed)
            m.update(label_accuracy=info["accuracy"], label_chance=info["chance"],
                     label_mi_max=float(info["mi_per_dim"].max()), label_mi_noise=info["mi_noise"])
        out[split] = m
        if split == "test":
            curve = E.probe_curve(model, x, config.probe_sigmas, seed=seed)
            tables[PROBE_CURVES] = curve.assign(
                run_id=rid, kind=spec.kind, latent_dim=spec.get("latent_dim"), beta=spec.get("beta", math.nan),
                noise=spec.get("noise", math.nan), sparsity=spec.get("sparsity", math.nan),
                code_bound=spec.get("code_bound") or "", seed=seed,
                channel_capacity=channel_capacity(spec))
            if spec.kind == "vae":
                kl = E.kl_per_dim(model, x).tolist()
                tables[KL_PER_DIM] = pd.DataFrame(dict(run_id=rid, beta=spec.get("beta"), seed=seed,
                                                       dim=range(len(kl)), kl=kl))
    return {**out, TABLES: tables}  # the side tables grow with the sweep's records, like runs.csv


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every model and measure its information; one row per run and split (see ``run_grid``).

    Besides ``runs.csv``: ``probe_curve.csv`` (test split, one row per run and probe sigma) and
    ``kl_per_dim.csv`` (VAEs, test split, one row per run and latent dimension), written into ``out_dir``.
    """
    ds = ibkit.data.load(config.dataset)
    splits = {"train": (ds.train, ds.train_labels), "test": (ds.test, ds.test_labels)}
    entropy = ds.entropy() if hasattr(ds, "entropy") else None  # h(X), known for the gaussian source
    measure = partial(evaluate, config=config, splits=splits, entropy=entropy)
    return run_grid(NAME, ds, model_grid(config), measure, config.training, out_dir=out_dir, executor=executor)


def plot(run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
    """The three figures and findings.md, from the tables stored in ``run_dir``."""
    from ibkit import plots

    from .figures import information_vs_distortion, information_vs_probe_noise, kl_per_dim
    from .findings import write_findings

    run_dir = Path(run_dir)
    runs = ibkit.results.load(run_dir)
    curves = ibkit.results.side_table(run_dir, PROBE_CURVES)
    kl = ibkit.results.side_table(run_dir, KL_PER_DIM)
    figures = run_dir / "figures"
    data = ibkit.results.data_text(run_dir)
    paths = plots.save_figure(information_vs_probe_noise(curves), figures, "information_vs_probe_noise", data=data)
    paths += plots.save_figure(information_vs_distortion(runs), figures, "information_vs_distortion", data=data)
    if len(kl):
        paths += plots.save_figure(kl_per_dim(kl), figures, "kl_per_dim", data=data)
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs, curves), command)]
