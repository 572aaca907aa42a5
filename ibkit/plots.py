"""The shared figure pieces: the house style, saving, the rate-distortion plane and its labels. Figures are drawn
from stored tidy tables (never retraining) and saved as PDF (vector) and PNG (200 dpi). An experiment's own figures
live with it (``experiments/<name>/figures.py``) and are built from these pieces.

One house style: seaborn's colour-blind palette, and each model kind's colour, marker and label from its registered
style (``ibkit.models.kind_style``), so a kind looks the same in every figure. Importing this module leaves
matplotlib's backend as it was (a notebook keeps its own; the ``ibkit`` command picks a file backend before it
draws). Every figure function draws into ``ax`` when given one and returns the Figure.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from ibkit.models import kind_style, knob_names, knob_symbol
from ibkit.tables import bootstrap_interval, left_out

PALETTE = sns.color_palette("colorblind")
FAMILY_COLOURS = {"diagonal": PALETTE[0], "full": PALETTE[4], "iaf": PALETTE[2]}  # posterior families, in order;
# on the rate-distortion plane a diagonal posterior takes its kind's colour
SEED_INTERVAL = ("ci", 95)  # seaborn's whiskers: the 95% bootstrap interval over seeds, as in the tables
SINGLE_COLUMN = 3.3  # inches
DOUBLE_COLUMN = 6.8


def style() -> dict:
    """The house rc parameters; draw inside ``with plt.rc_context(style()):``."""
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


def kind_colour(kind: str) -> tuple[float, float, float]:
    """The kind's colour in every figure: its registered palette index in seaborn's "colorblind" palette."""
    return PALETTE[kind_style(kind).colour % len(PALETTE)]


def figure_of(ax: Axes) -> Figure:
    """The (top-level) figure that holds ``ax``."""
    fig = ax.get_figure(root=True)
    if fig is None:
        raise ValueError(f"{ax!r} belongs to no figure; draw into axes made by plt.subplots or fig.add_subplot")
    return fig


def figure_for(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and the figure it belongs to; without one, a new figure of ``figsize`` inches holding one axes."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return figure_of(ax), ax


def save_figure(fig: Figure, folder: str | os.PathLike, name: str, data: str | None = None) -> list[Path]:
    """Save ``fig`` as folder/name.pdf and folder/name.png (200 dpi); returns the paths. ``data`` (e.g.
    ``ibkit.results.data_text(run_dir)``: "mnist, t10k split 8,000/2,000 ...") is written above the figure, so that
    a figure seen alone says what it was measured on. The PDF carries no creation date, so redrawing an unchanged
    table leaves the file byte for byte as it was."""
    if data:
        fig.text(0.0, 1.0, f"Data: {data}", ha="left", va="bottom", fontsize=6, color="0.35",
                 transform=fig.transFigure)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # bbox_inches="tight", measured once for both files as savefig measures it (a draw that renders nothing, at
    # the PNG's resolution), in 60% of the time of two "tight" saves: the same PNG, byte for byte, and a PDF whose
    # box differs by a fraction of a point (savefig measured it with the PDF renderer's text metrics)
    fig.set_dpi(200)
    fig.draw_without_rendering()
    tight = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
    paths = [folder / f"{name}.pdf", folder / f"{name}.png"]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        undated = {"CreationDate": None} if path.suffix == ".pdf" else None
        fig.savefig(tmp, dpi=200, bbox_inches=tight, metadata=undated)
        os.replace(tmp, path)
    plt.close(fig)
    return paths


def mean_interval(df: pd.DataFrame, by: str | Sequence[str], cols=("rate", "distortion")) -> pd.DataFrame:
    """Mean over seeds of ``cols`` for each value (or combination of values, NaN included) of ``by``, and
    ``COL_err``: the half-width of the 95% bootstrap interval over seeds, the tables' interval (0 for one seed: no
    bar). ``by=()``: one row over all of ``df``."""
    keys = [by] if isinstance(by, str) else list(by)
    groups = df.groupby(keys[0] if isinstance(by, str) else keys, dropna=False) if keys else [((), df)]
    rows = []
    for key, g in groups:
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for c in cols:
            lo, hi = bootstrap_interval(g[c].dropna())
            row[c], row[f"{c}_err"] = g[c].mean(), 0.0 if math.isnan(lo) else (hi - lo) / 2
        rows.append(row)
    return pd.DataFrame(rows)


def note_left_out(fig: Figure, runs: pd.DataFrame, split: str) -> None:
    """A footnote naming the runs the figure leaves out (diverged or failed), so none is dropped silently."""
    note = left_out(runs, split)
    if note:
        fig.text(0.0, -0.02, textwrap.fill(note, 120), fontsize=5.5, color="0.3", va="top", ha="left")


Offset = Callable[[pd.Series], tuple[float, float]]  # a point -> where its label goes, in points from it


class _Labels(NamedTuple):
    """Point labels waiting for the plane's final limits: the points, the knob columns named, colour, offset."""

    pts: pd.DataFrame
    columns: list[str]
    colour: tuple
    offset_for: Offset


def rate_distortion(df: pd.DataFrame, split: str = "test", width: float = SINGLE_COLUMN * 1.45,
                    ax: Axes | None = None) -> Figure:
    """Every model kind on one rate-distortion plane, nats (Alemi et al. 2018, Fig. 1).

    Rows with a rate are stochastic codes: per kind and posterior family one point per combination of the kind's
    knobs (``knob_names``), joined into a curve where the kind's style says so (a VAE's beta sweep) and labelled
    with the knob that varies ("β=0.5"); their rate, KL to N(0, I), bounds I(X;Z). Rows without a rate (deterministic
    and sparse AEs, whose rate is unbounded) sit at the information their code carries through the smallest probe
    channel (hollow, with an arrow: a lower bound, at most log N), or, without probe measurements, as a line at
    their distortion. Grey lines are constant ELBO, D + R = c; where the data entropy H is known, the line
    D = H - R below which no model can go. Points show the mean over seeds with bars for the 95% bootstrap interval
    when there are several. Colours, markers and legend labels come from each kind's registered style.
    """
    runs = df[(df["split"] == split) & (df["status"] == "ok")]
    with plt.rc_context(style()):
        fig, ax = figure_for(ax, (width, width * 1.05))
        has_rate = runs["rate"].notna() if "rate" in runs else pd.Series(False, index=runs.index)
        labels = _draw_stochastic(ax, runs[has_rate])  # the point labels, drawn last
        span = max(runs["rate"].max() if has_rate.any() else 0, runs["mi_lower"].max()
                   if "mi_lower" in runs and runs["mi_lower"].notna().any() else 0, 1)
        for kind in _in_house_order(runs[~has_rate]["kind"]):
            _draw_deterministic(ax, kind, runs[~has_rate & (runs["kind"] == kind)], span)
        _finish_plane(ax, runs, labels, split)
    note_left_out(fig, df, split)
    return fig


def _in_house_order(kinds: pd.Series) -> list[str]:
    """The kinds present, in the order of their palette colours (the legend's order), then by name."""
    return sorted(set(kinds), key=lambda k: (kind_style(k).colour, k))


def _families(rows: pd.DataFrame) -> pd.Series:
    """Each row's posterior family ("diagonal" where the table names none), with its network where that is not an
    MLP ("diagonal, conv"): runs that differ in either are separate sweeps."""
    family = (rows["posterior"].fillna("").replace("", "diagonal") if "posterior" in rows
              else pd.Series("diagonal", index=rows.index))
    if "network" not in rows:
        return family
    network = rows["network"].fillna("").replace("", "mlp")
    return family.where(network == "mlp", family + ", " + network)


def _draw_stochastic(ax: Axes, rows: pd.DataFrame) -> list[_Labels]:
    """One sweep per kind and posterior family (families in ``FAMILY_COLOURS`` order, then any other); returns the
    point labels to draw once the limits are final."""
    labels = []
    for kind in _in_house_order(rows["kind"]):
        of_kind = rows[rows["kind"] == kind]
        families = _families(of_kind)
        present = set(families)
        order = [f for f in FAMILY_COLOURS if f in present] + sorted(present - set(FAMILY_COLOURS))
        tell_apart = ({"family"} if len({v.partition(", ")[0] for v in present}) > 1 else set()) | \
            ({"network"} if any(", " in v for v in present) else set())  # what the legend must tell apart
        for family in order:
            label = _draw_sweep(ax, kind, family, of_kind[families == family], tell_apart)
            if label is not None:
                labels.append(label)
    return labels


def _draw_sweep(ax: Axes, kind: str, family: str, rows: pd.DataFrame, tell_apart: set[str]) -> _Labels | None:
    """The mean points of one kind and family (and network), one per combination of its knobs, with seed
    intervals; a curve when the kind's style joins its sweeps. The legend names the family where ``tell_apart``
    has "family" (or it is not diagonal) and the network where it has "network", the swept knob of a curve, or the
    single setting of a lone point. A network other than an MLP is drawn dashed, with hollow markers."""
    look = kind_style(kind)
    colour, label = kind_colour(kind), look.label
    family, _, network = family.partition(", ")
    if family != "diagonal":
        colour = FAMILY_COLOURS.get(family, colour)
    if family != "diagonal" or "family" in tell_apart:
        label = f"{label}, {family} q"
    if "network" in tell_apart:
        label = f"{label}, {network or 'MLP'}"
    knobs = [k for k in knob_names(kind) if k in rows]
    pts = mean_interval(rows, knobs)
    pts = pts.sort_values(knobs) if knobs else pts
    named = [k for k in knobs if rows[k].nunique(dropna=False) > 1] or [k for k in knobs if rows[k].notna().any()]
    if look.line:
        varied = [k for k in knobs if rows[k].nunique(dropna=False) > 1]  # a lone point is no sweep
        swept = f" ({', '.join(varied)} sweep)" if varied else ""
        ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_err"], yerr=pts["distortion_err"],
                    color=colour, marker=look.marker, ms=4, lw=1.2, capsize=2, label=f"{label}{swept}",
                    ls="--" if network else "-", mfc="white" if network else colour)
        low = pts["distortion"].quantile(0.35)  # labels below the flat low-distortion end, above the steep end
        return _Labels(pts, named, colour, lambda p: (4, -10) if p["distortion"] < low else (4, 3)) if named else None
    single = "".join(f", {knob_symbol(k)} = {pts[k].iloc[0]:.3g}" for k in named) if len(pts) == 1 else ""
    ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_err"], yerr=pts["distortion_err"], color=colour,
                marker=look.marker, ms=5, ls="none", capsize=2, label=f"{label}{single} (rate: KL to N(0, I))")
    return _Labels(pts, named, colour, lambda p: (4, 3)) if len(pts) > 1 and named else None


def _draw_deterministic(ax: Axes, kind: str, rows: pd.DataFrame, span: float) -> None:
    """A code without a rate: hollow at what crosses the probe channel (an arrow: a lower bound), or, for a table
    without probe measurements, a dashed line at its distortion."""
    look, colour = kind_style(kind), kind_colour(kind)
    if "mi_lower" in rows and rows["mi_lower"].notna().any():  # placed at what crosses a probe channel
        pt = mean_interval(rows, (), cols=("mi_lower", "distortion")).iloc[0]
        x, y = pt["mi_lower"], pt["distortion"]
        sigma = rows["probe_sigma"].iloc[0] if "probe_sigma" in rows else math.nan
        ceiling = " = log N" if "log_n" in rows and x > rows["log_n"].mean() - 0.05 else ""
        ax.errorbar(x, y, xerr=pt["mi_lower_err"], yerr=pt["distortion_err"], marker=look.marker, ms=6,
                    mfc="white", mec=colour, mew=1.5, color=colour, ls="none", capsize=2,
                    label=f"{look.label}: I ≥ {x:.1f}{ceiling} via a σ = {sigma:.0e} probe (rate unbounded)")
        ax.annotate("", xy=(x + 0.07 * span, y), xytext=(x, y), arrowprops=dict(arrowstyle="->", color=colour, lw=1))
    else:  # a table without probe information: a line at its distortion
        ax.axhline(rows["distortion"].mean(), color=colour, ls="--", lw=1,
                   label=f"{look.label}: D = {rows['distortion'].mean():.1f} (rate unbounded)")


def _finish_plane(ax: Axes, runs: pd.DataFrame, labels: list[_Labels], split: str) -> None:
    """Limits, the entropy floor, the point labels (once the limits are final: their overlap test is in display
    space), constant-ELBO lines, axis labels and the legend below the axes, clear of the points."""
    ax.set_xlim(0, ax.get_xlim()[1] * 1.15)  # room for the labels of the rightmost points
    if "entropy" in runs and runs["entropy"].notna().any():  # D >= H - I >= H - R for every model
        h = runs["entropy"].dropna().iloc[0]
        r = np.linspace(0, ax.get_xlim()[1], 50)
        ax.plot(r, h - r, color="0.1", ls=":", lw=1.2, label=f"D = H − R (H = {h:.2f}): no model below")
    ax.set_ylim(min(0, ax.get_ylim()[0]), ax.get_ylim()[1] * 1.05)
    placed = _marker_boxes(ax)  # labels keep clear of every marker and of the labels drawn before them
    for pending in labels:
        _annotate_groups(ax, *pending, placed)
    _constant_elbo_lines(ax)
    ax.set_xlabel("rate R = E KL(q(z|x) ‖ p(z)); AEs: I(X;Z) through the probe  [nats]")
    ax.set_ylabel("distortion D = −E log p(x|z)  [nats]")
    ax.set_title(f"Rate–distortion plane: {data_title(runs, split)}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)


def knob_text(first: pd.Series, last: pd.Series, columns: Sequence[str]) -> str:
    """'β=0.5' for one point, 'β=5.28–20' from ``first`` to ``last`` of a group; knobs joined by ', '."""
    return ", ".join(f"{knob_symbol(c)}={first[c]:.3g}" + (f"–{last[c]:.3g}" if last[c] != first[c] else "")
                     for c in columns)


def data_title(runs: pd.DataFrame, split: str = "test") -> str:
    """'mnist, test split' for a figure's title: the dataset(s) the rows come from and the split drawn."""
    names = ", ".join(sorted(set(runs["dataset"].dropna().astype(str)))) if "dataset" in runs else ""
    return f"{names}, {split} split" if names else f"{split} split"


def _marker_boxes(ax: Axes, pad: float = 3.0) -> list[Bbox]:
    """Display-space boxes around every marker drawn on ``ax`` (``pad`` points beyond its size)."""
    boxes = []
    for line in ax.lines:
        if line.get_marker() in (None, "", "None", " ") or not line.get_visible():
            continue
        half = (line.get_markersize() / 2 + pad) * ax.figure.dpi / 72
        for x, y in ax.transData.transform(np.column_stack(line.get_data())):
            if np.isfinite(x) and np.isfinite(y):
                boxes.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    return boxes


def _annotate_groups(ax: Axes, pts: pd.DataFrame, columns: Sequence[str], colour, offset_for: Offset,
                     placed: list[Bbox] | None = None) -> None:
    """Label each point with its knob values (``columns``); points closer than 3% of the axes share one label
    ("β=5.28–20"), so collapsed models do not print on top of each other. A label goes where it was asked, else
    mirrored about its point, right above or below it, or to its left: the first that touches nothing in ``placed``
    (the markers and the labels drawn so far, to which it is added)."""
    x_span = max(pts["rate"].max(), 1e-9)
    y_span = max(pts["distortion"].max(), 1e-9)
    groups: list[list[pd.Series]] = []
    for _, p in pts.sort_values(list(columns)).iterrows():
        last = groups[-1][-1] if groups else None
        near = last is not None and abs(p["rate"] - last["rate"]) < 0.03 * x_span and \
            abs(p["distortion"] - last["distortion"]) < 0.03 * y_span
        if near:
            groups[-1].append(p)
        else:
            groups.append([p])
    placed = [] if placed is None else placed
    for g in groups:
        text = knob_text(g[0], g[-1], columns)
        dx, dy = offset_for(g[0])
        own = [ax.transData.transform((p["rate"], p["distortion"])) for p in g]  # its own markers it may touch
        others = [b for b in placed if not any(b.contains(*xy) for xy in own)]
        candidates = [(dx, dy, "left"), (dx, -dy - 7, "left"), (0, 6, "center"), (0, -12, "center"),
                      (-dx, dy, "right"), (-dx, -dy - 7, "right")]
        for x_off, y_off, align in candidates:  # as asked, mirrored, right above or below, then to its left
            label = ax.annotate(text, (g[0]["rate"], g[0]["distortion"]), xytext=(x_off, y_off), ha=align,
                                textcoords="offset points", fontsize=6, color=colour)
            box = label.get_window_extent()  # the figure's own renderer, whatever the backend
            if not any(box.overlaps(other) for other in others) or (x_off, y_off, align) == candidates[-1]:
                break
            label.remove()
        placed.append(box)


def _constant_elbo_lines(ax: Axes, n: int = 6) -> None:
    """Light lines D + R = c (slope -1): points on one line have the same ELBO = -c."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for i, c in enumerate(np.linspace(0, x1 + y1, n + 2)[1:-1]):
        ax.plot([x0, x1], [c - x0, c - x1], color="0.8", lw=0.6, zorder=0,
                label="constant ELBO: D + R = const" if i == 0 else None)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
