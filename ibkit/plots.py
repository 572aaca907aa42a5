"""The shared figure pieces: the house style, saving, the rate-distortion plane and its labels. Figures are drawn
from stored tidy tables (never retraining) and saved as PDF (vector) and PNG (200 dpi). An experiment's own figures
live with it (``experiments/<name>/figures.py``) and are built from these pieces.

One house style: seaborn's colour-blind palette, and each model kind's colour, marker and label from its registered
style (``kind_style``: what ``register_model`` was given, the rest filled here), so a kind looks the same in every
figure. Importing this module leaves
matplotlib's backend as it was (a notebook keeps its own; the ``ibkit`` command picks a file backend before it
draws). Every figure function draws into ``ax`` when given one and returns the Figure.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.path import Path as Outline
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox, offset_copy

from ibkit.config import kind_label, knob_names, knob_symbol, quiet_knobs
from ibkit.prose import left_out
from ibkit.registry import DATASETS, MODELS, POSTERIORS
from ibkit.stats import bootstrap_interval

if TYPE_CHECKING:
    from torch import Tensor

    from ibkit.analysis import Analysis

PALETTE = sns.color_palette("colorblind")
SEED_INTERVAL = ("ci", 95)  # seaborn's whiskers: the 95% bootstrap interval over seeds, as in the tables
SINGLE_COLUMN = 3.3  # inches
DOUBLE_COLUMN = 6.8
QUICK_MARK = "quick run, not for citing"  # in the corner of every figure of a --quick run
RATE_LABEL, DISTORTION_LABEL = "rate R  [nats]", "distortion D  [nats]"  # the plane's axes; the key says what they are
PLANE_KEY = "R = E KL(q(z|x) ‖ p(z)), D = −E log p(x|z)"
ELBO_LABEL = "constant ELBO: D + R = −ELBO (labelled)"
MSE_LABEL = "distortion D  [squared error]"  # the plane under squared error (a frontier band)
MSE_KEY = "R = E KL(q(z|x) ‖ p(z)), D = E ‖x − x̂‖² summed over dimensions"


def style() -> dict:
    """The house rc parameters; draw inside ``with plt.rc_context(style()):``.

    Returns:
        matplotlib rc parameters: seaborn's "ticks" style with a light grid, no top or right spines, 7-9 pt text.
    """
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


MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">")  # for kinds that do not choose one
PALETTE_SIZE = 10  # seaborn's "colorblind" palette


class KindStyle(NamedTuple):
    """How figures draw a kind: legend label, matplotlib marker, colour (an index into seaborn's "colorblind"
    palette) and whether a sweep's points are joined into a curve.

    Attributes:
        label: the legend label.
        marker: the matplotlib marker.
        colour: an index into seaborn's "colorblind" palette.
        line: whether a sweep's points are joined into a curve.
    """

    label: str
    marker: str
    colour: int
    line: bool


def _free(options, used):
    """The first of ``options`` not in ``used`` (cycling when all are)."""
    return next((o for o in options if o not in used), list(options)[len(used) % len(options)])


def kind_style(kind: str) -> KindStyle:
    """The figure style of model kind ``kind``: what ``register_model`` was given (label, marker, colour, line),
    each missing part the first marker and colour no kind registered before it has. A kind that is not registered
    (e.g. in a table stored by a session that had it) gets its name as label and a marker and colour derived from
    the name.

    Args:
        kind: a model kind, registered or not.

    Returns:
        its ``KindStyle``.
    """
    if kind not in MODELS:
        h = sum(map(ord, str(kind)))
        return KindStyle(str(kind), MARKERS[h % len(MARKERS)], 4 + h % (PALETTE_SIZE - 4), True)
    styles: dict[str, KindStyle] = {}
    for name in MODELS:  # registration order: each kind's free marker and colour as when it was registered
        info, taken = MODELS.info(name), list(styles.values())
        styles[name] = KindStyle(kind_label(name), info.get("marker") or _free(MARKERS, [s.marker for s in taken]),
                                 _free(range(PALETTE_SIZE), [s.colour for s in taken]) if info.get("colour") is None
                                 else info["colour"], info.get("line", True))
        if name == kind:
            return styles[name]
    raise AssertionError(kind)  # unreachable: kind is in MODELS


def family_colours() -> dict[str, tuple[float, float, float]]:
    """{posterior family: its colour} for the registered families that name one (``register_posterior(name,
    colour=i)``, an index into the palette), in registration order. On the rate-distortion plane a diagonal posterior
    takes its kind's colour.

    Returns:
        {family: RGB colour}.
    """
    return {name: PALETTE[POSTERIORS.info(name)["colour"] % len(PALETTE)] for name in POSTERIORS
            if POSTERIORS.info(name).get("colour") is not None}


def kind_colour(kind: str) -> tuple[float, float, float]:
    """The kind's colour in every figure: its registered palette index in seaborn's "colorblind" palette.

    Args:
        kind: a model kind.

    Returns:
        its RGB colour.
    """
    return PALETTE[kind_style(kind).colour % len(PALETTE)]


def figure_of(ax: Axes) -> Figure:
    """The (top-level) figure that holds ``ax``.

    Args:
        ax: matplotlib axes.

    Returns:
        the figure.

    Raises:
        ValueError: axes that belong to no figure.
    """
    fig = ax.get_figure(root=True)
    if fig is None:
        raise ValueError(f"{ax!r} belongs to no figure; draw into axes made by plt.subplots or fig.add_subplot")
    return fig


def figure_for(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and the figure it belongs to; without one, a new figure of ``figsize`` inches holding one axes.

    Args:
        ax: axes to draw into, or None.
        figsize: (width, height) in inches of a new figure.

    Returns:
        (figure, axes).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return figure_of(ax), ax


def save_figure(fig: Figure, folder: str | os.PathLike, name: str, data: str | None = None,
                quick: bool | None = None) -> list[Path]:
    """Save ``fig`` as folder/name.pdf and folder/name.png (200 dpi); returns the paths. ``data`` (e.g.
    ``ibkit.results.data_text(run_dir)``: "mnist, t10k split 8,000/2,000 ...") is written above the figure, so that
    a figure seen alone says what it was measured on. ``quick``: mark the figure "quick run, not for citing" in its
    top right corner; None (the default) marks it when ``folder`` sits in a quick run's folder (``run_dir/figures``
    of a run whose manifest says ``quick``, or whose name ends in -quick: ``RunFolder.is_quick``). The PDF
    carries no creation date, so redrawing an unchanged table leaves the file byte for byte as it was.

    Args:
        fig: the figure; it is closed once saved.
        folder: the folder to write into, made if missing.
        name: the files' name, without suffix.
        data: what the figure was measured on, written above it; None: nothing.
        quick: mark the figure as a quick run's; None: when ``folder``'s parent is a quick run's folder.

    Returns:
        the paths of the PDF and the PNG.
    """
    from ibkit.store import RunFolder

    quick = RunFolder(Path(folder).parent).is_quick() if quick is None else quick
    if data or quick:  # above the figure, or above what reaches over it (a title of two lines, a legend beside)
        content = fig.get_tightbbox()
        top, right = max(1.0, content.y1 / fig.get_figheight()), max(1.0, content.x1 / fig.get_figwidth())
    if data:
        fig.text(0.0, top, f"Data: {data}", ha="left", va="bottom", fontsize=6, color="0.35",
                 transform=fig.transFigure)
    if quick:  # above the data line, in the top right corner
        fig.text(right, top, QUICK_MARK, ha="right", va="bottom", fontsize=7, fontweight="bold", color=PALETTE[3],
                 transform=offset_copy(fig.transFigure, fig, y=9 if data else 0, units="points"))
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


def fit_to_width(text: Text, width: float, shortest: int = 12) -> None:
    """Re-wrap ``text`` (a title, a legend entry, an axis label) at its spaces until it is at most ``width`` display
    units wide (pixels: compare with ``ax.get_window_extent().width``), keeping lines of ``shortest`` characters or
    more; a text that fits is left as it is.

    Args:
        text: the matplotlib text, changed in place.
        width: the most display units it may take.
        shortest: the shortest line length, in characters.
    """
    words = " ".join(text.get_text().split())
    chars = len(words)
    while chars > shortest and (drawn := text.get_window_extent().width) > width:
        chars = max(shortest, min(chars - 1, int(chars * width / drawn)))
        text.set_text(textwrap.fill(words, chars, break_long_words=False, break_on_hyphens=False))


def set_title(ax: Axes, title: str, **kwargs) -> Text:
    """``ax.set_title(title)``, wrapped onto more lines where it is wider than the axes (so that it does not run
    past the panel into its neighbour or the figure's edge).

    Args:
        ax: the axes.
        title: the title.
        **kwargs: passed to ``ax.set_title``.

    Returns:
        the title's text.
    """
    text = ax.set_title(title, **kwargs)
    fit_to_width(text, ax.get_window_extent().width)
    return text


def beta_axis(ax: Axes, betas) -> None:
    """A log2 x axis of KL weights with a tick at each beta swept (``betas``), labelled "KL weight β".

    Args:
        ax: the axes.
        betas: the betas swept.
    """
    ax.set_xscale("log", base=2)
    ax.set_xticks(betas, [f"{b:g}" for b in betas])
    ax.minorticks_off()
    ax.set_xlabel("KL weight β")


def mean_interval(df: pd.DataFrame, by: str | Sequence[str], cols=("rate", "distortion")) -> pd.DataFrame:
    """Mean over seeds of ``cols`` for each value (or combination of values, NaN included) of ``by``, and
    ``COL_err``: the half-width of the 95% bootstrap interval over seeds, the tables' interval (0 for one seed: no
    bar). ``by=()``: one row over all of ``df``.

    Args:
        df: a results table, one row per seed.
        by: the column or columns to group by.
        cols: the columns to average.

    Returns:
        one row per group: its ``by`` values, then each column's mean and ``COL_err``.
    """
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
    """A footnote naming the runs the figure leaves out (diverged or failed), so none is dropped silently.

    Args:
        fig: the figure.
        runs: the results table drawn.
        split: the split drawn.
    """
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


def rate_distortion(df: pd.DataFrame | None, split: str = "test", width: float = SINGLE_COLUMN * 1.45,
                    ax: Axes | None = None, source: str | None = None, by: str | None = None,
                    legend_below: bool | None = None, frontier: pd.DataFrame | None = None) -> Figure:
    """Every model kind on one rate-distortion plane, nats (Alemi et al. 2018, Fig. 1).

    Rows with a rate are stochastic codes: per kind and posterior family one point per combination of the kind's
    knobs (``knob_names``), joined into a curve where the kind's style says so (a VAE's beta sweep) and labelled
    with the knob that varies ("β=0.5"); their rate, KL to N(0, I), bounds I(X;Z). Rows without a rate (deterministic
    and sparse AEs, whose rate is unbounded) sit at the information their code carries through the smallest probe
    channel (hollow, with an arrow: a lower bound, at most log N), or, without probe measurements, as a line at
    their distortion. Grey lines are constant ELBO, D + R = c; where the data entropy H is known, the line
    D = H - R below which no model can go. Points show the mean over seeds with bars for the 95% bootstrap interval
    when there are several. Colours, markers and legend labels come from each kind's registered style. Point labels
    keep off every marker, curve and bar; each constant-ELBO line carries its value, -ELBO = D + R.

    ``source`` (e.g. "results/rate_distortion_mnist"): where the table comes from, named in the legend above its
    series ("reference sweep: ...") when the plane is a reference for points drawn beside it. ``df=None``: the bare
    plane (limits from what ``ax`` holds, the constant-ELBO lines, labels, legend) around points the caller drew.
    With ``ax``, points the caller drew before are kept (labels keep off them; their legend entries come last), and
    the legend goes below the axes where the figure has room for it, else inside them, wrapped to the panel;
    ``legend_below=True``: below in any case (a figure saved with a tight box, as ``save_figure`` does, grows to
    hold it).

    ``by`` (a column: ``source`` of a table ``ibkit.results.combine`` put together) draws the rows of each of its
    values apart, in a colour of its own (in the order they first appear) and named first in the legend ("mine:
    VAE"), so that runs of one kind and knobs from different sources are never averaged into one point.

    ``frontier`` (an ``ibkit.frontier.estimate`` table) makes it the plane under squared error: D is each model's
    ``mse`` (summed over dimensions), without constant-ELBO lines, and the data's own R(D) is drawn as a shaded band
    from the sandwich lower bound to the upper envelope (``ibkit.frontier.frontier_at``: the least rate any
    estimator or model of the split achieves at or below D, mixtures included), with the estimators' points.

    Args:
        df: a results table (``ibkit.results.load``), or None for the bare plane.
        split: the split drawn.
        width: a new figure's width in inches.
        ax: axes to draw into; None: a new figure.
        source: where the table comes from, named in the legend; None: not named.
        by: a column whose values are drawn apart (``source``); None: none.
        legend_below: the legend below the axes in any case; None: where the figure has room (always for a new
            figure).
        frontier: an ``ibkit.frontier.estimate`` table: the plane under squared error, with the data's R(D) band.

    Returns:
        the figure drawn into.
    """
    runs = _PLANE_COLUMNS if df is None else df[(df["split"] == split) & (df["status"] == "ok")]
    if frontier is not None:  # the plane under squared error: each model at its MSE
        if "mse" not in runs:
            raise ValueError("frontier= draws the plane under squared error, but the table has no mse column")
        runs = runs.assign(distortion=runs["mse"])
    with plt.rc_context(style()):
        below = ax is None if legend_below is None else legend_below  # a figure of its own grows to hold it
        fig, ax = figure_for(ax, (width, width * 1.05))
        earlier = ax.get_legend_handles_labels()  # what the caller drew: listed after the table's own series
        has_rate = runs["rate"].notna() if "rate" in runs else pd.Series(False, index=runs.index)
        span = max(runs["rate"].max() if has_rate.any() else 0, runs["mi_lower"].max()
                   if "mi_lower" in runs and runs["mi_lower"].notna().any() else 0, 1)
        labels: list[_Labels] = []  # the point labels, drawn last
        parts: list[tuple[Own, pd.DataFrame]] = [(None, runs)] if by is None else [
            ((PALETTE[i % len(PALETTE)], str(name)), runs[runs[by] == name]) for i, name in enumerate(
                dict.fromkeys(runs[by]))]
        for part_own, part in parts:  # without ``by``: the whole table, in the kinds' own colours
            labels += _draw_stochastic(ax, part[has_rate[part.index]], part_own)
            deterministic = part[~has_rate[part.index]]
            for kind in _in_house_order(deterministic["kind"]):
                _draw_deterministic(ax, kind, deterministic[deterministic["kind"] == kind], span=span, own=part_own)
        if frontier is not None:
            _draw_frontier(ax, frontier, runs[has_rate], split)
        _finish_plane(ax, runs, labels, split, earlier=earlier, source=source, below=below,
                      squared_error=frontier is not None)
    if df is not None:
        note_left_out(fig, df, split)
    return fig


_PLANE_COLUMNS = pd.DataFrame(columns=["kind", "rate", "distortion"])  # no rows: the bare plane


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


Own = tuple[tuple, str] | None  # the colour and name of one part of a table drawn apart (rate_distortion's ``by``)


def _draw_stochastic(ax: Axes, rows: pd.DataFrame, own: Own = None) -> list[_Labels]:
    """One sweep per kind and posterior family (families in ``family_colours()`` order, then any other); returns the
    point labels to draw once the limits are final."""
    labels = []
    for kind in _in_house_order(rows["kind"]):
        of_kind = rows[rows["kind"] == kind]
        families = _families(of_kind)
        present = set(families)
        colours = family_colours()
        order = [f for f in colours if f in present] + sorted(present - set(colours))
        tell_apart = ({"family"} if len({v.partition(", ")[0] for v in present}) > 1 else set()) | \
            ({"network"} if any(", " in v for v in present) else set())  # what the legend must tell apart
        for family in order:
            label = _draw_sweep(ax, kind, family, of_kind[families == family], tell_apart=tell_apart, own=own)
            if label is not None:
                labels.append(label)
    return labels


def _draw_sweep(ax: Axes, kind: str, family: str, rows: pd.DataFrame, *, tell_apart: set[str],
                own: Own = None) -> _Labels | None:
    """The mean points of one kind and family (and network), one per combination of its knobs, with seed
    intervals; a curve when the kind's style joins its sweeps. The legend names the family where ``tell_apart``
    has "family" (or it is not diagonal) and the network where it has "network", the swept knob of a curve, or the
    single setting of a lone point. A network other than an MLP is drawn dashed, with hollow markers. ``own``: the
    colour, and the name the label starts with, of the part of the table these rows belong to."""
    look = kind_style(kind)
    colour, label = kind_colour(kind), look.label
    family, _, network = family.partition(", ")
    if family != "diagonal":
        colour = family_colours().get(family, colour)
    if family != "diagonal" or "family" in tell_apart:
        label = f"{label}, {family} q"
    if "network" in tell_apart:
        label = f"{label}, {network or 'MLP'}"
    if own is not None:
        colour, label = own[0], f"{own[1]}: {label}"
    knobs = [k for k in knob_names(kind) if k in rows]
    pts = mean_interval(rows, knobs)
    pts = pts.sort_values(knobs) if knobs else pts
    quiet = quiet_knobs()  # the KL schedules: named only where some run sets them away from their default
    set_here = [k for k in knobs if rows[k].notna().any() and not (k in quiet and (rows[k] == quiet[k]).all())]
    named = [k for k in knobs if rows[k].nunique(dropna=False) > 1] or set_here
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


def _draw_deterministic(ax: Axes, kind: str, rows: pd.DataFrame, *, span: float, own: Own = None) -> None:
    """A code without a rate: hollow at what crosses the probe channel (an arrow: a lower bound), or, for a table
    without probe measurements, a dashed line at its distortion. ``own``: as in ``_draw_sweep``."""
    look, colour = kind_style(kind), kind_colour(kind) if own is None else own[0]
    prefix = "" if own is None else f"{own[1]}: "
    if "mi_lower" in rows and rows["mi_lower"].notna().any():  # placed at what crosses a probe channel
        pt = mean_interval(rows, (), cols=("mi_lower", "distortion")).iloc[0]
        x, y = pt["mi_lower"], pt["distortion"]
        sigma = rows["probe_sigma"].iloc[0] if "probe_sigma" in rows else math.nan
        ceiling = " = log N" if "log_n" in rows and x > rows["log_n"].mean() - 0.05 else ""
        ax.errorbar(x, y, xerr=pt["mi_lower_err"], yerr=pt["distortion_err"], marker=look.marker, ms=6,
                    mfc="white", mec=colour, mew=1.5, color=colour, ls="none", capsize=2,
                    label=f"{prefix}{look.label}: I ≥ {x:.1f}{ceiling} via a σ = {sigma:.0e} probe (rate unbounded)")
        ax.annotate("", xy=(x + 0.07 * span, y), xytext=(x, y), arrowprops=dict(arrowstyle="->", color=colour, lw=1))
    else:  # a table without probe information: a line at its distortion
        ax.axhline(rows["distortion"].mean(), color=colour, ls="--", lw=1,
                   label=f"{prefix}{look.label}: D = {rows['distortion'].mean():.1f} (rate unbounded)")


def _draw_frontier(ax: Axes, table: pd.DataFrame, models: pd.DataFrame, split: str) -> None:
    """The data's R(D) under squared error (``ibkit.frontier``) on the plane (rate on x, distortion on y): the band
    from the sandwich lower bound to the upper envelope of the estimators and the ``models`` of the split (their
    mean (mse, rate) per run), its upper edge, and each upper estimator's points."""
    from ibkit.frontier import frontier_at

    rows = table[table["split"] == split]
    models = models.groupby("run_id")[["mse", "rate"]].mean() if len(models) else pd.DataFrame(columns=["mse", "rate"])
    achieved = list(zip(models["mse"], models["rate"], strict=True))
    ups = rows[rows["side"] == "upper"]
    reach = [*ups["distortion"], *models["mse"]]
    if not reach:
        return
    d = np.linspace(min(reach), max(reach), 400)
    lower, upper = frontier_at(table, d, split=split, achieved=achieved)
    finite = np.isfinite(upper)
    ax.fill_betweenx(d[finite], lower[finite], upper[finite], color="0.85", lw=0, zorder=0,
                     label="R(D) of the data lies in the band: sandwich lower bound to upper envelope")
    ax.plot(upper[finite], d[finite], color="0.35", lw=1, zorder=1,
            label="upper envelope: least rate of estimators and models (mixtures too)")
    for (method, marker) in (("blahut_arimoto", "x"), ("wgd", "+")):
        pts = ups[ups["method"] == method]
        if len(pts):
            ax.plot(pts["rate"], pts["distortion"], marker, color="0.25", ms=5, ls="none", zorder=2,
                    label=FRONTIER_LABELS[method])


FRONTIER_LABELS = {"blahut_arimoto": "Blahut–Arimoto, the training rows as reproductions",
                   "wgd": "Wasserstein gradient descent on particles"}


def _finish_plane(ax: Axes, runs: pd.DataFrame, labels: list[_Labels], split: str, *,
                  earlier: tuple[list, list] = ([], []), source: str | None = None, below: bool = True,
                  squared_error: bool = False) -> None:
    """Limits, the entropy floor, short axis labels (the legend's title says what R and D are), the legend, then
    the point labels and the labelled constant-ELBO lines (once the limits and the legend are final: their overlap
    tests are in display space). The legend: the constant-ELBO line, a "reference sweep: ``source``" line when
    given, the table's series, then what the caller drew before (``earlier``: ``ax.get_legend_handles_labels()``
    as it was). ``squared_error``: D is the squared error, so no constant-ELBO lines and no entropy floor."""
    ax.set_xlim(0, ax.get_xlim()[1] * 1.15)  # room for the labels of the rightmost points
    if not squared_error and "entropy" in runs and runs["entropy"].notna().any():  # D >= H - I >= H - R
        h = runs["entropy"].dropna().iloc[0]
        r = np.linspace(0, ax.get_xlim()[1], 50)
        ax.plot(r, h - r, color="0.1", ls=":", lw=1.2, label=f"D = H − R (H = {h:.2f}): no model below")
    ax.set_ylim(min(0, ax.get_ylim()[0]), ax.get_ylim()[1] * 1.05)
    ax.set_xlabel(RATE_LABEL)
    ax.set_ylabel(MSE_LABEL if squared_error else DISTORTION_LABEL)
    set_title(ax, f"Rate–distortion plane{' under squared error' if squared_error else ''}: {data_title(runs, split)}")
    handles, names = ax.get_legend_handles_labels()
    mine = [i for i, h in enumerate(handles) if all(h is not e for e in earlier[0])]  # this table's series
    handles, names = [handles[i] for i in mine], [names[i] for i in mine]
    if source is not None:  # a line of its own, without a symbol, above the table's series
        handles, names = [Line2D([], [], ls="none"), *handles], [f"reference sweep: {source}", *names]
    elbo = ([], []) if squared_error else ([_elbo_line()], [ELBO_LABEL])
    legend = _place_legend(ax, [*elbo[0], *handles, *earlier[0]], [*elbo[1], *names, *earlier[1]],
                           title=MSE_KEY if squared_error else PLANE_KEY, below=below)
    # labels keep clear of every marker, of the texts, arrows and legend already there, of the labels drawn before
    # them, and they cross no curve, floor or error bar
    placed = _marker_boxes(ax) + [t.get_window_extent() for t in ax.texts] + [legend.get_window_extent()]
    lines = _line_paths(ax)
    for pending in labels:
        _annotate_groups(ax, *pending, placed, lines)
    if not squared_error:
        _constant_elbo_lines(ax, placed, lines)


def _elbo_line() -> Line2D:
    """A constant-ELBO line's look (light grey, under everything): each line, and the legend's handle for them."""
    return Line2D([], [], color="0.8", lw=0.6, zorder=0)


def _place_legend(ax: Axes, handles: list, names: list[str], *, title: str, below: bool) -> Legend:
    """The legend below the x-axis label, its entries wrapped to the axes' width: there in any case when ``below``,
    else only where it stays inside the figure; otherwise inside the axes, framed, wrapped to 60% of the axes'
    width, at matplotlib's emptiest spot for it, fixed there (labels drawn later keep off it)."""
    frame = ax.get_window_extent()
    under = ax.xaxis.get_tightbbox()  # ticks and the x-axis label
    top = ((under.y0 if under is not None else frame.y0) - frame.y0) / frame.height - 0.03
    legend = ax.legend(handles, names, title=title, loc="upper center", bbox_to_anchor=(0.5, top), frameon=False,
                       alignment="left", title_fontsize=plt.rcParams["legend.fontsize"])
    _fit_legend(legend, frame.width)
    if below or figure_of(ax).bbox.contains(*legend.get_window_extent().p0):
        return legend
    legend.remove()
    legend = ax.legend(handles, names, title=title, loc="best", frameon=True, framealpha=0.85, edgecolor="none",
                       fontsize=6, title_fontsize=6, alignment="left")
    _fit_legend(legend, 0.6 * frame.width)
    legend.set_loc(tuple(ax.transAxes.inverted().transform(legend.get_window_extent().p0)))
    return legend


def _fit_legend(legend: Legend, width: float) -> None:
    """Wrap the entries (and title) of ``legend`` so that the whole legend is at most ``width`` pixels wide."""
    drawn = legend.get_window_extent().width
    texts = [legend.get_title(), *legend.get_texts()]
    widest = max(t.get_window_extent().width for t in texts)
    if drawn > width:
        for text in texts:
            fit_to_width(text, width - (drawn - widest))


def knob_text(first: pd.Series, last: pd.Series, columns: Sequence[str]) -> str:
    """'β=0.5' for one point, 'β=5.28–20' from ``first`` to ``last`` of a group; knobs joined by ', '.

    Args:
        first: the first row of the group.
        last: its last row.
        columns: the knob columns to name.

    Returns:
        the text.
    """
    return ", ".join(f"{knob_symbol(c)}={first[c]:.3g}" + (f"–{last[c]:.3g}" if last[c] != first[c] else "")
                     for c in columns)


def data_title(runs: pd.DataFrame, split: str = "test") -> str:
    """'mnist, test split' for a figure's title: the dataset(s) the rows come from and the split drawn.

    Args:
        runs: the results rows drawn.
        split: the split drawn.

    Returns:
        the text.
    """
    names = ", ".join(sorted(set(runs["dataset"].dropna().astype(str)))) if "dataset" in runs else ""
    return f"{names}, {split} split" if names else f"{split} split"


def _marker_boxes(ax: Axes, pad: float = 3.0) -> list[Bbox]:
    """Display-space boxes around every marker drawn on ``ax`` (``pad`` points beyond its size; one point beyond
    the thin caps of error bars)."""
    boxes = []
    for line in ax.lines:
        if line.get_marker() in (None, "", "None", " ") or not line.get_visible():
            continue
        half = (line.get_markersize() / 2 + (1.0 if line.get_marker() in ("|", "_") else pad)) * ax.figure.dpi / 72
        for x, y in ax.transData.transform(np.column_stack(line.get_data())):
            if np.isfinite(x) and np.isfinite(y):
                boxes.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    return boxes


def _line_paths(ax: Axes) -> list[Outline]:
    """Display-space paths of every line drawn on ``ax`` (curves, floors, the bars of error bars), which labels
    must not cross; lines of markers alone are left to ``_marker_boxes``."""
    paths = [line.get_transform().transform_path(line.get_path()) for line in ax.lines
             if line.get_visible() and line.get_linestyle() not in ("None", "none", "", " ")]
    for bars in ax.collections:
        if isinstance(bars, LineCollection) and bars.get_visible():
            paths += [bars.get_transform().transform_path(p) for p in bars.get_paths()]
    return paths


def _conflicts(outline: Outline, boxes: list[Bbox], lines: list[Outline], frame: Bbox) -> int:
    """How many of ``boxes`` and ``lines`` the closed ``outline`` (a label's, in display space) touches, plus one
    if it leaves ``frame`` (the axes)."""
    hits = sum(outline.intersects_bbox(b, filled=True) for b in boxes)
    hits += sum(outline.intersects_path(p, filled=False) or bool(outline.contains_points(p.vertices).any())
                for p in lines)
    return hits + int(not _inside(outline, frame))


def _inside(outline: Outline, frame: Bbox) -> bool:
    """Whether every corner of ``outline`` lies within ``frame`` (display space)."""
    x, y = np.asarray(outline.vertices).T
    return bool(x.min() >= frame.x0 and x.max() <= frame.x1 and y.min() >= frame.y0 and y.max() <= frame.y1)


def _box_outline(box: Bbox) -> Outline:
    """``box`` as a closed path, for ``_conflicts``."""
    return Outline(box.corners()[[0, 1, 3, 2, 0]], closed=True)


Spot = tuple[float, float, str]  # where a label goes: offset from its point (points) and horizontal alignment


def _label_spots(dx: float, dy: float) -> list[Spot]:
    """Where a point's label may go (offset in points from the point, alignment), nearest first: as asked,
    mirrored above or below, beside at mid height, right above or below, to the left; then further out, on the side
    asked first (above for dy >= 0)."""
    near: list[Spot] = [(dx, dy, "left"), (dx, -dy - 7, "left"), (6, -2.5, "left"), (0, 7, "center"),
                        (0, -13, "center"), (-dx, dy, "right"), (-dx, -dy - 7, "right"), (-6, -2.5, "right")]
    up: list[Spot] = [(3, 15, "left"), (9, 9, "left"), (0, 14, "center"), (-9, 9, "right")]
    down: list[Spot] = [(3, -22, "left"), (9, -16, "left"), (0, -20, "center"), (-9, -16, "right")]
    beside: list[Spot] = [(12, -2.5, "left"), (-12, -2.5, "right")]
    return near + (up + beside + down if dy >= 0 else down + beside + up)


def _annotate_groups(ax: Axes, pts: pd.DataFrame, columns: Sequence[str], colour, offset_for: Offset,
                     placed: list[Bbox] | None = None, lines: list[Outline] | None = None) -> None:
    """Label each point with its knob values (``columns``); points closer than 3% of the axes share one label
    ("β=5.28–20"), so collapsed models do not print on top of each other. A label goes to the first of
    ``_label_spots`` that touches nothing in ``placed`` (the markers and the labels drawn so far, to which it is
    added) and crosses none of ``lines`` (display-space paths: the curves) inside the axes; where every spot touches
    something, to the one that touches least."""
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
    frame = ax.get_window_extent()
    for g in groups:
        text, at = knob_text(g[0], g[-1], columns), (g[0]["rate"], g[0]["distortion"])
        own = [ax.transData.transform((p["rate"], p["distortion"])) for p in g]  # its own markers it may touch
        others = [b for b in placed if not any(b.contains(*xy) for xy in own)]
        spots = _label_spots(*offset_for(g[0]))
        scores = []
        for spot in spots:
            label = ax.annotate(text, at, xytext=spot[:2], ha=spot[2], textcoords="offset points", fontsize=6,
                                color=colour)
            box = label.get_window_extent()  # the figure's own renderer, whatever the backend
            scores.append(_conflicts(_box_outline(box), others, lines or [], frame))
            if scores[-1] == 0:
                break
            label.remove()
        else:  # nowhere clear: where it touches least
            spot = spots[int(np.argmin(scores))]
            label = ax.annotate(text, at, xytext=spot[:2], ha=spot[2], textcoords="offset points", fontsize=6,
                                color=colour)
            box = label.get_window_extent()
        placed.append(box)


def _constant_elbo_lines(ax: Axes, placed: list[Bbox] | None = None, lines: list[Outline] | None = None,
                         n: int = 6) -> None:
    """Light lines D + R = c (slope -1) at about ``n`` round values of c: points on one line have the same
    ELBO = -c, and each line says so ("−ELBO = 20", along the line, at the first place along it that keeps off
    ``placed`` (boxes: markers, labels) and ``lines`` (paths: curves)). A line too little of which shows to hold
    its label inside the axes is left out."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    placed = [] if placed is None else placed
    frame = ax.get_window_extent()
    for c in MaxNLocator(n, steps=[1, 2, 2.5, 5, 10]).tick_values(x0 + y0, x1 + y1):
        if not x0 + y0 < c < x1 + y1:
            continue
        label = _level_label(ax, float(c), (max(x0, c - y1), min(x1, c - y0)), placed=placed, lines=lines or [],
                             frame=frame)
        if label is None:
            continue
        line = _elbo_line()
        line.set_data([x0, x1], [c - x0, c - x1])
        ax.add_line(line)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _level_label(ax: Axes, c: float, span: tuple[float, float], *, placed: list[Bbox], lines: list[Outline],
                 frame: Bbox) -> Text | None:
    """"−ELBO = c" along the line D = c - R, centred on it at a fraction of its visible stretch ``span`` (rate
    from, to): the middle first, then further out; the clear spot, else the one touching least, or None where the
    label leaves the axes everywhere. Its extent (display space) joins ``placed``."""
    spots = (0.5, 0.65, 0.35, 0.8, 0.2, 0.9, 0.1)
    scores: list[tuple[int, Outline]] = []
    for t in spots:
        outline = _level_outline(ax, c, span[0] + t * (span[1] - span[0]))
        scores.append((_conflicts(outline, placed, lines, frame), outline))
        if scores[-1][0] == 0:
            break
    best = int(np.argmin([score for score, _ in scores]))
    if not _inside(scores[best][1], frame):
        return None
    placed.append(scores[best][1].get_extents())
    return _level_text(ax, c, span[0] + spots[best] * (span[1] - span[0]))


def _level_text(ax: Axes, c: float, r: float, rotated: bool = True) -> Text:
    """The label of the line D + R = c at rate r: centred on the line and turned along it (slope -1 in data
    coordinates, whatever the axes' aspect), on the axes' colour so that the line breaks under it."""
    return ax.text(r, c - r, f"−ELBO = {c:g}", rotation=-45 if rotated else 0, transform_rotates_text=rotated,
                   rotation_mode="anchor", ha="center", va="center", fontsize=5.5, color="0.45", zorder=1,
                   bbox=dict(boxstyle="square,pad=0.15", fc=ax.get_facecolor(), ec="none"))


def _level_outline(ax: Axes, c: float, r: float, pad: float = 1.0) -> Outline:
    """The display-space rectangle (a closed path) that the label of D + R = c at rate r covers, ``pad`` points
    around it: its unrotated size, turned by the line's angle on screen."""
    probe = _level_text(ax, c, r, rotated=False)
    box = probe.get_window_extent()
    probe.remove()
    (x0, y0), (x1, y1) = ax.transData.transform([(r, c - r), (r + 1, c - r - 1)])
    angle = math.atan2(y1 - y0, x1 - x0)
    half = np.array([box.width, box.height]) / 2 + pad * figure_of(ax).dpi / 72
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]]) * half
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return Outline((x0, y0) + corners @ turn.T, closed=True)


# -- the figures of ``ibkit analyse`` (``ibkit.analysis.Analysis.write``): one model, from its report's numbers ----

def reference_folder(dataset: str) -> Path | None:
    """The committed rate-distortion reference of ``dataset`` (its registered ``reference``, a folder of results/) in
    the checkout ibkit runs from, if it is there.

    Args:
        dataset: a registered dataset's name.

    Returns:
        the folder, or None.
    """
    name = DATASETS.info(dataset).get("reference")
    folder = Path(__file__).resolve().parents[1] / "results" / name if name else None
    return folder if folder is not None and (folder / "runs.csv").is_file() else None


def plane_figure(a: Analysis) -> Figure:
    """The model's point (a star; hollow for a deterministic code, placed at its probe information) on the
    rate-distortion plane with its I(X;Z) bracket as a band at its distortion (InfoNCE to the upper bound; for a
    deterministic code, whose information has no upper bound, an arrow), beside the committed reference sweep of its
    dataset, named in the legend; where there is none, on the bare plane with its constant-ELBO lines, saying so.

    Args:
        a: what ``ibkit.analyse`` measured.

    Returns:
        the figure.
    """
    from ibkit.store import RunFolder

    r, stochastic = a.row, not math.isnan(a.row["rate"])
    folder = reference_folder(a.dataset)
    reference = RunFolder(folder).load() if folder is not None else None
    d, lower = r["distortion"], r["mi_lower"]
    x, x_err = (r["rate"], r["rate_se"]) if stochastic else (lower, r["mi_lower_se"])
    upper = r["mi_upper"] if stochastic and math.isfinite(r["mi_upper"]) else None
    with plt.rc_context(style()):
        fig, ax = figure_for(None, (SINGLE_COLUMN * 1.45, SINGLE_COLUMN * 1.45 * 1.05))
        if upper is not None:
            ax.plot([lower, upper], [d, d], color="0.2", lw=5, alpha=0.3, solid_capstyle="butt",
                    label=f"its I(X;Z) bracket: {lower:.3g} to {upper:.3g} (InfoNCE to the upper bound)")
        what = f"R = {x:.3g}, D = {d:.3g}" if stochastic else \
            f"I(X;Z) ≥ {lower:.3g} through a σ = {r.get('probe_sigma', math.nan):g} probe, no upper bound (→)"
        ax.errorbar([x], [d], xerr=[x_err], yerr=[r.get("distortion_se", 0.0)], marker="*", ms=12, color="black",
                    mfc="black" if stochastic else "white", zorder=5, ls="none", capsize=2,
                    label=f"{a.name} (this model): {what}")
        span = max([x, upper or 0, 1] + ([] if reference is None else [
            reference[c].max() for c in ("rate", "mi_lower") if c in reference and reference[c].notna().any()]))
        if reference is None:  # the lone point, with room around it, from the origin
            ax.set_xlim(0, 1.3 * span)
            ax.set_ylim(min(0, 1.3 * d), max(1.3 * d, 1))
            committed = ", ".join(name for name in DATASETS if DATASETS.info(name).get("reference"))
            ax.text(0.97, 0.97, f"no reference sweep for this data\n(committed for {committed})",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.35", style="italic",
                    bbox=dict(boxstyle="square,pad=0.2", fc="white", ec="none"), zorder=4)
        if not stochastic:
            ax.annotate("", xy=(x + 0.1 * span, d), xytext=(x, d), arrowprops=dict(arrowstyle="->", color="black"))
        source = f"results/{DATASETS.info(a.dataset)['reference']}" if reference is not None else None
        rate_distortion(reference, ax=ax, source=source, legend_below=True)
        set_title(ax, f"{a.name} on the rate–distortion plane" + (f" ({a.dataset})" if a.dataset else ""))
    return fig


def bracket_figure(a: Analysis) -> Figure:
    """The sandwich mi_lower <= I(X;Z) <= mi_upper with the rate and the log N ceiling of InfoNCE, in nats.

    Args:
        a: what ``ibkit.analyse`` measured.

    Returns:
        the figure.
    """
    r = a.row
    with plt.rc_context(style()):
        fig, ax = figure_for(None, (SINGLE_COLUMN * 1.45, SINGLE_COLUMN * 0.6))
        upper = r["mi_upper"] if math.isfinite(r["mi_upper"]) else None
        right = max(v for v in (r["log_n"], r["mi_lower"], upper or 0,
                                r["rate"] if math.isfinite(r["rate"]) else 0)) * 1.25
        ax.errorbar([r["mi_lower"]], [0], xerr=[1.96 * r["mi_lower_se"]], marker="|", ms=18, color="C0",
                    label="lower bound (InfoNCE)")
        if upper is not None:
            ax.errorbar([upper], [0], xerr=[1.96 * r["mi_upper_se"]], marker="|", ms=18, color="C1",
                        label="upper bound")
            ax.plot([r["mi_lower"], upper], [0, 0], color="grey", lw=4, alpha=0.4, solid_capstyle="butt")
        else:
            ax.annotate("", xy=(right, 0), xytext=(r["mi_lower"], 0), arrowprops=dict(arrowstyle="->", color="C1"))
            ax.text(right, 0.15, "no upper bound (∞)", ha="right", color="C1", fontsize="small",
                    bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none"), zorder=3)
        ax.axvline(r["log_n"], ls="--", color="grey", lw=1, label=f"log N = {r['log_n']:.3g} (InfoNCE's ceiling)")
        ax.set_xlim(0, right)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        ax.set_xlabel("I(X;Z)  [nats]")
        set_title(ax, f"What crosses the code of {a.name} (95% intervals)")
        ax.legend(loc="upper left", ncol=1, frameon=False, bbox_to_anchor=(0, -0.35))
    return fig


def kl_figure(kl: pd.DataFrame) -> Figure:
    """Each latent dimension's E KL(q(z_k|x) ‖ p(z_k)), largest first (``ibkit analyse``'s ``kl_per_dim`` table:
    dimension, kl).

    Args:
        kl: the table, columns dimension and kl.

    Returns:
        the figure.
    """
    with plt.rc_context(style()):
        fig, ax = figure_for(None, (SINGLE_COLUMN * 1.2, SINGLE_COLUMN * 0.8))
        ordered = kl.sort_values("kl", ascending=False)
        ax.bar(range(len(ordered)), ordered["kl"], color="C0")
        ax.set_xticks(range(len(ordered)), [str(d) for d in ordered["dimension"]])
        ax.set_xlabel("latent dimension k, largest KL first  [index]")
        ax.set_ylabel("E KL(q(z_k|x) ‖ p(z_k))  [nats]")
        set_title(ax, "KL per dimension")
    return fig


def channel_figure(channels: pd.DataFrame) -> Figure:
    """Each latent channel's rate, largest first, one panel per layer (``ibkit analyse``'s ``channel_rates`` table of
    an image model: layer, channel, rate, rate_se, active), 95% intervals over the images.

    Args:
        channels: the table.

    Returns:
        the figure.
    """
    layers = sorted(channels["layer"].unique())
    with plt.rc_context(style()):
        fig, axes = plt.subplots(1, len(layers), figsize=(SINGLE_COLUMN * 1.2 * len(layers), SINGLE_COLUMN * 0.8),
                                 squeeze=False, constrained_layout=True)
        for ax, layer in zip(axes[0], layers, strict=True):
            rows = channels[channels["layer"] == layer].sort_values("rate", ascending=False)
            rank, rate = np.arange(len(rows)), rows["rate"].to_numpy()
            half = 1.96 * rows["rate_se"].fillna(0).to_numpy()
            ax.fill_between(rank, rate - half, rate + half, step="mid", color="C0", alpha=0.25, lw=0,
                            label="95% interval over the images")
            ax.step(rank, rate, where="mid", color="C0", lw=1.2, label="the channel's rate")
            ax.set_xlim(-0.5, len(rows) - 0.5)
            ax.set_ylim(bottom=0)
            ax.set_xlabel(f"{'layer ' + str(layer) + ' ' if len(layers) > 1 else ''}channel, largest rate first  "
                          "[rank]")
            ax.set_ylabel("rate of the channel  [nats per image]")
            ax.legend(loc="lower left", fontsize="x-small")
            set_title(ax, f"{int(rows['active'].sum())} of {len(rows)} channels above 0.1 nats")
    return fig


def rate_map_figure(image: Tensor, rates: Tensor, *, title: str = "") -> Figure:
    """Where an image's bits go: the image, and beside it the same image under its rate map (nats per latent
    position, ``ibkit.adapters.images.rate_map``) stretched to the image's size.

    Args:
        image: [C, H, W] in [0, 1] (C = 1 or 3).
        rates: [h, w] nats per latent position.
        title: the figure's title.

    Returns:
        the figure.
    """
    pixels = image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    grey = pixels.shape[-1] == 1
    extent = (0, pixels.shape[1], pixels.shape[0], 0)
    with plt.rc_context(style()):
        fig, (left, right) = plt.subplots(1, 2, figsize=(SINGLE_COLUMN * 1.6, SINGLE_COLUMN * 0.8),
                                          constrained_layout=True)
        for ax in (left, right):
            ax.imshow(pixels[..., 0] if grey else pixels, cmap="gray" if grey else None, extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
        shown = right.imshow(rates.detach().cpu().numpy(), cmap="magma", alpha=0.6, extent=extent,
                             interpolation="nearest")
        fig.colorbar(shown, ax=right, label="rate  [nats per latent position]", shrink=0.9)
        left.set_title("image", fontsize="small")
        total = float(rates.sum())
        right.set_title(f"rate map: {total:,.0f} nats in all" if total >= 1000 else
                        f"rate map: {total:.4g} nats in all", fontsize="small")
        if title:
            fig.suptitle(title, fontsize="small")
    return fig


def probe_figure(a: Analysis) -> Figure:
    """A deterministic code's probe curve: InfoNCE (and the upper bound where stored) on I(X; Z + σε) against the
    probe noise σ, under the log N ceiling.

    Args:
        a: what ``ibkit.analyse`` measured, with a ``probe_curve`` table.

    Returns:
        the figure.
    """
    curve = a.tables["probe_curve"]
    with plt.rc_context(style()):
        fig, ax = figure_for(None, (SINGLE_COLUMN * 1.2, SINGLE_COLUMN * 0.8))
        ax.errorbar(curve["sigma"], curve["infonce"], yerr=1.96 * curve["infonce_se"], marker="o", color="C2",
                    label="InfoNCE (lower bound)")
        if "upper" in curve:  # the smallest of LOO, rate and capacity: above the frame where log N caps InfoNCE
            ax.fill_between(curve["sigma"], curve["infonce"], curve["upper"], color="C2", alpha=0.15, lw=0,
                            label="up to min(LOO, rate, capacity)")
        ax.axhline(a.row["log_n"], ls="--", color="grey", lw=1, label=f"log N = {a.row['log_n']:.3g}")
        ax.set_ylim(bottom=0, top=1.4 * max(a.row["log_n"], float(curve["infonce"].max())))
        ax.set_xscale("log")
        ax.set_xlabel("probe noise std σ  [code units]")
        ax.set_ylabel("I(X; Z + σε)  [nats]")
        set_title(ax, "A deterministic code through a probe channel")
        ax.legend()
    return fig


def label_figure(a: Analysis) -> Figure:
    """I(z_k; label) per latent dimension above the noise floor of shuffled labels, titled with the label probe's
    accuracy and chance.

    Args:
        a: what ``ibkit.analyse`` measured, with a ``label_information`` table.

    Returns:
        the figure.
    """
    info = a.tables["label_information"]
    with plt.rc_context(style()):
        fig, ax = figure_for(None, (SINGLE_COLUMN * 1.2, SINGLE_COLUMN * 0.8))
        ax.bar(info["dimension"], info["mi_with_label"], color="C4")
        ax.set_xlabel("latent dimension k  [index]")
        ax.axhline(a.row["label_mi_noise"], ls="--", color="grey", lw=1,
                   label=f"noise floor {a.row['label_mi_noise']:.2f} (labels shuffled)")
        ax.set_ylim(0, 1.3 * max(info["mi_with_label"].max(), a.row["label_mi_noise"], 1e-3))  # room for the legend
        ax.legend(loc="upper left", ncol=1)
        ax.set_ylabel("I(z_k; label), z ~ q(z|x)  [nats]")
        set_title(ax, f"Label information: probe accuracy {a.row['label_accuracy']:.3f} "
                        f"(chance {a.row['label_chance']:.3f})")
    return fig
