"""The posterior-families experiment's figures: the inference gap, the latents' correlation given x, and the gap
split into approximation and amortisation, each per posterior family, beta and decoder; and the learning curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ibkit import plots


def _family_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished test rows, each with its setting ("full\\nβ=1", and the decoder where the runs have several:
    "full\\nβ=1\\nfrozen") and its panel ("β=1", "β=1\\nfrozen"): the bars' x-axes."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == "test")].copy()
    if "decoder" not in ok:
        ok["decoder"] = "learned"
    several = ok["decoder"].nunique() > 1
    ok["panel"] = ok.apply(lambda r: f"β={r['beta']:g}" + (f"\n{r['decoder']}" if several else ""), axis=1)
    ok["setting"] = ok["posterior"] + "\n" + ok["panel"]
    return ok


def gap_by_family(runs: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """The inference gap log p(x) − ELBO, nats, per posterior family and beta: exact where the runs know log p(x)
    (column ``inference_gap``, with the best diagonal q's closed-form cost dashed), otherwise its lower bound
    IWAE − ELBO; bars are means over seeds with whiskers for the 95% bootstrap interval over seeds."""
    ok = _family_rows(runs)
    exact = "inference_gap" in ok and ok["inference_gap"].notna().all()
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(ax, (plots.SINGLE_COLUMN * 1.4, plots.SINGLE_COLUMN))
        sns.barplot(ok, x="panel", y="inference_gap" if exact else "iwae_minus_elbo", hue="posterior",
                    palette=plots.family_colours(), errorbar=plots.SEED_INTERVAL, seed=0, capsize=0.1, ax=ax,
                    hue_order=[f for f in plots.family_colours() if f in set(ok["posterior"])])
        if exact:
            ax.axhline(ok["best_diagonal_kl"].iloc[0], color="0.3", ls="--", lw=1, label="best diagonal q")
        ax.set_xlabel("KL weight β" + (" and decoder" if ok["panel"].str.contains("\n").any() else ""))
        ax.set_ylabel(f"{'log p(x)' if exact else 'IWAE'} − ELBO  [nats]")
        ax.set_title(f"Inference gap{' (exact)' if exact else ' (lower bound)'} by posterior family")
        ax.legend(title="posterior", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    plots.note_left_out(fig, runs, "test")
    return fig


def _label_family_axes(ax: Axes, ylabel: str, title: str) -> None:
    """Axis labels and title of a per-(family, beta) bar chart, its legend below the axes, clear of the bars."""
    ax.set_xlabel("posterior family and KL weight")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)


def correlation_by_family(runs: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Mean absolute correlation between latents given x: under q, and under the true posterior (adaptive
    importance sampling; only the rows whose sampler reached the ESS threshold), per family and beta."""
    ok = _family_rows(runs)
    long = ok.melt(id_vars=["setting"], value_vars=["q_correlation", "true_correlation"], var_name="measure",
                   value_name="correlation")
    long["measure"] = long["measure"].map({"q_correlation": "q(z|x)",
                                           "true_correlation": "p(z|x), rows with ESS ≥ threshold"})
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(ax, (plots.DOUBLE_COLUMN * 0.6, plots.SINGLE_COLUMN))
        sns.barplot(long, x="setting", y="correlation", hue="measure", palette=[plots.PALETTE[7], plots.PALETTE[3]],
                    errorbar=plots.SEED_INTERVAL, seed=0, capsize=0.1, ax=ax)
        _label_family_axes(ax, "mean |correlation| of latents given x  [unitless]",
                           "Berkson: latents independent a priori, dependent given x")
    plots.note_left_out(fig, runs, "test")
    return fig


def amortization_by_family(runs: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """The inference gap split into its approximation part (log p(x) − ELBO of the best q of the family) and
    its amortisation part (ELBO of the best q − ELBO of the encoder's q), nats, mean over seeds; whiskers: the 95%
    bootstrap interval over seeds of the approximation gap (at its top) and of the whole gap (at the stack's top)."""
    ok = _family_rows(runs).assign(total_gap=lambda d: d["approximation_gap"] + d["amortization_gap"])
    pts = plots.mean_interval(ok, "setting", cols=("approximation_gap", "total_gap"))
    pts = pts.set_index("setting").loc[list(dict.fromkeys(ok["setting"]))]  # the runs' order
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(ax, (plots.DOUBLE_COLUMN * 0.6, plots.SINGLE_COLUMN))
        x = np.arange(len(pts))
        ax.bar(x, pts["approximation_gap"], color=plots.PALETTE[0], label="approximation gap")
        ax.bar(x, pts["total_gap"] - pts["approximation_gap"], bottom=pts["approximation_gap"],
               color=plots.PALETTE[1], label="amortisation gap")
        for column in ("approximation_gap", "total_gap"):
            ax.errorbar(x, pts[column], yerr=pts[f"{column}_err"], fmt="none", color="0.25", capsize=3, lw=1.2)
        ax.set_xticks(x, pts.index)
        _label_family_axes(ax, "log p(x) − ELBO  [nats]", "Where the ELBO gap comes from (Cremer et al. 2018)")
    plots.note_left_out(fig, runs, "test")
    return fig


def learning_curves(runs: pd.DataFrame, history: pd.DataFrame) -> Figure:
    """ELBO per epoch, nats, at the beta nearest 1: on the training minibatches (the epoch's running mean, dashed)
    and on the test split after the epoch (solid), per family, mean over seeds; one panel per decoder. A train
    curve that keeps rising while the test curve falls is over-fitting."""
    ok = _family_rows(runs)
    beta = ok["beta"].iloc[(ok["beta"] - 1).abs().argmin()]
    keep = ok[ok["beta"] == beta][["run_id", "posterior", "decoder", "seed"]]
    h = history.merge(keep, on="run_id")
    h = h.assign(train=-(h["rate"] + h["distortion"]), test=-(h["monitor_rate"] + h["monitor_distortion"]))
    decoders = [d for d in ("learned", "frozen", "generating") if d in set(h["decoder"])]
    with plt.rc_context(plots.style()):
        fig, axes = plt.subplots(1, len(decoders), figsize=(plots.SINGLE_COLUMN * len(decoders) + 1.6,
                                                            plots.SINGLE_COLUMN), squeeze=False, sharey=False)
        for ax, decoder in zip(axes[0], decoders, strict=True):
            d = h[h["decoder"] == decoder]
            for family, f in d.groupby("posterior", sort=False):
                mean = f.groupby("epoch")[["train", "test"]].mean()
                colour = plots.family_colours().get(family, "0.3")
                ax.plot(mean.index, mean["test"], color=colour, lw=1.5, label=f"{family}, test")
                ax.plot(mean.index, mean["train"], color=colour, lw=1, ls="--", label=f"{family}, train")
            last = d.groupby("epoch")[["train", "test"]].mean()
            tail = last.iloc[len(last) // 4:]  # the first epochs' climb would flatten what matters
            ax.set_ylim(tail.min().min() - 2, tail.max().max() + 2)
            ax.set_xlabel("epoch")
            ax.set_ylabel("ELBO  [nats]")
            ax.set_title(f"{decoder} decoder, β = {beta:g}")
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        fig.tight_layout()
    return fig
