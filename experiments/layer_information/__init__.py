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

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import ibkit
from ibkit import estimators as E
from ibkit.checks import check_number
from ibkit.config import ExperimentConfig, RunSpec, checks_of, setting
from ibkit.models.hvae import INFERENCE, HVAEConfig
from ibkit.stats import over_examples
from ibkit.sweep import HISTORY, TABLES, run_grid

if TYPE_CHECKING:
    import pandas as pd

NAME = "layer-information"
SUMMARY = "hierarchical VAEs: rate, active units and information per layer; warm-up, free bits, aggressive training"
SCHEDULES = ("none", "warmup", "free_bits", "aggressive")
LAYERS = "layers"  # the side table of per-layer measurements


@dataclass(frozen=True)
class Config(ExperimentConfig, defaults=dict(hidden=(64, 64), epochs=100, curves=True)):
    """The structures, betas and schedules; data, networks and training are ``ExperimentConfig``'s fields
    (``hidden``: the x-side networks)."""

    ACCEPTS = ("digits", "mnist")

    layer_dims: tuple[int, ...] = setting((8, 4, 2), "d_1, d_2, d_3: a depth-L model has the first L", low=1,
                                          nonempty=True)
    depths: tuple[int, ...] = setting((1, 2, 3), "numbers of stochastic layers", low=1, nonempty=True)
    inference: tuple[str, ...] = setting(INFERENCE, "top_down | bottom_up (one-layer models have one: top_down)",
                                         choices=INFERENCE, nonempty=True)
    layer_hidden: tuple[int, ...] = setting((32,), "widths of the networks between latent layers", low=1)
    betas: tuple[float, ...] = setting((0.5, 1.0, 2.0, 4.0), "KL weights", nonempty=True,
                                       **checks_of(HVAEConfig, "beta"))
    schedules: tuple[str, ...] = setting(SCHEDULES, "none | warmup | free_bits | aggressive", choices=SCHEDULES,
                                         nonempty=True)
    warmup_epochs: float = setting(50.0, "warm-up: beta rises linearly from 0 over this many epochs", low=0,
                                   low_open=True)
    free_bits: float = setting(0.5, "free bits: lambda, nats per unit (each layer's KL counts as at least lambda "
                               "d_l)", low=0, low_open=True)
    aggressive_betas: tuple[float, ...] = setting((1.0,), "aggressive training (one model at a time, slow) at these "
                                                  "betas", **checks_of(HVAEConfig, "beta"))
    aggressive_depths: tuple[int, ...] = setting((2,), "and at these depths", low=1)
    aggressive_inference: tuple[str, ...] = setting(INFERENCE, "and with these inference styles", choices=INFERENCE)
    iwae_k: int = setting(1000, "importance samples of the bound on log p(x)", low=1)
    eval_rows: int = setting(2000, "test rows measured (per_layer and the bounds: N^2 pairs)", low=2)

    def __post_init__(self):
        super().__post_init__()
        for depth in self.depths:
            check_number("depths", depth, low=1, high=len(self.layer_dims), integer=True)

# under two minutes on two CPU cores: aggressive training (about 15 times the plain cost) is left out
GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(layer_dims=(8, 4), depths=(1, 2), betas=(1.0, 4.0), schedules=("none", "warmup", "free_bits"),
             epochs=60, seeds=(0,), iwae_k=200, eval_rows=360, warmup_epochs=20.0)


def schedule_of(spec: RunSpec) -> str:
    """The schedule a spec trains with: none, warmup, free_bits or aggressive."""
    if spec.get("aggressive"):
        return "aggressive"
    return "warmup" if spec.get("warmup_epochs") else "free_bits" if spec.get("free_bits") else "none"


def model_grid(config: Config) -> list[RunSpec]:
    """Every structure (depth, inference) at every beta and schedule, for every seed."""
    options = {"none": {}, "warmup": dict(warmup_epochs=config.warmup_epochs),
               "free_bits": dict(free_bits=config.free_bits), "aggressive": dict(aggressive=True)}
    specs = []
    for depth in config.depths:
        dims = tuple(config.layer_dims[:depth])
        for inference in config.inference if depth > 1 else ("top_down",):
            structure = dict(latent_dim=sum(dims), latent_dims=dims, inference=inference, hidden=config.hidden,
                             layer_hidden=config.layer_hidden, **config.network_fields())
            for schedule in config.schedules:
                if schedule == "aggressive" and (depth not in config.aggressive_depths or (
                        depth > 1 and inference not in config.aggressive_inference)):
                    continue
                betas = config.aggressive_betas if schedule == "aggressive" else config.betas
                specs += [{**structure, "beta": b, **options[schedule]} for b in betas]
    return [RunSpec("hvae", fields, seed) for seed in config.seeds for fields in specs]


def evaluate(model, spec: RunSpec, *, config: Config, x) -> dict:
    """The test rows' bounds (rate, distortion, ELBO, IWAE, the whole code's bracket on I(X;Z) with standard
    errors from ``E.information_bracket``: InfoNCE below, the smaller of leave-one-out and the rate above; active
    units) and the per-layer table (``E.per_layer``), as the side table ``layers``."""
    seed = spec.seed
    distortion = E.distortion(model, x, seed=seed, per_example=True)
    rate = E.rate(model, x, seed=seed, per_example=True)
    m = over_examples(distortion=distortion, rate=rate, elbo=-(distortion + rate),
                      iwae=E.iwae(model, x, config.iwae_k, seed=seed, per_example=True))
    layers = E.per_layer(model, x, seed=seed)
    m.update(E.information_bracket(model, x, seed=seed), active_units=int(layers["active_units"].sum()),
             depth=len(model.latent_dims), inference=spec.get("inference"), schedule=schedule_of(spec),
             layers="x".join(map(str, model.latent_dims)))
    table = layers.assign(run_id=spec.run_id, depth=m["depth"], inference=spec.get("inference"),
                          schedule=m["schedule"], beta=spec.get("beta"), seed=seed)
    return {"test": m, TABLES: {LAYERS: table}}


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every model of the grid and measure it, layer by layer."""
    ds = ibkit.data.load(config.dataset)
    x = ds.test[: config.eval_rows]
    return run_grid(NAME, ds, model_grid(config), partial(evaluate, config=config, x=x), config.training,
                    out_dir=out_dir, executor=executor)


def plot(run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
    """The figures and findings.md, from runs.csv and layers.csv."""
    from ibkit import plots

    from .figures import active_units_per_layer, information_per_layer, rate_distortion_by_depth, rate_per_layer
    from .findings import write_findings

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
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs, layers, history), command)]
