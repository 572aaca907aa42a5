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
from ibkit.plots import kind_style

from .findings import model_label

KIND_TITLES = {"ae": "deterministic AE", "sparse_ae": "sparse AE", "noisy_ae": "noisy AE", "vae": "VAE"}  # panels
KNOB_OF = {"ae": "latent_dim", "sparse_ae": "sparsity", "noisy_ae": "noise", "vae": "beta"}  # what shades a panel


def _shades(kind: str, n: int, muted: bool = False) -> list:
    """n clearly different shades of the kind's colour, dark to light, for variants of one kind (``muted``: the
    colour desaturated, for a second family of variants drawn beside the first, e.g. unbounded noisy AEs)."""
    base = sns.desaturate(plots.kind_colour(kind), 0.3) if muted else plots.kind_colour(kind)
    dark, light = tuple(0.45 * c for c in base), tuple(c + 0.45 * (1 - c) for c in base)
    return [base] if n == 1 else sns.blend_palette([dark, base, light], n) if n else []


def _frame(ax: Axes, log_n: float) -> None:
    """The information axis from a little below 0 (a line at 0 stays visible) to above the log N ceiling."""
    ax.set_ylim(-0.04 * log_n, log_n * 1.15)


def _ceiling(ax: Axes, log_n: float, at: float = 1.0) -> None:
    """The log N line under everything else, in a style no model's curve has, labelled ending at ``at`` (a
    fraction of the axes' width)."""
    ax.axhline(log_n, color="0.55", ls="-.", lw=0.7, zorder=1)
    ax.text(at, log_n, f"log N = {log_n:.2f} ", va="bottom", ha="right", fontsize=6, color="0.35",
            transform=ax.get_yaxis_transform())


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
            _frame(ax, log_n)
            ax.xaxis.set_tick_params(labelbottom=True)  # each panel's own axis labels: its legend sits below it
            ax.set_xlabel("probe noise std σ  [code units, log scale]", fontsize=7)
            spec = ax.get_subplotspec()
            if spec is None or spec.is_first_col():
                ax.set_ylabel("InfoNCE bound on I(X;Z)  [nats]")
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
    bounded = dict(zip(levels, _shades(kind, len(levels)), strict=True))
    unbounded = dict(zip(levels, _shades(kind, len(levels), muted=True), strict=True))
    top = log_n * 1.15
    for label, g in sub.groupby("label", sort=False):
        mean = g.groupby("sigma")["infonce"].mean()
        first = g.iloc[0]
        free = kind == "noisy_ae" and not first["code_bound"]  # an unbounded code: dashed, hollow, muted
        colour = (unbounded if free else bounded)[first[key]]
        ax.plot(mean.index, mean.values, marker=kind_style(kind).marker, ms=3.5, lw=1.2, ls="--" if free else "-",
                color=colour, mfc="white" if free else colour, label=label, zorder=3)
        if kind == "noisy_ae" and first["code_bound"] == "tanh":  # its capacity through the probe, in the frame
            s = np.geomspace(mean.index.min(), mean.index.max(), 200)
            cap = 0.5 * first["latent_dim"] * np.log1p(1 / (first["noise"] ** 2 + s**2))
            inside = cap <= top
            ax.plot(s[inside], cap[inside], ls=":", lw=1, color=colour, zorder=2,
                    label=f"capacity bound, σ={first['noise']:g} tanh")
    _ceiling(ax, log_n)
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
        _ceiling(ax, log_n, at=_clear_spot(ax, ok, log_n))
        _frame(ax, log_n)
        _zoom_on_the_crowd(ax, ok, log_n)
        ax.set_xlabel("distortion D = −E log p(x|z)  [nats]")
        ax.set_ylabel("I(X;Z): InfoNCE (point) to upper bound (bar)  [nats]")
        ax.set_title(f"Information against distortion: {plots.data_title(ok, split)}")
        ax.text(0.0, -0.2, "▲: the upper bound lies above the frame (runs.csv has it). Hollow: a code measured "
                "through a probe channel, bracketed on I(X; Z + σε)", fontsize=6,
                transform=ax.transAxes)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=6)
    plots.note_left_out(fig, runs, split)
    return fig


def _clear_spot(ax: Axes, ok: pd.DataFrame, log_n: float) -> float:
    """Where along the log N line (a fraction of the axes' width, the label's right end) no code near the ceiling
    sits under the label: the right end, else the first clear place leftwards."""
    x0, x1 = ax.get_xlim()
    near = ok.loc[ok["mi_lower"] > 0.8 * log_n, "distortion"].groupby(ok["label"]).mean()
    at = (near - x0) / (x1 - x0)
    return next((c for c in (1.0, 0.8, 0.6, 0.4) if not ((at > c - 0.22) & (at < c + 0.02)).any()), 1.0)


def _zoom_on_the_crowd(ax: Axes, ok: pd.DataFrame, log_n: float) -> None:
    """An inset magnifying the crowd of codes at the log N ceiling (deterministic, sparse and low-noise ones sit
    within a few nats of distortion of each other), in the empty lower left of the frame."""
    means = ok[ok["mi_lower"] > 0.9 * log_n].groupby("label")["distortion"].mean()
    span = ok["distortion"].max() - ok["distortion"].min()
    crowd = means[means <= means.min() + 0.2 * span]  # the ones within a fifth of the frame of the best
    if len(crowd) < 3:
        return
    lo, hi = crowd.min(), crowd.max()
    pad = 0.08 * max(hi - lo, 0.5)
    inset = ax.inset_axes((0.06, 0.1, 0.42, 0.42))
    for kind in KIND_TITLES:
        if (ok["kind"] == kind).any():
            _draw_information_points(inset, ok[ok["kind"] == kind], kind, log_n, legend=False)
    inset.set_xlim(lo - pad, hi + pad)
    inset.set_ylim(0.9 * log_n, log_n * 1.12)
    inset.axhline(log_n, color="0.55", ls="-.", lw=0.7, zorder=1)
    inset.tick_params(labelsize=5)
    inset.set_title("zoom: the codes at log N", fontsize=6)
    ax.indicate_inset_zoom(inset, edgecolor="0.5")


def _draw_information_points(ax: Axes, sub: pd.DataFrame, kind: str, log_n: float, legend: bool = True) -> None:
    """One kind's models: InfoNCE as the point, a bar up to the upper bound (cut at the frame: an arrowhead; an
    unbounded one, +inf, always is). A probed code's bar goes up to the probe channel's bound (``probe_upper``:
    the smallest of its LOO, rate and capacity), the information through the same probe its point measures.
    Unbounded noisy AEs are hollow in a muted shade, beside the bounded ones."""
    marker, key = kind_style(kind).marker, KNOB_OF[kind]
    probed = kind in ("ae", "sparse_ae")  # hollow: measured through the smallest probe, bracketed up to its bound
    if probed and "probe_upper" in sub:
        sub = sub.assign(mi_upper=sub["probe_upper"])
    pts = sub.groupby("label", sort=False)[["distortion", "mi_lower", "mi_upper", "probe_sigma", key]].mean()
    pts = pts.sort_values(key)  # shades dark to light with the knob, as in the probe panels
    free = sub.groupby("label")["code_bound"].first().eq("").reindex(pts.index) if kind == "noisy_ae" else \
        pd.Series(False, index=pts.index)
    upper = np.minimum(pts["mi_upper"], log_n * 1.1)  # unbounded upper bounds are cut at the frame
    bar = (upper - pts["mi_lower"]).clip(lower=0)  # sampling noise can put LOO a hair below InfoNCE
    colours = iter(_shades(kind, int((~free).sum())))
    muted = iter(_shades(kind, int(free.sum()), muted=True))
    for (label, p), b, cut in zip(pts.iterrows(), bar, pts["mi_upper"] > upper, strict=True):
        colour = next(muted if free[label] else colours)
        suffix = f" (probe σ={p['probe_sigma']:g})" if probed else ""
        ax.errorbar([p["distortion"]], [p["mi_lower"]], yerr=[[0], [b]], fmt=marker, ms=5, color=colour,
                    mfc="white" if probed or free[label] else colour, capsize=0 if cut else 2, lw=0.8,
                    label=label + suffix if legend else None, zorder=3)
        if cut:  # the upper bound lies above the frame: an arrowhead where its bar leaves
            ax.plot([p["distortion"]], [log_n * 1.1], marker="^", ms=4, color=colour, zorder=3)


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
