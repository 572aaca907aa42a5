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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

import ibkit
from ibkit import estimators as E
from ibkit.checks import check_choice, check_number
from ibkit.interface import is_stochastic
from ibkit.sweep import TABLES, network_fields, run_grid, run_id
from ibkit.tables import over_examples
from ibkit.theory import gaussian_channel_capacity
from ibkit.train import LOGS, resolve_device

from .findings import write_findings

NAME = "information-flow"
SUMMARY = "information through the code vs probe noise: deterministic, sparse, noisy (bounded or not) AEs and VAEs"
PROBE_CURVES = "probe_curve"  # side tables: probe_curve.csv, kl_per_dim.csv
KL_PER_DIM = "kl_per_dim"


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # digits | mnist | gaussian (ibkit.data.load)
    hidden: tuple[int, ...] = (128, 128)  # encoder widths of every model, mirrored by the decoder
    network: str = "mlp"  # encoder and decoder: mlp | conv (stride-2 convolutions on the images; digits, mnist)
    channels: tuple[int, ...] = (32, 64)  # conv: the channels of the convolutions
    latent_dim: int = 8  # d of the sparse, noisy and variational models
    ae_latent_dims: tuple[int, ...] = (1, 8)  # deterministic AEs: one real number, and d numbers
    sparsities: tuple[float, ...] = (0.01, 0.1, 1.0)  # L1 weights of the sparse AEs
    noises: tuple[float, ...] = (0.05, 0.2, 0.5)  # channel noise std of the noisy AEs (each tanh and unbounded)
    betas: tuple[float, ...] = (0.1, 1.0, 4.0)  # KL weights of the VAEs
    probe_sigmas: tuple[float, ...] = tuple(float(s) for s in np.geomspace(1, 1e-4, 9))  # probe noise stds
    epochs: int = 150  # passes over the training split, every model
    batch_size: int = 128  # minibatch size
    lr: float = 1e-3  # Adam step size
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per model and seed
    device: str = "auto"  # auto (GPU when present) | cpu | cuda
    batched: bool = True  # models of one architecture train as one batched model (fit_many); false: one at a time
    log: str = "none"  # none | tensorboard: each run's per-epoch training scalars in OUT/tensorboard/RUN_ID

    def __post_init__(self):
        check_choice("dataset", self.dataset, ibkit.data.DATASETS)
        network_fields(self.network, self.channels, self.dataset)
        check_number("latent_dim", self.latent_dim, low=1, integer=True)
        for name, low, open_, integer in (("ae_latent_dims", 1, False, True), ("sparsities", 0, False, False),
                                          ("noises", 0, True, False), ("betas", 0, False, False),
                                          ("probe_sigmas", 0, True, False), ("seeds", 0, False, True)):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}=() is empty; give at least one value")
            for v in values:
                check_number(name, v, low=low, low_open=open_, integer=integer)
        check_number("epochs", self.epochs, low=1, integer=True)
        check_number("batch_size", self.batch_size, low=1, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        resolve_device(self.device)
        check_choice("log", self.log, LOGS)


GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(epochs=100, seeds=(0,), sparsities=(0.1,), noises=(0.2,), betas=(0.1, 4.0),
             probe_sigmas=(1.0, 0.1, 0.01, 1e-3, 1e-4))  # about a minute on two CPU cores


def model_grid(config: Config) -> list[dict]:
    """Every model of the experiment, for every seed."""
    d, hidden = config.latent_dim, config.hidden
    specs = [dict(kind="ae", latent_dim=k) for k in config.ae_latent_dims]
    specs += [dict(kind="sparse_ae", latent_dim=d, sparsity=s) for s in config.sparsities]
    specs += [dict(kind="noisy_ae", latent_dim=d, noise=n, code_bound=b) for b in ("tanh", None) for n in config.noises]
    specs += [dict(kind="vae", latent_dim=d, beta=b) for b in config.betas]
    network = network_fields(config.network, config.channels, config.dataset)
    return [{**spec, "hidden": hidden, **network, "seed": seed} for seed in config.seeds for spec in specs]


def channel_capacity(spec: dict) -> float:
    """The channel capacity bound of a tanh-bounded noisy AE, d/2 log(1 + 1/sigma^2); NaN for every other model.
    Its own column: ``capacity`` is the KL-capacity knob C of the VAEs (``ibkit.models.schedules``)."""
    if spec["kind"] == "noisy_ae" and spec.get("code_bound") == "tanh":
        return gaussian_channel_capacity(spec["latent_dim"], spec["noise"])
    return math.nan


def evaluate(model, spec: dict, *, config: Config, splits: dict, entropy: float | None) -> dict:
    """Both splits' information measurements of one model, and its rows of the side tables."""
    rid, smallest = run_id(spec), min(config.probe_sigmas)
    out, tables = {}, {}
    for split, (x, y) in splits.items():
        seed = spec["seed"]
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
                run_id=rid, kind=spec["kind"], latent_dim=spec["latent_dim"], beta=spec.get("beta", math.nan),
                noise=spec.get("noise", math.nan), sparsity=spec.get("sparsity", math.nan),
                code_bound=spec.get("code_bound") or "", seed=seed,
                channel_capacity=channel_capacity(spec))
            if spec["kind"] == "vae":
                kl = E.kl_per_dim(model, x).tolist()
                tables[KL_PER_DIM] = pd.DataFrame(dict(run_id=rid, beta=spec["beta"], seed=seed,
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
    return run_grid(NAME, ds, model_grid(config), measure, epochs=config.epochs, batch_size=config.batch_size,
                    lr=config.lr, device=config.device, out_dir=out_dir,
                    batched=config.batched, executor=executor, log=config.log)


def plot(run_dir: str | Path) -> list[Path]:
    """The three figures and findings.md, from the tables stored in ``run_dir``."""
    from ibkit import plots

    from .figures import information_vs_distortion, information_vs_probe_noise, kl_per_dim

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
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs, curves))]
