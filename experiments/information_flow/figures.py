"""The information-flow experiment's figures: information against probe noise (one panel per kind), information
against distortion, and the VAEs' rate per latent dimension."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ibkit import plots
from ibkit.models import kind_style

from .findings import model_label

KIND_TITLES = {"ae": "deterministic AE", "sparse_ae": "sparse AE", "noisy_ae": "noisy AE", "vae": "VAE"}  # panels
KNOB_OF = {"ae": "latent_dim", "sparse_ae": "sparsity", "noisy_ae": "noise", "vae": "beta"}  # what shades a panel


def _shades(kind: str, n: int) -> list:
    """n shades of the kind's colour, light to dark, for variants of one kind."""
    return sns.dark_palette(plots.kind_colour(kind), n + 2, reverse=True)[:n][::-1] if n else []


def information_vs_probe_noise(curves: pd.DataFrame, axes: Sequence[Axes] | np.ndarray | None = None) -> Figure:
    """InfoNCE lower bound on I(X;Z) (nats) against the probe noise std sigma, one panel per kind and one line per
    model (mean over seeds). log N is the ceiling; dotted lines are the capacity bounds of tanh-bounded noisy AEs
    seen through the probe, d/2 log(1 + 1/(sigma_0^2 + sigma^2)). ``axes``: one Axes per kind present (in the
    order deterministic, sparse, noisy, VAE) to draw into; without them, a new 2 x 2 figure."""
    kinds = [k for k in KIND_TITLES if k in set(curves["kind"])]
    with plt.rc_context(plots.style()):
        fig, panels, own = _probe_panels(axes, len(kinds))
        log_n = curves["log_n"].max()
        for ax, kind in zip(panels, kinds, strict=False):  # a 2 x 2 grid may hold more panels than kinds
            _draw_probe_panel(ax, curves[curves["kind"] == kind].copy(), kind, log_n)
        for ax in panels[len(kinds):]:
            ax.set_visible(False)
        for ax in panels:
            if not ax.xaxis_inverted():  # noise shrinks to the right (shared axes: inverting one inverts all)
                ax.invert_xaxis()
            ax.set_ylim(0, log_n * 1.15)
            ax.xaxis.set_tick_params(labelbottom=True)  # each panel's own axis labels: its legend sits below it
            ax.set_xlabel("probe noise std σ  [code units, log scale]", fontsize=7)
            spec = ax.get_subplotspec()
            if spec is None or spec.is_first_col():
                ax.set_ylabel("InfoNCE bound on I(X;Z)  [nats]")
        if "noisy_ae" in kinds:
            fig.text(0.5, -0.01, "noisy AE: solid = tanh-bounded code, dashed = unbounded; "
                     "dotted = capacity bound through the probe", ha="center", fontsize=6)
        if own:
            fig.tight_layout(h_pad=1.0)
    return fig


def _probe_panels(axes: Sequence[Axes] | np.ndarray | None, n: int) -> tuple[Figure, list[Axes], bool]:
    """The given axes (at least ``n``) and their figure, or a new 2 x 2 grid with shared axes; and whether new."""
    if axes is None:
        fig, grid = plt.subplots(2, 2, figsize=(plots.DOUBLE_COLUMN, plots.DOUBLE_COLUMN * 0.95), sharex=True,
                                 sharey=True)
        return fig, list(grid.flat), True
    panels: list[Axes] = list(axes.flat) if isinstance(axes, np.ndarray) else list(axes)
    if len(panels) < n:
        raise ValueError(f"information_vs_probe_noise draws one panel per kind, {n} here; got {len(panels)} axes: "
                         f"pass axes=plt.subplots(1, {n}, sharex=True, sharey=True)[1]")
    return plots.figure_of(panels[0]), panels, False


def _draw_probe_panel(ax: Axes, sub: pd.DataFrame, kind: str, log_n: float) -> None:
    """One kind's probe curves, a line per model in shades of the kind's colour, under the log N ceiling."""
    sub["label"] = sub.apply(model_label, axis=1)
    key = KNOB_OF[kind]
    levels = sorted(sub[key].unique())
    colours = dict(zip(levels, _shades(kind, len(levels)), strict=True))
    for label, g in sub.groupby("label", sort=False):
        mean = g.groupby("sigma")["infonce"].mean()
        first = g.iloc[0]
        dashed = kind == "noisy_ae" and not first["code_bound"]
        ax.plot(mean.index, mean.values, marker=kind_style(kind).marker, ms=3, lw=1.2,
                ls="--" if dashed else "-", color=colours[first[key]], label=label)
        if kind == "noisy_ae" and first["code_bound"] == "tanh":
            s = np.geomspace(mean.index.min(), mean.index.max(), 50)
            cap = 0.5 * first["latent_dim"] * np.log1p(1 / (first["noise"] ** 2 + s**2))
            ax.plot(s, np.minimum(cap, log_n * 1.3), ls=":", lw=1, color=colours[first[key]])
    ax.axhline(log_n, color="0.3", ls="--", lw=0.8)
    ax.text(1.0, log_n, f" log N = {log_n:.2f}", va="bottom", ha="right", fontsize=6,
            transform=ax.get_yaxis_transform())
    ax.set_title(KIND_TITLES[kind])
    ax.set_xscale("log")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False, fontsize=6)


def information_vs_distortion(runs: pd.DataFrame, split: str = "test", ax: Axes | None = None) -> Figure:
    """Information (InfoNCE lower bound, bar up to the upper bound) against distortion, nats, one point per
    model (mean over seeds). Deterministic codes (hollow) are measured through the smallest probe."""
    ok = runs[(runs["split"] == split) & (runs["status"] == "ok")].copy()
    ok["label"] = ok.apply(model_label, axis=1)
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(ax, (plots.DOUBLE_COLUMN * 0.8, plots.SINGLE_COLUMN * 1.2))
        log_n = ok["log_n"].max()
        for kind in KIND_TITLES:
            if (ok["kind"] == kind).any():
                _draw_information_points(ax, ok[ok["kind"] == kind], kind, log_n)
        ax.axhline(log_n, color="0.3", ls="--", lw=0.8)
        ax.text(0.99, log_n, f"log N = {log_n:.2f}", va="bottom", ha="right", fontsize=6,
                transform=ax.get_yaxis_transform())
        ax.set_ylim(0, log_n * 1.15)
        ax.set_xlabel("distortion D = −E log p(x|z)  [nats]")
        ax.set_ylabel("I(X;Z): InfoNCE (point) to upper bound (bar)  [nats]")
        ax.set_title(f"Information against distortion ({split} split)")
        ax.text(0.0, -0.2, "▲: the upper bound lies above the frame (the table has its value)", fontsize=6,
                transform=ax.transAxes)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=6)
    plots.note_left_out(fig, runs, split)
    return fig


def _draw_information_points(ax: Axes, sub: pd.DataFrame, kind: str, log_n: float) -> None:
    """One kind's models: InfoNCE as the point, a bar up to the upper bound (cut at the frame: an arrowhead)."""
    marker = kind_style(kind).marker
    pts = sub.groupby("label", sort=False)[["distortion", "mi_lower", "mi_upper", "probe_sigma"]].mean()
    upper = np.minimum(pts["mi_upper"], log_n * 1.1)  # unbounded upper bounds are cut at the frame
    bar = (upper - pts["mi_lower"]).clip(lower=0)  # sampling noise can put LOO a hair below InfoNCE
    probed = kind in ("ae", "sparse_ae")  # hollow: measured through the smallest probe
    for (label, p), b, cut, colour in zip(pts.iterrows(), bar, pts["mi_upper"] > upper, _shades(kind, len(pts)),
                                          strict=True):
        suffix = f" (probe σ={p['probe_sigma']:g})" if probed else ""
        ax.errorbar([p["distortion"]], [p["mi_lower"]], yerr=[[0], [b]], fmt=marker, ms=5, color=colour,
                    mfc="white" if probed else colour, capsize=0 if cut else 2, lw=0.8, label=label + suffix)
        if cut:  # the upper bound lies above the frame: an arrowhead where its bar leaves
            ax.plot([p["distortion"]], [log_n * 1.1], marker="^", ms=4, color=colour, clip_on=False)


def kl_per_dim(kl: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Heatmap of E_x KL(q(z_k|x) || p(z_k)) (nats) for each VAE beta (rows) and latent dimension (columns,
    sorted by KL within each row, so the row reads as the model's spectrum of used dimensions)."""
    mean = kl.groupby(["beta", "dim"])["kl"].mean().unstack("dim")
    spectrum = pd.DataFrame(-np.sort(-mean.values, axis=1), index=[f"β={b:g}" for b in mean.index],
                            columns=[str(i + 1) for i in range(mean.shape[1])])
    with plt.rc_context(plots.style()):
        fig, ax = plots.figure_for(ax, (plots.SINGLE_COLUMN * 1.3, 0.45 * len(spectrum) + 1.0))
        sns.heatmap(spectrum, annot=True, fmt=".2f", cmap="mako_r", ax=ax, annot_kws={"fontsize": 6},
                    cbar_kws={"label": "KL per dimension  [nats]"})
        ax.set_xlabel("latent dimension, sorted by KL")
        ax.set_ylabel("VAE KL weight")
        ax.set_title("Rate per latent dimension (test split)")
    return fig
