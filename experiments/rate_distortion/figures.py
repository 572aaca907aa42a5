"""The rate-distortion experiment's own figure: a gaussian source's beta-VAE sweep against Shannon's R(D). (The
rate-distortion plane itself is shared: ``ibkit.plots.rate_distortion``.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ibkit import plots
from ibkit.plots import kind_style
from ibkit.theory import gaussian_rd, gaussian_rd_curve

Panel = tuple[str, str, Callable]  # (column of the runs, x-axis label, MSE -> that column's units)


def rd_shannon(df: pd.DataFrame, spectrum: list[float], latent_dim: int, scale: float | None,
               split: str = "test", axes: Sequence[Axes] | np.ndarray | None = None) -> Figure:
    """The beta-VAE sweep against Shannon's rate-distortion function of its Gaussian source (reverse
    water-filling over ``spectrum``, Cover & Thomas 2006, thm. 10.3.3): rate against MSE per example, and,
    when the decoder scale s is fixed, against the NLL distortion mse / (2 s^2) + D/2 ln(2 pi s^2). Dashed: the
    curve with only ``latent_dim`` directions free to carry rate; circles on it: where the water level crosses
    an eigenvalue and one more unit falls silent. ``axes``: one Axes per panel to draw into (two with a fixed
    scale, else one); without them, a new figure."""
    runs = df[(df["split"] == split) & (df["status"] == "ok") & (df["kind"] == "vae")]
    pts = plots.mean_interval(runs, "beta", cols=("rate", "mse", "distortion")).sort_values("beta") \
        if len(runs) else None
    panels = _panels(spectrum, scale)
    with plt.rc_context(plots.style()):
        fig, panel_axes = _panel_axes(axes, len(panels))
        for ax, (column, xlabel, to_x) in zip(panel_axes, panels, strict=True):
            _draw_shannon(ax, spectrum, latent_dim, to_x)
            if pts is not None:
                _draw_sweep(ax, pts, column)
            top = 1.6 * max(pts["rate"].max() if pts is not None else 0, gaussian_rd(spectrum, spectrum[-1])[0], 1)
            ax.set_ylim(0, top)  # the curve rises without bound as D -> 0: show the sweep's range
            ax.set_xlabel(xlabel)
            ax.set_ylabel("rate R  [nats]")
        panel_axes[0].set_title(f"Gaussian source: β-VAEs on Shannon's R(D) ({split} split)", loc="left")
        panel_axes[-1].legend(loc="upper right", frameon=False)
    plots.note_left_out(fig, df, split)
    return fig


def _panels(spectrum: list[float], scale: float | None) -> list[Panel]:
    """Rate against MSE; with a fixed decoder scale also against the NLL distortion it implies."""
    panels: list[Panel] = [("mse", "distortion: MSE per example  [squared units]", lambda d: d)]
    if scale is not None:
        offset = 0.5 * len(spectrum) * np.log(2 * np.pi * scale**2)
        panels.append(("distortion", "distortion: −E log p(x|z)  [nats]", lambda d: d / (2 * scale**2) + offset))
    return panels


def _panel_axes(axes: Sequence[Axes] | np.ndarray | None, n: int) -> tuple[Figure, list[Axes]]:
    """The given axes (at least ``n``) and their figure, or a new row of ``n`` panels."""
    if axes is None:
        fig, grid = plt.subplots(1, n, figsize=(plots.SINGLE_COLUMN * 1.3 * n, plots.SINGLE_COLUMN), squeeze=False)
        return fig, list(grid[0])
    axes = list(axes.flat) if isinstance(axes, np.ndarray) else list(axes)
    if len(axes) < n:
        raise ValueError(f"rd_shannon draws {n} panel(s) (two when the decoder scale is fixed); got {len(axes)} "
                         f"axes: pass axes=plt.subplots(1, {n})[1]")
    return plots.figure_of(axes[0]), axes[:n]


def _draw_shannon(ax: Axes, spectrum: list[float], latent_dim: int, to_x: Callable) -> None:
    """Shannon's R(D), the curve with ``latent_dim`` directions, and where each unit falls silent on it."""
    free, bound = gaussian_rd_curve(spectrum, 300), gaussian_rd_curve(spectrum, 300, max_dims=latent_dim)
    ax.plot(to_x(free["mse"]), free["rate"], color="0.1", lw=1.2, label="Shannon R(D)")
    if latent_dim < len(spectrum):
        ax.plot(to_x(bound["mse"]), bound["rate"], color="0.45", lw=1, ls="--", label=f"R(D) with {latent_dim} latents")
    for i, lam in enumerate(spectrum[:latent_dim], start=1):  # theta = lambda_i: unit i falls silent
        r, d = gaussian_rd(spectrum, lam, max_dims=latent_dim)
        ax.plot(to_x(d), r, "o", ms=4, mfc="white", mec="0.45",
                label="θ = λᵢ: a unit falls silent (i→i−1)" if i == 1 else None)
        ax.annotate(f"{i}→{i - 1}", (to_x(d), r), xytext=(3, 3), textcoords="offset points", fontsize=6, color="0.35")


def _draw_sweep(ax: Axes, pts: pd.DataFrame, column: str) -> None:
    """The VAEs' mean points (bars: the 95% interval over seeds), each labelled with its beta."""
    colour, marker = plots.kind_colour("vae"), kind_style("vae").marker
    ax.errorbar(pts[column], pts["rate"], xerr=pts[f"{column}_err"], yerr=pts["rate_err"], color=colour,
                marker=marker, ms=4, ls="none", capsize=2, label="β-VAE (mean over seeds)")
    for _, p in pts.iterrows():
        ax.annotate(f"β={p['beta']:.3g}", (p[column], p["rate"]), xytext=(5, 5), textcoords="offset points",
                    fontsize=6, color=colour)
