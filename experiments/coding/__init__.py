"""The rate is a code length: -ELBO as a real bits-back bitstream and the rate as the cost of sending one sample of
q(z|x), across beta (``ibkit.coding``).

A beta-VAE sweep on binary images (digits or MNIST). For every model, on ``code_rows`` test rows:

- ``bits_back`` codes the rows into ANS bitstreams (BB-ANS, Townsend et al. 2019) and reads them back: its mean
  length per row against -ELBO (``elbo_samples`` draws per row), their paired difference and ratio, and the rows
  decoded exactly. Each row's pop of z reads the bits the rows before it pushed, which are uniform ("clean") only
  where the aggregate posterior matches the prior; the control ``bits_back_clean`` codes every row in a chain of
  its own, so that every pop reads fresh seed bits and draws z exactly from q(z|x). The sweep reports both, and
  -log p(x)'s IWAE estimate (``iwae_k`` samples), which no code beats on average;
- ``channel_simulation`` sends one exact sample of q(z|x) per row with the Poisson functional representation (Li &
  El Gamal 2018) and ``channel_decode`` rebuilds it from the indices alone: its bits per row against the rate
  (the KL, in bits) and the bound KL + log2(KL + 1) + 4 per block.

runs.csv: one test row per run, nats per example unless the column says bits (``*_bits``). The package: this
module (``Config``, ``run``, ``plot``), ``figures`` and ``findings`` (findings.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import ibkit
from ibkit import estimators as E
from ibkit.coding import DEFAULT_BINS, bits_back, channel_decode, channel_simulation
from ibkit.config import ExperimentConfig, RunSpec, checks_of, setting
from ibkit.models import VAEConfig
from ibkit.stats import over_examples
from ibkit.sweep import run_grid

if TYPE_CHECKING:
    import pandas as pd

NAME = "coding"
SUMMARY = "-ELBO as a bits-back bitstream and the rate as the bits of one sample of q(z|x), across beta"


@dataclass(frozen=True)
class Config(ExperimentConfig, defaults=dict(epochs=100)):
    """The betas and the coding parameters; data, networks and training are ``ExperimentConfig``'s fields."""

    ACCEPTS = ("digits", "mnist")  # binary pixels: bits-back codes discrete data

    latent_dim: int = setting(8, "d, width of every model's code", low=1)
    betas: tuple[float, ...] = setting((0.25, 0.5, 1.0, 2.0, 4.0), "VAE KL weights", nonempty=True,
                                       **checks_of(VAEConfig, "beta"))
    code_rows: int = setting(500, "test rows coded (bits-back and channel simulation)", low=1)
    elbo_samples: int = setting(64, "draws of z per row of the -ELBO the code length is held against", low=1)
    iwae_k: int = setting(1000, "importance samples of the IWAE bound on log p(x)", low=1)
    latent_bins: int = setting(DEFAULT_BINS, "bits-back: equal-mass bins of the prior per latent dimension", low=2,
                               high=2**16)
    chains: int = setting(16, "bits-back: independent ANS chains (the network sees one row of each per call)",
                          low=1)
    block_bits: float = setting(8.0, "channel simulation: blocks of dimensions whose search draws at most "
                                "2^block_bits candidates on average over the rows (the mean of max q/p)", low=1)


GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(betas=(0.5, 2.0), epochs=30, seeds=(0,), code_rows=200, iwae_k=100)  # about half a minute on two CPU cores


def model_grid(config: Config) -> list[RunSpec]:
    """A Bernoulli VAE at every beta, for every seed."""
    common = dict(latent_dim=config.latent_dim, hidden=config.hidden, **config.network_fields())
    return [RunSpec("vae", {**common, "beta": b}, seed) for seed in config.seeds for b in config.betas]


def evaluate(model, spec: RunSpec, *, config: Config, x: torch.Tensor) -> dict:
    """The test rows' code lengths beside their bounds (module docstring): per-example means with their 95%
    intervals over the rows (``over_examples``), the paired excess of the bits-back length over -ELBO and of the
    channel's bits over the KL."""
    seed = spec.seed
    distortion = E.distortion(model, x, config.elbo_samples, seed=seed, per_example=True)
    rate = E.rate(model, x, seed=seed, per_example=True)
    code = bits_back(model, x, seed=seed, latent_bins=config.latent_bins, chains=config.chains)
    clean = bits_back(model, x, seed=seed, latent_bins=config.latent_bins, chains=len(x))  # every pop: seed bits
    sent = channel_simulation(model, x, seed=seed, block_bits=config.block_bits)
    neg_elbo = distortion + rate
    m = over_examples(distortion=distortion, rate=rate, neg_elbo=neg_elbo, bits_back=code.per_example,
                      bits_back_excess=code.per_example - neg_elbo, bits_back_clean=clean.per_example,
                      bits_back_clean_excess=clean.per_example - neg_elbo,
                      iwae=E.iwae(model, x, config.iwae_k, seed=seed, per_example=True), channel_bits=sent.bits,
                      kl_bits=sent.kl_bits,
                      proposal_kl_bits=sent.proposal_kl_bits, bound_bits=sent.bound_bits,
                      channel_excess_bits=sent.bits - sent.kl_bits)
    m.update(bits_back_ratio=m["bits_back"] / m["neg_elbo"], bits_back_stream=code.nats_per_example,
             initial_bits=code.initial_bits,
             rows_exact=int(((code.decoded == x) & (clean.decoded == x)).all(-1).sum()),
             samples_exact=int((channel_decode(model.prior(), sent, seed=seed) == sent.z).all(-1).sum()),
             code_rows=len(x), elbo_samples=config.elbo_samples, blocks=len(sent.blocks),
             latent_bins=config.latent_bins, chains=config.chains, block_bits=config.block_bits,
             active_units=E.active_units(model, x))
    return {"test": m}


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every VAE of the grid and code the first ``code_rows`` test rows with it."""
    ds = ibkit.data.load(config.dataset)
    x = ds.test[: config.code_rows]
    return run_grid(NAME, ds, model_grid(config), partial(evaluate, config=config, x=x), config.training,
                    out_dir=out_dir, executor=executor)


def plot(run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
    """figures/code_lengths.{pdf,png} (each code's length against its bound, across beta) and findings.md."""
    from ibkit import plots

    from .figures import code_lengths
    from .findings import write_findings

    runs = ibkit.results.load(run_dir)
    data = ibkit.results.data_text(run_dir)
    paths = plots.save_figure(code_lengths(runs), Path(run_dir) / "figures", "code_lengths", data=data)
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs), command)]
