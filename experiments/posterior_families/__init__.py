"""Beyond the diagonal posterior: what a richer q(z|x) buys, and how much of the ELBO gap is amortisation.

VAEs with diagonal, full-covariance and IAF posteriors across beta, on one architecture. For each: ELBO and IWAE
(the gap log p(x) - ELBO is at least IWAE - ELBO), the split of the inference gap into approximation and
amortisation parts by per-datapoint optimisation (Cremer et al. 2018), the correlation of the latents given x
under q and under the true posterior (Berkson's paradox: independent a priori, dependent given x), the rate
decomposition R = I(n;z) + KL(q(z)||p(z)) (Hoffman & Johnson 2016), and active units.

A learned decoder adapts to its posterior family (a linear one rotates its latents until the exact posterior is
diagonal, Lucas et al. 2019), so two controls hold the generative model fixed and let only q(z|x) train:

- ``frozen_control``: each learned diagonal VAE's decoder, frozen, with an encoder of each family started from that
  VAE's encoder (a full family's off-diagonals at zero) and trained ``frozen_epochs`` more epochs (Cremer et al.
  2018). On one fixed generative model a richer family must not lose.
- ``decoder="generating"`` (gaussian data only): every model is the generating linear decoder and prior, frozen,
  with a fresh encoder. There log p(x) is exact, and so is the cost of the best diagonal q,
  1/2 (sum log M_ii - log det M) with M the exact posterior precision.

runs.csv has a ``decoder`` column (learned, frozen or generating) and a train row beside each test row (the bounds
on 2,000 training rows or the split's size, whichever is smaller: a family that fits train better and test worse
over-fits). Side tables: ``history.csv`` (per-epoch train and test losses, with ``curves``) and
``correlations.csv`` (per test row: the importance sampler's ESS and the correlations, flagged ``reliable`` at
ESS >= ``min_ess``; findings report only those rows).

The package: this module (``Config``, ``run``, ``plot``), ``figures`` (its figures), ``findings`` (findings.md)
and ``diagnosis`` (why the full family once trained worse than the diagonal one, variant by variant).
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import ibkit
from ibkit import estimators as E
from ibkit.checks import check_choice, check_number
from ibkit.models import build_model, load_checkpoint
from ibkit.results import CHECKPOINTS
from ibkit.sweep import HISTORY, LABEL, TABLES, config_of, network_fields, run_grid, run_id
from ibkit.tables import over_examples
from ibkit.train import LOGS, resolve_device

from .findings import write_findings

NAME = "posterior-families"
SUMMARY = "diagonal vs full-covariance vs IAF posteriors: ELBO gap, amortisation gap, posterior correlations"
FAMILIES = ("diagonal", "full", "iaf")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # digits | mnist | gaussian (ibkit.data.load)
    decoder: str = "learned"  # learned | generating (gaussian only: the generating decoder, frozen; q alone trains)
    frozen_control: bool = False  # also: every family's encoder on each learned diagonal VAE's frozen decoder
    frozen_epochs: int = 30  # epochs of the frozen-decoder control's encoders (started from the trained ones)
    hidden: tuple[int, ...] = (128, 128)  # encoder widths, mirrored by a learned decoder
    network: str = "mlp"  # encoder and decoder: mlp | conv (stride-2 convolutions on the images; digits, mnist)
    channels: tuple[int, ...] = (32, 64)  # conv: the channels of the convolutions
    latent_dim: int = 8  # d (with the generating decoder: the data's)
    families: tuple[str, ...] = FAMILIES  # posterior families compared
    betas: tuple[float, ...] = (0.5, 1.0)  # KL weights
    epochs: int = 150  # passes over the training split, every model
    batch_size: int = 128  # minibatch size
    lr: float = 1e-3  # Adam step size
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per model and seed
    iwae_k: int = 5000  # importance samples of the bound on log p(x)
    train_rows: int = 2000  # training rows evaluated (the train split's rows)
    eval_rows: int = 100  # test rows for the per-datapoint optimisation and the posterior correlations
    decomposition_rows: int = 5000  # test rows of the rate decomposition (N^2 log q(z_i|x_j); IAF ~45 s at 5,000)
    correlation_k: int = 5000  # importance samples per row and stage of the true-posterior correlation
    min_ess: float = 100  # rows whose importance sampler's ESS is below this are flagged and not reported
    amortization_max_steps: int = 5000  # the per-datapoint optimisation runs until converged, or this many steps
    amortization_tol: float = 0.01  # converged: the mean ELBO gained over the last 100 steps is below this (nats)
    curves: bool = True  # per-epoch test losses of every run (history.csv)
    device: str = "auto"  # auto (GPU when present) | cpu | cuda
    batched: bool = True  # models of one architecture train as one batched model (fit_many); false: one at a time
    log: str = "none"  # none | tensorboard: each run's per-epoch training scalars in OUT/tensorboard/RUN_ID

    def __post_init__(self):
        check_choice("dataset", self.dataset, ibkit.data.DATASETS)
        network_fields(self.network, self.channels, self.dataset)
        check_choice("decoder", self.decoder, ("learned", "generating"))
        if self.decoder == "generating" and self.dataset != "gaussian":
            raise ValueError(f"decoder='generating' needs dataset='gaussian' (the one with a known generative "
                             f"model); got dataset={self.dataset!r}")
        if self.frozen_control and (self.decoder != "learned" or "diagonal" not in self.families):
            raise ValueError(f"frozen_control=True freezes the learned diagonal VAEs' decoders: it needs "
                             f"decoder='learned' and 'diagonal' in families; got decoder={self.decoder!r}, "
                             f"families={self.families!r}")
        check_number("latent_dim", self.latent_dim, low=2, integer=True)
        if not self.families or not self.betas or not self.seeds:
            raise ValueError("families, betas and seeds must each hold at least one value")
        for f in self.families:
            check_choice("families", f, FAMILIES)
        for b in self.betas:
            check_number("betas", b, low=0)
        for s in self.seeds:
            check_number("seeds", s, low=0, integer=True)
        for name in ("epochs", "frozen_epochs", "batch_size", "iwae_k", "train_rows", "eval_rows",
                     "decomposition_rows", "correlation_k", "amortization_max_steps"):
            check_number(name, getattr(self, name), low=1, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("min_ess", self.min_ess, low=1)
        check_number("amortization_tol", self.amortization_tol, low=0, low_open=True)
        resolve_device(self.device)
        check_choice("log", self.log, LOGS)


GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(epochs=60, seeds=(0,), betas=(1.0,), iwae_k=1000, eval_rows=100, correlation_k=2000,
             amortization_max_steps=1000, frozen_control=True, frozen_epochs=20)
CORRELATIONS = "correlations"  # the side table of per-row correlations and ESS


def model_grid(config: Config, latent_dim: int | None = None) -> list[dict]:
    network = network_fields(config.network, config.channels, config.dataset)
    specs = [dict(kind="vae", latent_dim=latent_dim or config.latent_dim, hidden=config.hidden, posterior=f, beta=b,
                  **network) for b in config.betas for f in config.families]
    return [{**spec, "seed": seed} for seed in config.seeds for spec in specs]


def bounds(model, x, *, config: Config, seed: int) -> dict:
    """Distortion, rate, ELBO and IWAE over the rows of x (means with their intervals over the examples), the
    rate's Monte Carlo error, active units and IWAE - ELBO: what the train split is measured on, and the test
    split first."""
    distortion = E.distortion(model, x, seed=seed, per_example=True)
    rate = E.rate(model, x, seed=seed, per_example=True)
    m = dict(**over_examples(distortion=distortion, rate=rate, elbo=-(distortion + rate),
                             iwae=E.iwae(model, x, config.iwae_k, seed=seed, per_example=True)),
             rate_se=E.rate_standard_error(model, x, seed=seed), active_units=E.active_units(model, x))
    m["iwae_minus_elbo"] = m["iwae"] - m["elbo"]
    return m


def evaluate(model, spec: dict, *, config: Config, x, x_train, exact: dict | None) -> dict:
    """The test split's measurements of one model and the train split's bounds; ``exact``: the closed forms of a
    generating decoder, or None. The per-row correlations go to the side table ``correlations``."""
    few = x[: config.eval_rows]
    seed = spec["seed"]
    decoder = spec.get(LABEL) or config.decoder
    m = bounds(model, x, config=config, seed=seed)
    if exact:  # the exact inference gap, and what the best diagonal q would pay
        m.update(log_px=exact["log_px"], inference_gap=exact["log_px"] - m["elbo"],
                 best_diagonal_kl=exact["best_diagonal_kl"])
    decomposition = E.rate_decomposition(model, x[: config.decomposition_rows], seed=seed)
    m.update(mi_lower=decomposition["index_information"], index_information=decomposition["index_information"],
             marginal_kl=decomposition["marginal_kl"])
    corr = E.posterior_correlation(model, few, k=config.correlation_k, seed=seed, min_ess=config.min_ess)
    m.update(q_correlation=corr["q"], true_correlation=corr["true"], ess=corr["ess"], ess_median=corr["ess_median"],
             ess_q10=corr["ess_q10"], ess_q90=corr["ess_q90"], correlation_rows=corr["reliable_rows"])
    gap = E.amortization_gap(model, few, max_steps=config.amortization_max_steps, tol=config.amortization_tol,
                             k=config.iwae_k, seed=seed)
    m.update({key: gap[key] for key in ("elbo_amortised", "elbo_optimised", "amortization_gap",
                                        "approximation_gap")})
    m.update(log_px_estimate=gap["log_px"], amortization_steps=gap["steps"],
             amortization_last_improvement=gap["last_improvement"])
    train = bounds(model, x_train, config=config, seed=seed)
    rows = corr["per_row"].assign(run_id=run_id(spec), decoder=decoder)
    return {"test": {**m, "decoder": decoder}, "train": {**train, "decoder": decoder}, TABLES: {CORRELATIONS: rows}}


def build_generating(spec: dict, *, ds) -> torch.nn.Module:
    """The generating decoder and prior, frozen, and a fresh encoder of the spec's family."""
    return ds.true_model(posterior=spec["posterior"], hidden=spec["hidden"], seed=spec["seed"], beta=spec["beta"])


def build_on_frozen(spec: dict, *, ds, folder: Path) -> torch.nn.Module:
    """A VAE of the spec's family started from the learned diagonal VAE of the same beta and seed (its checkpoint
    in ``folder``): that decoder, to be frozen, and that encoder, a full family's off-diagonals at zero."""
    config = config_of(spec)
    learned = load_checkpoint(folder / CHECKPOINTS / f"{run_id({**config, 'posterior': 'diagonal'})}.pt")
    return build_model(input_dim=ds.input_dim, likelihood=ds.likelihood, **config).start_from(learned)


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every family at every beta and measure its inference (test rows, and train rows of its bounds);
    with ``frozen_control``, then every family's encoder on the learned diagonal VAEs' frozen decoders."""
    ds: Any = ibkit.data.load(config.dataset)  # with the generating decoder: the gaussian source, its closed forms
    x = ds.test
    generating, exact = config.decoder == "generating", None
    if generating:
        precision = torch.linalg.inv(ds.exact_posterior(x[:1]).covariance_matrix[0].double())  # constant in x
        exact = dict(log_px=ds.log_px(x).mean().item(),
                     best_diagonal_kl=0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item())
    specs = model_grid(config, ds.W.shape[1] if generating else None)
    measure = partial(evaluate, config=config, x=x, x_train=ds.train[: config.train_rows], exact=exact)
    common = dict(batch_size=config.batch_size, lr=config.lr, device=config.device, batched=config.batched,
                  executor=executor, curves=config.curves, log=config.log)
    # the frozen control reads the learned diagonal VAEs' checkpoints: without out_dir, from a folder of its own
    with nullcontext(out_dir) if out_dir is not None or not config.frozen_control else tempfile.TemporaryDirectory(
            prefix="ibkit-frozen-") as folder:
        runs = run_grid(NAME, ds, specs, measure, epochs=config.epochs, out_dir=folder,
                        trainable="encoder" if generating else "all",
                        build=partial(build_generating, ds=ds) if generating else None, **common)
        if not config.frozen_control:
            return runs
        frozen = [{**spec, LABEL: "frozen"} for spec in specs]
        on_frozen = run_grid(NAME, ds, frozen, measure, epochs=config.frozen_epochs, out_dir=folder,
                             trainable="encoder", build=partial(build_on_frozen, ds=ds, folder=Path(folder)),
                             **common)
    return pd.concat([runs, on_frozen], ignore_index=True)


def plot(run_dir: str | Path) -> list[Path]:
    """The figures and findings.md, from runs.csv (and history.csv, where the runs recorded curves)."""
    from ibkit import plots

    from .figures import amortization_by_family, correlation_by_family, gap_by_family, learning_curves

    run_dir = Path(run_dir)
    runs = ibkit.results.load(run_dir)
    figures = run_dir / "figures"
    data = ibkit.results.data_text(run_dir)
    paths = plots.save_figure(gap_by_family(runs), figures, "elbo_gap_by_family", data=data)
    paths += plots.save_figure(correlation_by_family(runs), figures, "posterior_correlation", data=data)
    paths += plots.save_figure(amortization_by_family(runs), figures, "amortization_gap", data=data)
    history = ibkit.results.side_table(run_dir, HISTORY)
    if len(history):
        paths += plots.save_figure(learning_curves(runs, history), figures, "learning_curves", data=data)
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs))]
