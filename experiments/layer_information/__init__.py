"""Where the information sits in a hierarchical VAE, layer by layer, and why the top layers collapse.

One-, two- and three-layer VAEs (``kind="hvae"``, latent_dims the first 1, 2 or 3 of ``layer_dims``, z_1 nearest the
data), inferred bottom-up (Burda et al. 2016) and top-down (ladder / NVAE), across beta, each trained plainly and
with a KL schedule: a linear warm-up of beta (Bowman et al. 2016; Sønderby et al. 2016), free bits per layer
(Kingma et al. 2016) and He et al. 2019's aggressive encoder training. For every run, ``E.per_layer`` measures
each layer's conditional KL (its rate), its active units (Burda's Var_x E_q[z] > 0.01 and NVAE's KL > 0.1 nats),
and two bounds on its information: InfoNCE on I(X; z_l) below, the cumulative rate from the top, which bounds
I(X; z_{>=l}), above. One-layer models are the frontier the deeper ones are drawn against on the rate-distortion
plane.

runs.csv: one test row per run (rate, distortion, ELBO, IWAE, the whole code's bounds and active units), with the
columns ``depth``, ``inference`` and ``schedule``. Side tables: ``layers.csv`` (per run and layer, ``per_layer``'s
columns) and ``history.csv`` (per epoch, with the beta, capacity and clipped rate the loss used).

The package: this module (``Config``, ``run``, ``plot``), ``figures`` and ``findings`` (findings.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

import ibkit
from ibkit import estimators as E
from ibkit.checks import check_choice, check_number
from ibkit.models.hvae import INFERENCE
from ibkit.sweep import HISTORY, TABLES, network_fields, run_grid, run_id
from ibkit.tables import over_examples
from ibkit.train import LOGS, resolve_device

from .findings import write_findings

NAME = "layer-information"
SUMMARY = "hierarchical VAEs: rate, active units and information per layer; warm-up, free bits, aggressive training"
SCHEDULES = ("none", "warmup", "free_bits", "aggressive")
LAYERS = "layers"  # the side table of per-layer measurements


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # digits | mnist (ibkit.data.load)
    layer_dims: tuple[int, ...] = (8, 4, 2)  # d_1, d_2, d_3: a depth-L model has the first L
    depths: tuple[int, ...] = (1, 2, 3)  # numbers of stochastic layers
    inference: tuple[str, ...] = INFERENCE  # top_down | bottom_up (one-layer models have one: top_down)
    hidden: tuple[int, ...] = (64, 64)  # x-side network widths (encoder, mirrored by the decoder)
    layer_hidden: tuple[int, ...] = (32,)  # widths of the networks between latent layers
    network: str = "mlp"  # encoder and decoder: mlp | conv (stride-2 convolutions on the images; digits, mnist)
    channels: tuple[int, ...] = (32, 64)  # conv: the channels of the convolutions
    betas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # KL weights
    schedules: tuple[str, ...] = SCHEDULES  # none | warmup | free_bits | aggressive
    warmup_epochs: float = 50.0  # warm-up: beta rises linearly from 0 over this many epochs
    free_bits: float = 0.5  # free bits: lambda, nats per unit (each layer's KL counts as at least lambda d_l)
    aggressive_betas: tuple[float, ...] = (1.0,)  # aggressive training (one model at a time, slow) at these betas
    aggressive_depths: tuple[int, ...] = (2,)  # and at these depths
    aggressive_inference: tuple[str, ...] = INFERENCE  # and with these inference styles
    epochs: int = 100  # passes over the training split
    batch_size: int = 128  # minibatch size
    lr: float = 1e-3  # Adam step size
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per model and seed
    iwae_k: int = 1000  # importance samples of the bound on log p(x)
    eval_rows: int = 2000  # test rows measured (per_layer and the bounds: N^2 pairs)
    curves: bool = True  # per-epoch histories (history.csv)
    device: str = "auto"  # auto (GPU when present) | cpu | cuda
    batched: bool = True  # models of one structure train as one batched model (fit_many); false: one at a time
    log: str = "none"  # none | tensorboard: each run's per-epoch training scalars in OUT/tensorboard/RUN_ID

    def __post_init__(self):
        check_choice("dataset", self.dataset, ("digits", "mnist"))
        network_fields(self.network, self.channels, self.dataset)
        for name in ("layer_dims", "depths", "inference", "betas", "schedules", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"{name}=() is empty; give at least one value")
        for d in self.layer_dims:
            check_number("layer_dims", d, low=1, integer=True)
        for depth in self.depths:
            check_number("depths", depth, low=1, high=len(self.layer_dims), integer=True)
        for inference in self.inference:
            check_choice("inference", inference, INFERENCE)
        for inference in self.aggressive_inference:
            check_choice("aggressive_inference", inference, INFERENCE)
        for schedule in self.schedules:
            check_choice("schedules", schedule, SCHEDULES)
        for b in (*self.betas, *self.aggressive_betas):
            check_number("betas", b, low=0)
        for s in self.seeds:
            check_number("seeds", s, low=0, integer=True)
        check_number("warmup_epochs", self.warmup_epochs, low=0, low_open=True)
        check_number("free_bits", self.free_bits, low=0, low_open=True)
        for name in ("epochs", "batch_size", "iwae_k"):
            check_number(name, getattr(self, name), low=1, integer=True)
        check_number("eval_rows", self.eval_rows, low=2, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        resolve_device(self.device)
        check_choice("log", self.log, LOGS)


# under two minutes on two CPU cores: aggressive training (about 15 times the plain cost) is left out
GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(layer_dims=(8, 4), depths=(1, 2), betas=(1.0, 4.0), schedules=("none", "warmup", "free_bits"),
             epochs=60, seeds=(0,), iwae_k=200, eval_rows=360, warmup_epochs=20.0)


def schedule_of(spec: dict) -> str:
    """The schedule a spec trains with: none, warmup, free_bits or aggressive."""
    if spec.get("aggressive"):
        return "aggressive"
    return "warmup" if spec.get("warmup_epochs") else "free_bits" if spec.get("free_bits") else "none"


def model_grid(config: Config) -> list[dict]:
    """Every structure (depth, inference) at every beta and schedule, for every seed."""
    options = {"none": {}, "warmup": dict(warmup_epochs=config.warmup_epochs),
               "free_bits": dict(free_bits=config.free_bits), "aggressive": dict(aggressive=True)}
    specs = []
    for depth in config.depths:
        dims = tuple(config.layer_dims[:depth])
        for inference in config.inference if depth > 1 else ("top_down",):
            structure = dict(kind="hvae", latent_dim=sum(dims), latent_dims=dims, inference=inference,
                             hidden=config.hidden, layer_hidden=config.layer_hidden,
                             **network_fields(config.network, config.channels, config.dataset))
            for schedule in config.schedules:
                if schedule == "aggressive" and (depth not in config.aggressive_depths or (
                        depth > 1 and inference not in config.aggressive_inference)):
                    continue
                betas = config.aggressive_betas if schedule == "aggressive" else config.betas
                specs += [{**structure, "beta": b, **options[schedule]} for b in betas]
    return [{**spec, "seed": seed} for seed in config.seeds for spec in specs]


def evaluate(model, spec: dict, *, config: Config, x) -> dict:
    """The test rows' bounds (rate, distortion, ELBO, IWAE, the whole code's bracket on I(X;Z) with standard
    errors from ``E.information_bracket``: InfoNCE below, the smaller of leave-one-out and the rate above; active
    units) and the per-layer table (``E.per_layer``), as the side table ``layers``."""
    seed = spec["seed"]
    distortion = E.distortion(model, x, seed=seed, per_example=True)
    rate = E.rate(model, x, seed=seed, per_example=True)
    m = over_examples(distortion=distortion, rate=rate, elbo=-(distortion + rate),
                      iwae=E.iwae(model, x, config.iwae_k, seed=seed, per_example=True))
    layers = E.per_layer(model, x, seed=seed)
    m.update(E.information_bracket(model, x, seed=seed), active_units=int(layers["active_units"].sum()),
             depth=len(model.latent_dims), inference=spec["inference"], schedule=schedule_of(spec),
             layers="x".join(map(str, model.latent_dims)))
    table = layers.assign(run_id=run_id(spec), depth=m["depth"], inference=spec["inference"],
                          schedule=m["schedule"], beta=spec["beta"], seed=seed)
    return {"test": m, TABLES: {LAYERS: table}}


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every model of the grid and measure it, layer by layer."""
    ds = ibkit.data.load(config.dataset)
    x = ds.test[: config.eval_rows]
    return run_grid(NAME, ds, model_grid(config), partial(evaluate, config=config, x=x), epochs=config.epochs,
                    batch_size=config.batch_size, lr=config.lr, device=config.device, out_dir=out_dir,
                    batched=config.batched, executor=executor, curves=config.curves, log=config.log)


def plot(run_dir: str | Path) -> list[Path]:
    """The figures and findings.md, from runs.csv and layers.csv."""
    from ibkit import plots

    from .figures import active_units_per_layer, information_per_layer, rate_distortion_by_depth, rate_per_layer

    run_dir = Path(run_dir)
    runs = ibkit.results.load(run_dir)
    layers = ibkit.results.side_table(run_dir, LAYERS)
    figures = run_dir / "figures"
    data = ibkit.results.data_text(run_dir)
    paths = plots.save_figure(rate_per_layer(layers), figures, "rate_per_layer", data=data)  # every schedule
    paths += plots.save_figure(active_units_per_layer(layers), figures, "active_units_per_layer", data=data)
    paths += plots.save_figure(information_per_layer(layers), figures, "information_per_layer", data=data)
    paths += plots.save_figure(rate_distortion_by_depth(runs), figures, "rate_distortion", data=data)
    history = ibkit.results.side_table(run_dir, HISTORY)
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs, layers, history))]
