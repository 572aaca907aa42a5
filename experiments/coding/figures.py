"""The coding experiment's figure: each code's measured length against the bound it realises, across beta. Points
are means over seeds, whiskers the 95% bootstrap interval over seeds (over the coded rows for one seed)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ibkit import plots


def _points(runs: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    """Mean and half-width per beta; for one seed the half-width of the rows' interval (``COL_ex_lo/hi``)."""
    pts = plots.mean_interval(runs, "beta", cols=cols).sort_values("beta")
    if runs["seed"].nunique() == 1:
        one = runs.set_index("beta").loc[pts["beta"]]
        for c in cols:
            if f"{c}_ex_lo" in one:
                pts[f"{c}_err"] = ((one[f"{c}_ex_hi"] - one[f"{c}_ex_lo"]) / 2).to_numpy()
    return pts


def code_lengths(runs: pd.DataFrame, split: str = "test") -> Figure:
    """Left: the bits-back stream's mean length per row minus -ELBO (paired row by row), nats per example, each
    point labelled with their ratio; beside it the clean-bits control (a chain per row) and -log p(x)'s IWAE
    estimate, the floor no code passes on average. Right: the bits that send one exact sample of q(z|x) (channel
    simulation) against the rate (KL, bits) and the bound sum over blocks of KL + log2(KL + 1) + 4 (Li & El Gamal
    2018)."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == split)].copy()
    colour = plots.kind_colour("vae")
    with plt.rc_context(plots.style()):
        fig, (left, right) = plt.subplots(1, 2, figsize=(plots.SINGLE_COLUMN * 2.6, plots.SINGLE_COLUMN * 0.95))
        if len(ok):
            ok["iwae_gap"] = -ok["iwae"] - ok["neg_elbo"]  # -log p(x) - (-ELBO) <= 0
            pts = _points(ok, ("bits_back_excess", "bits_back_clean_excess", "iwae_gap", "bits_back_ratio",
                               "kl_bits", "bound_bits", "channel_bits"))
            beta = pts["beta"].to_numpy()
            left.axhline(0, color="0.15", lw=1.2, label="−ELBO (64 draws per row)")
            left.plot(beta, pts["iwae_gap"], color="0.45", lw=1, ls="--", marker="o", ms=2.5,
                      label="−log p(x), its IWAE estimate")
            left.errorbar(beta, pts["bits_back_excess"], yerr=pts["bits_back_excess_err"], color=colour,
                          marker="D", ms=4, ls="none", capsize=2, mfc="none", label="bits-back stream, per row")
            left.errorbar(beta * 1.08, pts["bits_back_clean_excess"], yerr=pts["bits_back_clean_excess_err"],
                          color="0.35", marker="s", ms=3, ls="none", capsize=2, mfc="none",
                          label="clean bits (a chain per row)")
            for b, y, ratio in zip(beta, pts["bits_back_excess"], pts["bits_back_ratio"], strict=True):
                left.annotate(f"×{ratio:.4f}", (b, y), xytext=(5, 2), textcoords="offset points", fontsize=5.5,
                              color=colour, va="bottom")
            right.plot(beta, pts["bound_bits"], color="0.45", lw=1, ls="--",
                       label="bound: Σ KL + log₂(KL+1) + 4 per block")
            right.plot(beta, pts["kl_bits"], color="0.15", lw=1.2, marker="o", ms=3, label="rate: KL(q‖p)")
            right.errorbar(beta, pts["channel_bits"], yerr=pts["channel_bits_err"], color=colour, marker="D", ms=4,
                           ls="none", capsize=2, mfc="none", label="channel simulation: indices sent")
            for ax in (left, right):
                plots.beta_axis(ax, beta)
                ax.margins(x=0.12)
            right.set_ylim(bottom=0)
            top = max(0.3, float((pts["bits_back_excess"] + pts["bits_back_excess_err"]).max()) * 1.6)
            left.set_ylim(top=top)
        left.set_ylabel("length − (−ELBO)  [nats per example]")
        right.set_ylabel("one sample of q(z|x)  [bits per example]")
        left.set_title("bits-back: −ELBO is a code length", loc="left")
        right.set_title("channel simulation: the rate is a cost", loc="left")
        left.legend(loc="best", frameon=False, fontsize=5.5)
        right.legend(loc="upper right", frameon=False, fontsize=6)
        fig.tight_layout()
    plots.note_left_out(fig, runs, split)
    return fig
