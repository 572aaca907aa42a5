"""Why did the full-covariance family train to a worse ELBO than the diagonal one? Candidate causes, one at a time.

Every variant starts from one diagonal VAE's weights (same seed: the same decoder, the same encoder, the same mean
and variance outputs; the extra outputs of a richer family start as each variant says), sees the same minibatches
and the same noise, and is trained for the same epochs; after every epoch the test split's loss is measured
(``fit(x_monitor=...)``). Variants of the Cholesky family q = N(mu, L L^T):

    diag      how diag(L) is made from the encoder's output h: "exp" (L_ii = exp(h), the old parameterisation),
              "half_exp" (exp(h / 2), the diagonal family's sigma = exp(logvar / 2)) or "softplus"
    zero      whether the d(d-1)/2 off-diagonal outputs start at zero (their rows of the last encoder layer), so that
              q starts exactly as the diagonal family's q, or at PyTorch's default initialisation
    scale     the off-diagonal entries are scale * h: a smaller scale is a smaller step for them under Adam
    jitter    added to the diagonal of the covariance, L L^T + jitter I
    lr        Adam's step size

and the diagonal and IAF families as they are, and the IAF as it was before format 3 (``identity=False``: its
steps not divided by their starting gate and MADE's last layer at PyTorch's default initialisation, so that two
steps start at z' = 0.73 z + 0.27 m with a random m) and its rate the log ratio log q(z) - log p(z) (not the
base's closed-form KL plus the flow's correction); and the diagonal family with that log-ratio rate, which shows
what the Monte Carlo rate's noise costs on its own. Over-fitting shows as a train ELBO that rises while the test ELBO
falls: both are in ``curves.csv`` (train: the mean over the epoch's minibatches) and, at the end, in
``summary.csv`` on 2,000 train and the 2,000 test rows.

    python -m experiments.posterior_families.diagnosis --dataset mnist --out results/posterior_families_mnist/diagnosis
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MultivariateNormal

import ibkit
from ibkit import estimators as E
from ibkit.models.iaf import FORGET_BIAS, IAFDistribution, IAFStep
from ibkit.models.posteriors import IAF, DiagonalGaussian, FullGaussian, PosteriorFamily
from ibkit.seeding import seeded
from ibkit.train import fit


@dataclass(frozen=True)
class Variant:
    family: str = "full"  # diagonal | full | iaf
    diag: str = "half_exp"  # exp | half_exp | softplus (full only)
    zero: bool = True  # the off-diagonal outputs start at zero (full only)
    scale: float = 1.0  # off-diagonal entries = scale * encoder output (full only)
    jitter: float = 0.0  # added to the covariance's diagonal (full only)
    relative: bool = False  # L = diag(sigma) (I + scale * B): off-diagonals in units of their row's sigma
    lr: float = 1e-3
    identity: bool = True  # the IAF's steps start as the identity (iaf only; else the undivided step of before)
    monte_carlo: bool = False  # the diagonal family's rate as the log ratio log q(z) - log p(z) (diagonal only)
    base_kl: bool = True  # the IAF's rate as its base's closed-form KL plus the flow's correction (iaf only; else
    # the log ratio log q(z) - log p(z), as before)


FIXED = "full: half_exp, zero, relative off-diagonals"  # what FullGaussian is now

VARIANTS = {
    "diagonal": Variant(family="diagonal"),
    "full: exp, default init (before)": Variant(diag="exp", zero=False),
    "full: exp, zero off-diagonals": Variant(diag="exp", zero=True),
    "full: half_exp, default init": Variant(diag="half_exp", zero=False),
    "full: half_exp, zero off-diagonals": Variant(),
    "full: softplus, zero off-diagonals": Variant(diag="softplus"),
    "full: half_exp, zero, off-diagonal scale 0.1": Variant(scale=0.1),
    "full: half_exp, zero, jitter 1e-3": Variant(jitter=1e-3),
    "diagonal, lr 3e-4": Variant(family="diagonal", lr=3e-4),
    "full: exp, default init, lr 3e-4": Variant(diag="exp", zero=False, lr=3e-4),
    "iaf": Variant(family="iaf"),
    "full: half_exp, zero, off-diagonal scale 0.03": Variant(scale=0.03),
    "full: half_exp, zero, relative off-diagonals": Variant(relative=True),
    "full: half_exp, zero, relative, scale 0.1": Variant(relative=True, scale=0.1),
    "iaf: undivided step, default init (before)": Variant(family="iaf", identity=False, base_kl=False),
    "diagonal, Monte Carlo rate": Variant(family="diagonal", monte_carlo=True),
    "iaf: identity start, Monte Carlo rate": Variant(family="iaf", base_kl=False),
}


class CholeskyVariant(FullGaussian):
    """q = N(mu, L L^T + jitter I): the full family with the diagonal of L and the scale of its off-diagonal entries
    chosen by the variant."""

    def __init__(self, latent_dim: int, variant: Variant):
        super().__init__(latent_dim)
        self.variant = variant

    def forward(self, h: Tensor) -> Distribution:
        d, v = self.latent_dim, self.variant
        mu, raw, below = h.split([d, d, d * (d - 1) // 2], dim=-1)
        diag = {"exp": torch.exp(raw), "half_exp": torch.exp(0.5 * raw),
                "softplus": nn.functional.softplus(raw)}[v.diag]
        off = (v.scale * below @ self._place.to(h.dtype)).unflatten(-1, (d, d))
        tril = off * diag.unsqueeze(-1) + torch.diag_embed(diag) if v.relative else off + torch.diag_embed(diag)
        if v.jitter:
            eye = torch.eye(d, dtype=h.dtype, device=h.device)
            return MultivariateNormal(mu, covariance_matrix=tril @ tril.mT + v.jitter * eye, validate_args=False)
        return MultivariateNormal(mu, scale_tril=tril, validate_args=False)


class UndividedIAFStep(IAFStep):
    """Kingma et al.'s gated step as the IAF had it before format 3, not divided by its starting gate:
    z' = sigma * z + (1 - sigma) * m."""

    def shift_and_gate(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.relu(self.made_in(z) + self.context(h))
        m, s = self.made_out(a).chunk(2, dim=-1)
        sigma = torch.sigmoid(s + FORGET_BIAS)
        return (1 - sigma) * m, sigma


class LogRatioIAFDistribution(IAFDistribution):
    """An IAF q whose one-sample KL estimate is the log ratio log q(z) - log p(z), as it was before the base's
    closed form took its place (``IAFDistribution.kl_samples``)."""

    def kl_samples(self, p: Distribution, z: Tensor) -> Tensor:
        return self.log_prob(z) - p.log_prob(z)


class LogRatioIAF(IAF):
    """The IAF family with the log-ratio rate."""

    def forward(self, h: Tensor) -> Distribution:
        q = super().forward(h)
        return LogRatioIAFDistribution(q.loc, q.scale, q.context, self.steps)


class MonteCarloDiagonal(DiagonalGaussian):
    """The diagonal family as a flow of no steps: the same q, but its rate and the rate's gradient are the
    one-sample log ratio log q(z) - log p(z), the IAF's before the base's closed form replaced it."""

    def forward(self, h: Tensor) -> Distribution:
        loc, logvar = h.chunk(2, dim=-1)
        return LogRatioIAFDistribution(loc, torch.exp(0.5 * logvar), loc[..., :0], nn.ModuleList())


def build(variant: Variant, ds, latent_dim: int, hidden: tuple[int, ...], seed: int) -> nn.Module:
    """The variant's VAE, started from the diagonal VAE of this seed: its decoder and encoder copied, the mean
    and variance outputs too; the extra outputs (off-diagonals, IAF context) zero or as initialised."""
    options = dict(latent_dim=latent_dim, hidden=hidden, seed=seed, likelihood=ds.likelihood)
    d = latent_dim
    diagonal = ibkit.build_model("vae", ds.input_dim, posterior="diagonal", **options)
    if variant.family == "diagonal":
        if variant.monte_carlo:
            diagonal.family = MonteCarloDiagonal(latent_dim)
        return diagonal
    model = ibkit.build_model("vae", ds.input_dim, posterior=variant.family, **options).start_from(diagonal)
    if variant.family == "full":
        model.family = CholeskyVariant(latent_dim, variant)
        if not variant.zero:  # the off-diagonal outputs at PyTorch's default initialisation, as before the fix
            head = model.encoder[-1]
            with torch.no_grad(), seeded(seed):
                weight, bias = PosteriorFamily.extra_rows(model.family, head.in_features, head.out_features - 2 * d)
                head.weight[2 * d:], head.bias[2 * d:] = weight, bias
    if variant.family == "iaf" and not variant.identity:  # steps near the identity but not at it, as before
        with torch.no_grad(), seeded(seed):
            for step in model.family.steps:
                step.__class__ = UndividedIAFStep  # the same weights, read as the undivided step
                step.made_out.reset_parameters()
    if variant.family == "iaf" and not variant.base_kl:
        plain = LogRatioIAF(latent_dim, flow_steps=len(model.family.steps))
        plain.steps = model.family.steps
        model.family = plain
    return model


def conditioning(model, x: Tensor) -> dict:
    """Of a Gaussian q on the rows of x: the median and largest condition number of its covariance, and the
    smallest posterior standard deviation."""
    with torch.no_grad():
        q = model.posterior(x)
        cov = q.covariance_matrix.double() if isinstance(q, MultivariateNormal) else None
    if cov is None:
        return {}
    eig = torch.linalg.eigvalsh(cov)
    cond = eig[:, -1] / eig[:, 0]
    return dict(condition_median=cond.median().item(), condition_max=cond.max().item(),
                smallest_std=eig[:, 0].clamp_min(0).sqrt().min().item())


def run(dataset: str, out: Path, epochs: int, seeds: list[int], names: list[str], latent_dim: int = 8,
        hidden: tuple[int, ...] = (128, 128), tag: str = "") -> pd.DataFrame:
    """Train each named variant at each seed; write summary{tag}.csv and curves{tag}.csv to ``out`` as they come."""
    ds = ibkit.data.load(dataset)
    train_eval = ds.train[: len(ds.test)]
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for seed in seeds:
        for name in names:
            variant = VARIANTS[name]
            model = build(variant, ds, latent_dim, hidden, seed)
            start = time.perf_counter()
            history = fit(model, ds.train, epochs=epochs, lr=variant.lr, seed=seed, progress=False, device="cpu",
                          x_monitor=ds.test)
            seconds = time.perf_counter() - start
            curves.append(history.assign(variant=name, seed=seed))
            row = dict(variant=name, seed=seed, seconds=seconds, **conditioning(model, ds.test))
            for split, x in (("train", train_eval), ("test", ds.test)):
                row[f"{split}_elbo"] = E.elbo(model, x, seed=seed)
                row[f"{split}_rate"] = E.rate(model, x, seed=seed)
            best = history["monitor_loss"].idxmin()
            row.update(best_test_elbo=-history["monitor_loss"].min(), best_epoch=int(history["epoch"][best]))
            rows.append(row)
            print(f"{name:48s} seed {seed}: train {row['train_elbo']:8.2f} test {row['test_elbo']:8.2f} "
                  f"(best {row['best_test_elbo']:.2f} at epoch {row['best_epoch']}) {seconds:.0f} s", flush=True)
            pd.DataFrame(rows).to_csv(out / f"summary{tag}.csv", index=False)
            pd.concat(curves).to_csv(out / f"curves{tag}.csv", index=False)
    return pd.DataFrame(rows)


def summarise(out: Path) -> pd.DataFrame:
    """Every summary*.csv of ``out`` as one table (``summary.csv``), a row per variant: the mean over seeds of the
    final train and test ELBO, their difference from the diagonal's (paired by seed), and the seeds; and the
    figure ``curves.png`` of the per-epoch train and test ELBO of the diagonal, the old and the new full
    parameterisation and the IAF."""
    from ibkit import plots

    runs = pd.concat([pd.read_csv(p) for p in sorted(out.glob("summary?*.csv"))], ignore_index=True)
    diagonal = runs[runs["variant"] == "diagonal"].set_index("seed")
    for split in ("train", "test"):
        runs[f"{split}_minus_diagonal"] = runs[f"{split}_elbo"] - runs["seed"].map(diagonal[f"{split}_elbo"])
    columns = dict(
        seeds=("seed", "count"), train_elbo=("train_elbo", "mean"), test_elbo=("test_elbo", "mean"),
        train_minus_diagonal=("train_minus_diagonal", "mean"), test_minus_diagonal=("test_minus_diagonal", "mean"),
        test_minus_diagonal_sd=("test_minus_diagonal", "std"), best_test_elbo=("best_test_elbo", "mean"))
    if "condition_max" in runs:  # only Gaussian families have a covariance
        columns["condition_max"] = ("condition_max", "max")
    table = runs.groupby("variant", sort=False).agg(**columns).reset_index()
    table.to_csv(out / "summary.csv", index=False, float_format="%.3f")
    curves = pd.concat([pd.read_csv(p) for p in sorted(out.glob("curves?*.csv"))], ignore_index=True)
    shown = {"diagonal": plots.family_colours()["diagonal"], "full: exp, default init (before)": "0.55",
             FIXED: plots.family_colours()["full"], "iaf: undivided step, default init (before)": "0.75",
             "iaf": plots.family_colours()["iaf"]}
    shown = {name: colour for name, colour in shown.items() if name in set(curves["variant"])}
    with plt.rc_context(plots.style()):
        fig, ax = plt.subplots(figsize=(plots.DOUBLE_COLUMN * 0.75, plots.SINGLE_COLUMN))
        for name, colour in shown.items():
            c = curves[curves["variant"] == name].groupby("epoch")
            train = -(c["rate"].mean() + c["distortion"].mean())
            test = -(c["monitor_rate"].mean() + c["monitor_distortion"].mean())
            ax.plot(test.index, test, color=colour, lw=1.5, label=f"{name}, test")
            ax.plot(train.index, train, color=colour, lw=1, ls="--", label=f"{name}, train")
        late = curves[(curves["epoch"] >= curves["epoch"].max() // 4) & curves["variant"].isin(list(shown))]
        ax.set_ylim(-(late["monitor_rate"] + late["monitor_distortion"]).max() - 1,
                    -(late["rate"] + late["distortion"]).min() + 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("ELBO  [nats]")
        seeds = ", ".join(map(str, sorted(set(curves["seed"]))))
        ax.set_title(f"Learning curves (d = 8, β = 1; mean of seeds {seeds})")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=7)
        plots.save_figure(fig, out, "curves")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", type=int, help="indices into VARIANTS (default: all)")
    parser.add_argument("--tag", default="", help="suffix of the output files (for runs in parallel)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--summarise", action="store_true", help="only gather the stored runs of --out")
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    if args.variants:
        names = [names[i] for i in args.variants]
    if args.summarise:
        print(summarise(args.out).to_string(index=False))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.dataset, args.out, args.epochs, args.seeds, names, tag=args.tag)


if __name__ == "__main__":
    main()
