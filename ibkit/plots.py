"""Paper-style figures drawn from stored tidy tables (never retraining). Saved as PDF (vector) and PNG (200 dpi).

One house style: seaborn's colour-blind palette and a fixed colour and marker per model kind in every figure.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

_PALETTE = sns.color_palette("colorblind")
KIND_STYLE = {  # kind -> (colour, marker, legend label)
    "vae": (_PALETTE[0], "o", "VAE"),
    "noisy_ae": (_PALETTE[1], "s", "noisy AE"),
    "ae": (_PALETTE[2], "D", "AE"),
    "sparse_ae": (_PALETTE[3], "^", "sparse AE"),
}
SINGLE_COLUMN = 3.3  # inches
DOUBLE_COLUMN = 6.8


def _style() -> dict:
    return {
        **sns.axes_style("ticks"),
        "axes.grid": True,
        "grid.color": "0.92",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 8,
        "axes.labelsize": 8,
        "axes.titlesize": 9,
        "legend.fontsize": 7,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "pdf.fonttype": 42,
    }


def save_figure(fig: plt.Figure, folder: str | os.PathLike, name: str) -> list[Path]:
    """Save ``fig`` as folder/name.pdf and folder/name.png (200 dpi); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.pdf", folder / f"{name}.png"]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=200, bbox_inches="tight")
        os.replace(tmp, path)
    plt.close(fig)
    return paths


def _mean_sem(df: pd.DataFrame, by: str, cols=("rate", "distortion")) -> pd.DataFrame:
    """Mean and standard error over seeds of ``cols`` for each value of ``by``."""
    g = df.groupby(by)[list(cols)]
    return g.mean().join(g.sem(ddof=1).fillna(0.0).add_suffix("_sem")).reset_index()  # one seed: no bar


def rate_distortion(df: pd.DataFrame, split: str = "test", width: float = SINGLE_COLUMN * 1.45) -> plt.Figure:
    """Distortion against rate (nats) for the stochastic models; deterministic codes as reference lines.

    VAEs form a curve over beta (annotated); noisy AEs are points by noise level; AEs and sparse AEs, whose
    rate is unbounded, are horizontal lines at their distortion. Grey lines are constant ELBO, D + R = c
    (Alemi et al. 2018, Fig. 1). Points show the mean over seeds with standard-error bars when there are several.
    """
    runs = df[(df["split"] == split) & (df["status"] == "ok")]
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(width, width * 0.75))
        vae = runs[runs["kind"] == "vae"]
        if len(vae):
            colour, marker, label = KIND_STYLE["vae"]
            pts = _mean_sem(vae, "beta").sort_values("beta")
            ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_sem"], yerr=pts["distortion_sem"],
                        color=colour, marker=marker, ms=4, lw=1.2, capsize=2, label=f"{label} (beta sweep)")
            low = pts["distortion"].quantile(0.35)  # labels below the flat low-distortion end, above the steep end
            _annotate_groups(ax, pts, "beta", "β", colour, lambda p: (4, -10) if p["distortion"] < low else (4, 3))
        noisy = runs[runs["kind"] == "noisy_ae"]
        if len(noisy):
            colour, marker, label = KIND_STYLE["noisy_ae"]
            pts = _mean_sem(noisy, "noise")
            single = f", σ = {pts['noise'].iloc[0]:.3g}" if len(pts) == 1 else ""
            ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_sem"], yerr=pts["distortion_sem"],
                        color=colour, marker=marker, ms=5, ls="none", capsize=2,
                        label=f"{label}{single} (rate: KL to N(0, I))")
            if len(pts) > 1:
                _annotate_groups(ax, pts, "noise", "σ", colour, lambda p: (4, 3))
        for kind in ("ae", "sparse_ae"):
            det = runs[runs["kind"] == kind]
            if len(det):
                colour, _, label = KIND_STYLE[kind]
                ax.axhline(det["distortion"].mean(), color=colour, ls="--", lw=1,
                           label=f"{label}: D = {det['distortion'].mean():.1f} (rate unbounded)")
        ax.set_xlim(0, ax.get_xlim()[1] * 1.15)  # room for the labels of the rightmost points
        ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
        _constant_elbo_lines(ax)
        ax.set_xlabel("rate R = E KL(q(z|x) ‖ p(z))  [nats]")
        ax.set_ylabel("distortion D = −E log p(x|z)  [nats]")
        ax.set_title(f"Rate–distortion plane ({split} split)")
        ax.legend(loc="upper right", frameon=False)
    return fig


def _annotate_groups(ax: plt.Axes, pts: pd.DataFrame, column: str, symbol: str, colour, offset_for) -> None:
    """Label each point with its ``column`` value; points closer than 3% of the axes share one label
    ("β=5.28–20"), so collapsed models do not print on top of each other."""
    x_span = max(pts["rate"].max(), 1e-9)
    y_span = max(pts["distortion"].max(), 1e-9)
    pts = pts.sort_values(column)
    groups: list[list] = []
    for _, p in pts.iterrows():
        last = groups[-1][-1] if groups else None
        near = last is not None and abs(p["rate"] - last["rate"]) < 0.03 * x_span and \
            abs(p["distortion"] - last["distortion"]) < 0.03 * y_span
        groups[-1].append(p) if near else groups.append([p])
    for g in groups:
        text = f"{symbol}={g[0][column]:.3g}" + (f"–{g[-1][column]:.3g}" if len(g) > 1 else "")
        ax.annotate(text, (g[0]["rate"], g[0]["distortion"]), xytext=offset_for(g[0]), textcoords="offset points",
                    fontsize=6, color=colour)


def _constant_elbo_lines(ax: plt.Axes, n: int = 6) -> None:
    """Light lines D + R = c (slope -1): points on one line have the same ELBO = -c."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for i, c in enumerate(np.linspace(0, x1 + y1, n + 2)[1:-1]):
        ax.plot([x0, x1], [c - x0, c - x1], color="0.8", lw=0.6, zorder=0,
                label="constant ELBO: D + R = const" if i == 0 else None)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
