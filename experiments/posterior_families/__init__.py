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

import dataclasses
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import ibkit
from ibkit import estimators as E
from ibkit.config import ExperimentConfig, RunSpec, checks_of, setting
from ibkit.models import VAEConfig, build_model, load_checkpoint
from ibkit.models.generating import generating_vae
from ibkit.stats import over_examples
from ibkit.store import CHECKPOINTS
from ibkit.sweep import HISTORY, TABLES, run_grid

if TYPE_CHECKING:
    import pandas as pd

NAME = "posterior-families"
SUMMARY = "diagonal vs full-covariance vs IAF posteriors: ELBO gap, amortisation gap, posterior correlations"
FAMILIES = ("diagonal", "full", "iaf")


@dataclass(frozen=True)
class Config(ExperimentConfig, defaults=dict(curves=True)):
    """The families, betas and measurements; data, networks and training are ``ExperimentConfig``'s fields."""

    decoder: str = setting("learned", "learned | generating (gaussian only: the generating decoder, frozen; q alone "
                           "trains)", choices=("learned", "generating"))
    frozen_control: bool = setting(False, "also: every family's encoder on each learned diagonal VAE's frozen "
                                   "decoder")
    frozen_epochs: int = setting(30, "epochs of the frozen-decoder control's encoders (started from the trained "
                                 "ones)", low=1)
    latent_dim: int = setting(8, "d (with the generating decoder: the data's)", low=2)
    families: tuple[str, ...] = setting(FAMILIES, "posterior families compared", choices=FAMILIES, nonempty=True)
    betas: tuple[float, ...] = setting((0.5, 1.0), "KL weights", nonempty=True, **checks_of(VAEConfig, "beta"))
    iwae_k: int = setting(5000, "importance samples of the bound on log p(x)", low=1)
    train_rows: int = setting(2000, "training rows evaluated (the train split's rows)", low=1)
    eval_rows: int = setting(100, "test rows for the per-datapoint optimisation and the posterior correlations",
                             low=1)
    decomposition_rows: int = setting(5000, "test rows of the rate decomposition (N^2 log q(z_i|x_j); IAF ~45 s at "
                                      "5,000)", low=1)
    correlation_k: int = setting(5000, "importance samples per row and stage of the true-posterior correlation",
                                 low=1)
    min_ess: float = setting(100.0, "rows whose importance sampler's ESS is below this are flagged and not reported",
                             low=1)
    amortization_max_steps: int = setting(5000, "the per-datapoint optimisation runs until converged, or this many "
                                          "steps", low=1)
    amortization_tol: float = setting(0.01, "converged: the mean ELBO gained over the last 100 steps is below this "
                                      "(nats)", low=0, low_open=True)

    def __post_init__(self):
        super().__post_init__()
        if self.decoder == "generating" and self.dataset != "gaussian":
            raise ValueError(f"decoder='generating' needs dataset='gaussian' (the one with a known generative "
                             f"model); got dataset={self.dataset!r}")
        if self.frozen_control and (self.decoder != "learned" or "diagonal" not in self.families):
            raise ValueError(f"frozen_control=True freezes the learned diagonal VAEs' decoders: it needs "
                             f"decoder='learned' and 'diagonal' in families; got decoder={self.decoder!r}, "
                             f"families={self.families!r}")

GROWS = ("betas", "seeds")  # grid lists a finished folder may gain values in
QUICK = dict(epochs=60, seeds=(0,), betas=(1.0,), iwae_k=1000, eval_rows=100, correlation_k=2000,
             amortization_max_steps=1000, frozen_control=True, frozen_epochs=20)
CORRELATIONS = "correlations"  # the side table of per-row correlations and ESS


def model_grid(config: Config, latent_dim: int | None = None, trainable: str = "all") -> list[RunSpec]:
    """Every family at every beta, for every seed; ``latent_dim`` replaces the config's (the generating decoder's)."""
    fields = [dict(latent_dim=latent_dim or config.latent_dim, hidden=config.hidden, posterior=f, beta=b,
                   **config.network_fields()) for b in config.betas for f in config.families]
    return [RunSpec("vae", f, seed, trainable=trainable) for seed in config.seeds for f in fields]


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


def evaluate(model, spec: RunSpec, *, config: Config, x, x_train, exact: dict | None) -> dict:
    """The test split's measurements of one model and the train split's bounds; ``exact``: the closed forms of a
    generating decoder, or None. The per-row correlations go to the side table ``correlations``."""
    few = x[: config.eval_rows]
    seed = spec.seed
    decoder = spec.label or config.decoder
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
    rows = corr["per_row"].assign(run_id=spec.run_id, decoder=decoder)
    return {"test": {**m, "decoder": decoder}, "train": {**train, "decoder": decoder}, TABLES: {CORRELATIONS: rows}}


def build_generating(spec: RunSpec, *, ds) -> torch.nn.Module:
    """The generating decoder and prior, frozen, and a fresh encoder of the spec's family."""
    return generating_vae(ds, spec.get("posterior"), hidden=spec.get("hidden"), seed=spec.seed,
                          beta=spec.get("beta"))


def build_on_frozen(spec: RunSpec, *, ds, folder: Path) -> torch.nn.Module:
    """A VAE of the spec's family started from the learned diagonal VAE of the same beta and seed (its checkpoint
    in ``folder``): that decoder, to be frozen, and that encoder, a full family's off-diagonals at zero."""
    diagonal = RunSpec(spec.kind, {**spec.config, "posterior": "diagonal"}, spec.seed)
    learned = load_checkpoint(folder / CHECKPOINTS / f"{diagonal.run_id}.pt")
    return build_model(spec.kind, input_dim=ds.input_dim, likelihood=ds.likelihood, seed=spec.seed,
                       **spec.config).start_from(learned)


def run(config: Config, out_dir: str | Path | None = None, executor=None) -> pd.DataFrame:
    """Train every family at every beta and measure its inference (test rows, and train rows of its bounds);
    with ``frozen_control``, then every family's encoder on the learned diagonal VAEs' frozen decoders."""
    import pandas as pd

    ds: Any = ibkit.data.load(config.dataset)  # with the generating decoder: the gaussian source, its closed forms
    x = ds.test
    generating, exact = config.decoder == "generating", None
    if generating:
        precision = torch.linalg.inv(ds.exact_posterior(x[:1]).covariance_matrix[0].double())  # constant in x
        exact = dict(log_px=ds.log_px(x).mean().item(),
                     best_diagonal_kl=0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item())
    specs = model_grid(config, ds.W.shape[1] if generating else None, "encoder" if generating else "all")
    measure = partial(evaluate, config=config, x=x, x_train=ds.train[: config.train_rows], exact=exact)
    # the frozen control reads the learned diagonal VAEs' checkpoints: without out_dir, from a folder of its own
    with nullcontext(out_dir) if out_dir is not None or not config.frozen_control else tempfile.TemporaryDirectory(
            prefix="ibkit-frozen-") as folder:
        runs = run_grid(NAME, ds, specs, measure, config.training, out_dir=folder, executor=executor,
                        build=partial(build_generating, ds=ds) if generating else None)
        if not config.frozen_control:
            return runs
        frozen = [dataclasses.replace(spec, label="frozen", trainable="encoder") for spec in specs]
        on_frozen = run_grid(NAME, ds, frozen, measure, config.training.replace(epochs=config.frozen_epochs),
                             out_dir=folder, executor=executor, build=partial(build_on_frozen, ds=ds,
                                                                              folder=Path(folder)))
    return pd.concat([runs, on_frozen], ignore_index=True)


def plot(run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
    """The figures and findings.md, from runs.csv (and history.csv, where the runs recorded curves)."""
    from ibkit import plots

    from .figures import amortization_by_family, correlation_by_family, gap_by_family, learning_curves
    from .findings import write_findings

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
    return paths + [ibkit.results.write_findings(run_dir, write_findings(runs), command)]
