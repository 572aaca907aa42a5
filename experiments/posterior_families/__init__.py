"""Beyond the diagonal posterior: what a richer q(z|x) buys, and how much of the ELBO gap is amortisation.

VAEs with diagonal, full-covariance and IAF posteriors across beta, on one architecture. For each: ELBO and IWAE
(the gap log p(x) - ELBO is at least IWAE - ELBO), the split of the inference gap into approximation and
amortisation parts by per-datapoint optimisation (Cremer et al. 2018), the correlation of the latents given x
under q and under the true posterior (Berkson's paradox: independent a priori, dependent given x), the rate
decomposition R = I(n;z) + KL(q(z)||p(z)) (Hoffman & Johnson 2016), and active units.

With ``decoder="generating"`` (gaussian data only) every model is the generating linear decoder and prior, frozen,
with a fresh encoder that alone trains: a learned decoder adapts to its posterior family (a linear one rotates its
latents until the exact posterior is diagonal, Lucas et al. 2019), so only a fixed generative model shows what
the family costs. There log p(x) is exact, and so is the cost of the best diagonal q, 1/2 (sum log M_ii - log det M)
with M the exact posterior precision.

The package: this module (``Config``, ``run``, ``plot``), ``figures`` (its three figures) and ``findings``
(findings.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import ibkit
from ibkit import estimators as E
from ibkit.checks import check_choice, check_number
from ibkit.results import atomic_write_text
from ibkit.sweep import run_grid
from ibkit.tables import over_examples
from ibkit.train import resolve_device

from .findings import write_findings

NAME = "posterior-families"
SUMMARY = "diagonal vs full-covariance vs IAF posteriors: ELBO gap, amortisation gap, posterior correlations"
FAMILIES = ("diagonal", "full", "iaf")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # digits | mnist | gaussian (ibkit.data.load)
    decoder: str = "learned"  # learned | generating (gaussian only: the generating decoder, frozen; q alone trains)
    hidden: tuple[int, ...] = (128, 128)  # encoder widths, mirrored by a learned decoder
    latent_dim: int = 8  # d (with the generating decoder: the data's)
    families: tuple[str, ...] = FAMILIES  # posterior families compared
    betas: tuple[float, ...] = (0.5, 1.0)  # KL weights
    epochs: int = 150  # passes over the training split, every model
    batch_size: int = 128
    lr: float = 1e-3  # Adam step size
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per model and seed
    iwae_k: int = 5000  # importance samples of the bound on log p(x)
    eval_rows: int = 300  # test rows for the per-datapoint optimisation and the posterior correlations
    decomposition_rows: int = 5000  # test rows of the rate decomposition (N^2 log q(z_i|x_j); IAF ~45 s at 5,000)
    correlation_k: int = 1000  # proposals of the importance-weighted true-posterior correlation
    amortization_steps: int = 300  # Adam steps of the per-datapoint optimisation
    device: str = "auto"  # auto (GPU when present) | cpu | cuda
    batched: bool = True  # models of one architecture train as one batched model (fit_many); false: one at a time

    def __post_init__(self):
        check_choice("dataset", self.dataset, ibkit.data.DATASETS)
        check_choice("decoder", self.decoder, ("learned", "generating"))
        if self.decoder == "generating" and self.dataset != "gaussian":
            raise ValueError(f"decoder='generating' needs dataset='gaussian' (the one with a known generative "
                             f"model); got dataset={self.dataset!r}")
        check_number("latent_dim", self.latent_dim, low=2, integer=True)
        if not self.families or not self.betas or not self.seeds:
            raise ValueError("families, betas and seeds must each hold at least one value")
        for f in self.families:
            check_choice("families", f, FAMILIES)
        for b in self.betas:
            check_number("betas", b, low=0)
        for s in self.seeds:
            check_number("seeds", s, low=0, integer=True)
        for name in ("epochs", "batch_size", "iwae_k", "eval_rows", "decomposition_rows", "correlation_k",
                     "amortization_steps"):
            check_number(name, getattr(self, name), low=1, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        resolve_device(self.device)


QUICK = dict(epochs=60, seeds=(0,), betas=(1.0,), iwae_k=1000, eval_rows=200, amortization_steps=200)


def model_grid(config: Config, latent_dim: int | None = None) -> list[dict]:
    specs = [dict(kind="vae", latent_dim=latent_dim or config.latent_dim, hidden=config.hidden, posterior=f, beta=b)
             for b in config.betas for f in config.families]
    return [{**spec, "seed": seed} for seed in config.seeds for spec in specs]


def evaluate(model, spec: dict, *, config: Config, x, exact: dict | None) -> dict:
    """The test-split measurements of one model; ``exact``: the closed forms of a generating decoder, or None."""
    few = x[: config.eval_rows]
    seed = spec["seed"]
    distortion = E.distortion(model, x, seed=seed, per_example=True)
    rate = E.rate(model, x, seed=seed, per_example=True)
    m = dict(**over_examples(distortion=distortion, rate=rate, elbo=-(distortion + rate),
                             iwae=E.iwae(model, x, config.iwae_k, seed=seed, per_example=True)),
             rate_se=E.rate_standard_error(model, x, seed=seed), active_units=E.active_units(model, x))
    m["iwae_minus_elbo"] = m["iwae"] - m["elbo"]
    if exact:  # the exact inference gap, and what the best diagonal q would pay
        m.update(log_px=exact["log_px"], inference_gap=exact["log_px"] - m["elbo"],
                 best_diagonal_kl=exact["best_diagonal_kl"])
    decomposition = E.rate_decomposition(model, x[: config.decomposition_rows], seed=seed)
    m.update(mi_lower=decomposition["index_information"], index_information=decomposition["index_information"],
             marginal_kl=decomposition["marginal_kl"])
    corr = E.posterior_correlation(model, few, k=config.correlation_k, seed=seed)
    m.update(q_correlation=corr["q"], true_correlation=corr["true"], ess=corr["ess"])
    gap = E.amortization_gap(model, few, steps=config.amortization_steps, k=config.iwae_k, seed=seed)
    m.update({key: gap[key] for key in ("elbo_amortised", "elbo_optimised", "amortization_gap",
                                        "approximation_gap")})
    m["log_px_estimate"] = gap["log_px"]
    return {"test": m}


def build_generating(spec: dict, *, ds) -> torch.nn.Module:
    """The generating decoder and prior, frozen, and a fresh encoder of the spec's family."""
    return ds.true_model(posterior=spec["posterior"], hidden=spec["hidden"], seed=spec["seed"], beta=spec["beta"])


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every family at every beta and measure its inference; one row per run (test split)."""
    ds: Any = ibkit.data.load(config.dataset)  # with the generating decoder: the gaussian source, its closed forms
    x = ds.test
    generating, exact = config.decoder == "generating", None
    if generating:
        precision = torch.linalg.inv(ds.exact_posterior(x[:1]).covariance_matrix[0].double())  # constant in x
        exact = dict(log_px=ds.log_px(x).mean().item(),
                     best_diagonal_kl=0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item())
    specs = model_grid(config, ds.W.shape[1] if generating else None)
    return run_grid(NAME, ds, specs, partial(evaluate, config=config, x=x, exact=exact), epochs=config.epochs,
                    batch_size=config.batch_size, lr=config.lr, device=config.device, out_dir=out_dir,
                    batched=config.batched, executor=executor, trainable="encoder" if generating else "all",
                    build=partial(build_generating, ds=ds) if generating else None)


def plot(run_dir: str | Path) -> list[Path]:
    """The three figures and findings.md, from runs.csv."""
    from ibkit import plots

    from .figures import amortization_by_family, correlation_by_family, gap_by_family

    run_dir = Path(run_dir)
    runs = ibkit.results.load(run_dir)
    figures = run_dir / "figures"
    paths = plots.save_figure(gap_by_family(runs), figures, "elbo_gap_by_family")
    paths += plots.save_figure(correlation_by_family(runs), figures, "posterior_correlation")
    paths += plots.save_figure(amortization_by_family(runs), figures, "amortization_gap")
    findings = run_dir / "findings.md"
    atomic_write_text(findings, write_findings(runs))
    return paths + [findings]
