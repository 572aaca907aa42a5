"""Paper-style figures drawn from stored tidy tables (never retraining). Saved as PDF (vector) and PNG (200 dpi).

One house style: seaborn's colour-blind palette and a fixed colour and marker per model kind in every figure.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ibkit.tables import bootstrap_interval, left_out  # noqa: E402

_PALETTE = sns.color_palette("colorblind")
KIND_STYLE = {  # kind -> (colour, marker, legend label)
    "vae": (_PALETTE[0], "o", "VAE"),
    "noisy_ae": (_PALETTE[1], "s", "noisy AE"),
    "ae": (_PALETTE[2], "D", "AE"),
    "sparse_ae": (_PALETTE[3], "^", "sparse AE"),
}
SEED_INTERVAL = ("ci", 95)  # seaborn's whiskers: the 95% bootstrap interval over seeds, as in the tables
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
    """Save ``fig`` as folder/name.pdf and folder/name.png (200 dpi); returns the paths. The PDF carries no
    creation date, so redrawing an unchanged table leaves the file byte for byte as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.pdf", folder / f"{name}.png"]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        undated = {"CreationDate": None} if path.suffix == ".pdf" else None
        fig.savefig(tmp, dpi=200, bbox_inches="tight", metadata=undated)
        os.replace(tmp, path)
    plt.close(fig)
    return paths


def _mean_interval(df: pd.DataFrame, by: str, cols=("rate", "distortion")) -> pd.DataFrame:
    """Mean over seeds of ``cols`` for each value of ``by``, and ``COL_err``: the half-width of the 95% bootstrap
    interval over seeds, the tables' interval (0 for one seed: no bar)."""
    rows = []
    for key, g in df.groupby(by):
        row = {by: key}
        for c in cols:
            lo, hi = bootstrap_interval(g[c].dropna())
            row[c], row[f"{c}_err"] = g[c].mean(), 0.0 if math.isnan(lo) else (hi - lo) / 2
        rows.append(row)
    return pd.DataFrame(rows)


def _note_left_out(fig: plt.Figure, runs: pd.DataFrame, split: str) -> None:
    """A footnote naming the runs the figure leaves out (diverged or failed), so none is dropped silently."""
    note = left_out(runs, split)
    if note:
        fig.text(0.0, -0.02, textwrap.fill(note, 120), fontsize=5.5, color="0.3", va="top", ha="left")


def rate_distortion(df: pd.DataFrame, split: str = "test", width: float = SINGLE_COLUMN * 1.45) -> plt.Figure:
    """Every model kind on one rate-distortion plane, nats (Alemi et al. 2018, Fig. 1).

    VAEs form a curve over beta per posterior family (annotated); noisy AEs are points by noise level (their rate
    KL to N(0, I) bounds I(X;Z)); deterministic and sparse AEs, whose rate is unbounded, sit at the information
    their code carries through the smallest probe channel (hollow, with an arrow: a lower bound, at most log N).
    Grey lines are constant ELBO, D + R = c; where the data entropy H is known, the line D = H - R below which no
    model can go. Points show the mean over seeds with bars for the 95% bootstrap interval when there are several.
    """
    runs = df[(df["split"] == split) & (df["status"] == "ok")]
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(width, width * 1.05))
        labels: list[tuple] = []  # the point labels, drawn last
        vae = runs[runs["kind"] == "vae"]
        families = vae["posterior"].replace("", "diagonal") if len(vae) else pd.Series(dtype=str)
        for family in [f for f in FAMILY_COLOURS if f in set(families)]:
            colour, marker, label = KIND_STYLE["vae"]
            if family != "diagonal" or len(set(families)) > 1:
                colour, label = FAMILY_COLOURS[family], f"{label}, {family} q"
            pts = _mean_interval(vae[families == family], "beta").sort_values("beta")
            ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_err"], yerr=pts["distortion_err"],
                        color=colour, marker=marker, ms=4, lw=1.2, capsize=2, label=f"{label} (beta sweep)")
            low = pts["distortion"].quantile(0.35)  # labels below the flat low-distortion end, above the steep end
            labels.append((pts, "beta", "β", colour, lambda p, low=low: (4, -10) if p["distortion"] < low else (4, 3)))
        noisy = runs[runs["kind"] == "noisy_ae"]
        if len(noisy):
            colour, marker, label = KIND_STYLE["noisy_ae"]
            pts = _mean_interval(noisy, "noise")
            single = f", σ = {pts['noise'].iloc[0]:.3g}" if len(pts) == 1 else ""
            ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_err"], yerr=pts["distortion_err"],
                        color=colour, marker=marker, ms=5, ls="none", capsize=2,
                        label=f"{label}{single} (rate: KL to N(0, I))")
            if len(pts) > 1:
                labels.append((pts, "noise", "σ", colour, lambda p: (4, 3)))
        span = max(runs["rate"].max() if runs["rate"].notna().any() else 0, runs["mi_lower"].max()
                   if "mi_lower" in runs and runs["mi_lower"].notna().any() else 0, 1)
        for kind in ("ae", "sparse_ae"):
            det = runs[runs["kind"] == kind]
            if not len(det):
                continue
            colour, marker, label = KIND_STYLE[kind]
            if "mi_lower" in det and det["mi_lower"].notna().any():  # placed at what crosses a probe channel
                pt = _mean_interval(det.assign(one=0), "one", cols=("mi_lower", "distortion")).iloc[0]
                x, y = pt["mi_lower"], pt["distortion"]
                sigma = det["probe_sigma"].iloc[0] if "probe_sigma" in det else math.nan
                ceiling = " = log N" if "log_n" in det and x > det["log_n"].mean() - 0.05 else ""
                ax.errorbar(x, y, xerr=pt["mi_lower_err"], yerr=pt["distortion_err"], marker=marker, ms=6,
                            mfc="white", mec=colour, mew=1.5, color=colour, ls="none", capsize=2,
                            label=f"{label}: I ≥ {x:.1f}{ceiling} via a σ = {sigma:.0e} probe (rate unbounded)")
                ax.annotate("", xy=(x + 0.07 * span, y), xytext=(x, y),
                            arrowprops=dict(arrowstyle="->", color=colour, lw=1))
            else:  # a table without probe information: a line at its distortion
                ax.axhline(det["distortion"].mean(), color=colour, ls="--", lw=1,
                           label=f"{label}: D = {det['distortion'].mean():.1f} (rate unbounded)")
        ax.set_xlim(0, ax.get_xlim()[1] * 1.15)  # room for the labels of the rightmost points
        if "entropy" in runs and runs["entropy"].notna().any():  # D >= H - I >= H - R for every model
            h = runs["entropy"].dropna().iloc[0]
            r = np.linspace(0, ax.get_xlim()[1], 50)
            ax.plot(r, h - r, color="0.1", ls=":", lw=1.2, label=f"D = H − R (H = {h:.2f}): no model below")
        ax.set_ylim(min(0, ax.get_ylim()[0]), ax.get_ylim()[1] * 1.05)
        for label in labels:  # once the limits are final: the labels' overlap test is in display space
            _annotate_groups(ax, *label)
        _constant_elbo_lines(ax)
        ax.set_xlabel("rate R = E KL(q(z|x) ‖ p(z)); AEs: I(X;Z) through the probe  [nats]")
        ax.set_ylabel("distortion D = −E log p(x|z)  [nats]")
        ax.set_title(f"Rate–distortion plane ({split} split)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)  # below: clear of the points
    _note_left_out(fig, df, split)
    return fig


def _annotate_groups(ax: plt.Axes, pts: pd.DataFrame, column: str, symbol: str, colour, offset_for) -> None:
    """Label each point with its ``column`` value; points closer than 3% of the axes share one label
    ("β=5.28–20"), so collapsed models do not print on top of each other, and a label that would touch one drawn
    before moves to the other side of its point."""
    x_span = max(pts["rate"].max(), 1e-9)
    y_span = max(pts["distortion"].max(), 1e-9)
    pts = pts.sort_values(column)
    groups: list[list] = []
    for _, p in pts.iterrows():
        last = groups[-1][-1] if groups else None
        near = last is not None and abs(p["rate"] - last["rate"]) < 0.03 * x_span and \
            abs(p["distortion"] - last["distortion"]) < 0.03 * y_span
        groups[-1].append(p) if near else groups.append([p])
    renderer, placed = ax.figure.canvas.get_renderer(), []  # the boxes of the labels drawn so far
    for g in groups:
        text = f"{symbol}={g[0][column]:.3g}" + (f"–{g[-1][column]:.3g}" if len(g) > 1 else "")
        offset = offset_for(g[0])
        for candidate in (offset, (offset[0], -offset[1] - 7)):  # as asked, then mirrored about the point
            label = ax.annotate(text, (g[0]["rate"], g[0]["distortion"]), xytext=candidate,
                                textcoords="offset points", fontsize=6, color=colour)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed) or candidate != offset:
                break
            label.remove()
        placed.append(box)


def _constant_elbo_lines(ax: plt.Axes, n: int = 6) -> None:
    """Light lines D + R = c (slope -1): points on one line have the same ELBO = -c."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for i, c in enumerate(np.linspace(0, x1 + y1, n + 2)[1:-1]):
        ax.plot([x0, x1], [c - x0, c - x1], color="0.8", lw=0.6, zorder=0,
                label="constant ELBO: D + R = const" if i == 0 else None)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


KIND_TITLES = {"ae": "deterministic AE", "sparse_ae": "sparse AE", "noisy_ae": "noisy AE", "vae": "VAE"}


def model_label(row) -> str:
    """A short name for one model of a tidy row: 'AE d=1', 'sparse AE λ=0.1', 'noisy AE σ=0.2 tanh', 'VAE β=4'."""
    kind = row["kind"]
    if kind == "ae":
        return f"AE d={int(row['latent_dim'])}"
    if kind == "sparse_ae":
        return f"sparse AE λ={row['sparsity']:g}"
    if kind == "noisy_ae":
        bound = row.get("code_bound")
        return f"noisy AE σ={row['noise']:g} {bound if isinstance(bound, str) and bound else 'unbounded'}"
    return f"VAE β={row['beta']:g}"


def _shades(kind: str, n: int) -> list:
    """n shades of the kind's colour, light to dark, for variants of one kind."""
    return sns.dark_palette(KIND_STYLE[kind][0], n + 2, reverse=True)[:n][::-1] if n else []


def information_vs_probe_noise(curves: pd.DataFrame) -> plt.Figure:
    """InfoNCE lower bound on I(X;Z) (nats) against the probe noise std sigma, one panel per kind and one line per
    model (mean over seeds). log N is the ceiling; dotted lines are the capacity bounds of tanh-bounded noisy AEs
    seen through the probe, d/2 log(1 + 1/(sigma_0^2 + sigma^2))."""
    kinds = [k for k in KIND_TITLES if k in set(curves["kind"])]
    with plt.rc_context(_style()):
        fig, axes = plt.subplots(2, 2, figsize=(DOUBLE_COLUMN, DOUBLE_COLUMN * 0.95), sharex=True, sharey=True)
        log_n = curves["log_n"].max()
        for ax, kind in zip(axes.flat, kinds):
            sub = curves[curves["kind"] == kind].copy()
            sub["label"] = sub.apply(model_label, axis=1)
            key = {"ae": "latent_dim", "sparse_ae": "sparsity", "noisy_ae": "noise", "vae": "beta"}[kind]
            levels = sorted(sub[key].unique())
            colours = dict(zip(levels, _shades(kind, len(levels))))
            for label, g in sub.groupby("label", sort=False):
                mean = g.groupby("sigma")["infonce"].mean()
                first = g.iloc[0]
                dashed = kind == "noisy_ae" and not first["code_bound"]
                ax.plot(mean.index, mean.values, marker=KIND_STYLE[kind][1], ms=3, lw=1.2,
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
        for ax in axes.flat[len(kinds):]:
            ax.set_visible(False)
        axes.flat[0].invert_xaxis()  # shared: noise shrinks to the right
        ax_ref = axes.flat[0]
        ax_ref.set_ylim(0, log_n * 1.15)
        for ax in axes.flat:  # each panel's own axis labels: its legend sits below it
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("probe noise std σ  [code units, log scale]", fontsize=7)
        for ax in axes[:, 0]:
            ax.set_ylabel("InfoNCE bound on I(X;Z)  [nats]")
        if "noisy_ae" in kinds:
            fig.text(0.5, -0.01, "noisy AE: solid = tanh-bounded code, dashed = unbounded; "
                     "dotted = capacity bound through the probe", ha="center", fontsize=6)
        fig.tight_layout(h_pad=1.0)
    return fig


def information_vs_distortion(runs: pd.DataFrame, split: str = "test") -> plt.Figure:
    """Information (InfoNCE lower bound, bar up to the upper bound) against distortion, nats, one point per
    model (mean over seeds). Deterministic codes (hollow) are measured through the smallest probe."""
    ok = runs[(runs["split"] == split) & (runs["status"] == "ok")].copy()
    ok["label"] = ok.apply(model_label, axis=1)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN * 0.8, SINGLE_COLUMN * 1.2))
        log_n = ok["log_n"].max()
        for kind in KIND_TITLES:
            sub = ok[ok["kind"] == kind]
            if not len(sub):
                continue
            marker = KIND_STYLE[kind][1]
            pts = sub.groupby("label", sort=False)[["distortion", "mi_lower", "mi_upper", "probe_sigma"]].mean()
            upper = np.minimum(pts["mi_upper"], log_n * 1.1)  # unbounded upper bounds are cut at the frame
            bar = (upper - pts["mi_lower"]).clip(lower=0)  # sampling noise can put LOO a hair below InfoNCE
            probed = kind in ("ae", "sparse_ae")  # hollow: measured through the smallest probe
            for (label, p), b, cut, colour in zip(pts.iterrows(), bar, pts["mi_upper"] > upper,
                                                  _shades(kind, len(pts))):
                suffix = f" (probe σ={p['probe_sigma']:g})" if probed else ""
                ax.errorbar([p["distortion"]], [p["mi_lower"]], yerr=[[0], [b]], fmt=marker, ms=5, color=colour,
                            mfc="white" if probed else colour, capsize=0 if cut else 2, lw=0.8, label=label + suffix)
                if cut:  # the upper bound lies above the frame: an arrowhead where its bar leaves
                    ax.plot([p["distortion"]], [log_n * 1.1], marker="^", ms=4, color=colour, clip_on=False)
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
    _note_left_out(fig, runs, split)
    return fig


def kl_per_dim(kl: pd.DataFrame) -> plt.Figure:
    """Heatmap of E_x KL(q(z_k|x) || p(z_k)) (nats) for each VAE beta (rows) and latent dimension (columns,
    sorted by KL within each row, so the row reads as the model's spectrum of used dimensions)."""
    mean = kl.groupby(["beta", "dim"])["kl"].mean().unstack("dim")
    spectrum = pd.DataFrame(-np.sort(-mean.values, axis=1), index=[f"β={b:g}" for b in mean.index],
                            columns=[str(i + 1) for i in range(mean.shape[1])])
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN * 1.3, 0.45 * len(spectrum) + 1.0))
        sns.heatmap(spectrum, annot=True, fmt=".2f", cmap="mako_r", ax=ax, annot_kws={"fontsize": 6},
                    cbar_kws={"label": "KL per dimension  [nats]"})
        ax.set_xlabel("latent dimension, sorted by KL")
        ax.set_ylabel("VAE KL weight")
        ax.set_title("Rate per latent dimension (test split)")
    return fig


FAMILY_COLOURS = {"diagonal": _PALETTE[0], "full": _PALETTE[4], "iaf": _PALETTE[2]}  # VAE posterior families


def _family_rows(runs: pd.DataFrame) -> pd.DataFrame:
    ok = runs[(runs["status"] == "ok") & (runs["split"] == "test")].copy()
    ok["setting"] = ok.apply(lambda r: f"{r['posterior']}\nβ={r['beta']:g}", axis=1)
    return ok


def gap_by_family(runs: pd.DataFrame) -> plt.Figure:
    """The inference gap log p(x) − ELBO, nats, per posterior family and beta: exact where the runs know log p(x)
    (column ``inference_gap``, with the best diagonal q's closed-form cost dashed), otherwise its lower bound
    IWAE − ELBO; bars are means over seeds with whiskers for the 95% bootstrap interval over seeds."""
    ok = _family_rows(runs)
    exact = "inference_gap" in ok and ok["inference_gap"].notna().all()
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN * 1.4, SINGLE_COLUMN))
        sns.barplot(ok, x="beta", y="inference_gap" if exact else "iwae_minus_elbo", hue="posterior",
                    palette=FAMILY_COLOURS, errorbar=SEED_INTERVAL, seed=0, capsize=0.1, ax=ax,
                    hue_order=[f for f in FAMILY_COLOURS if f in set(ok["posterior"])])
        if exact:
            ax.axhline(ok["best_diagonal_kl"].iloc[0], color="0.3", ls="--", lw=1, label="best diagonal q")
        ax.set_xlabel("KL weight β")
        ax.set_ylabel(f"{'log p(x)' if exact else 'IWAE'} − ELBO  [nats]")
        ax.set_title(f"Inference gap{' (exact)' if exact else ' (lower bound)'} by posterior family")
        ax.legend(title="posterior", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    _note_left_out(fig, runs, "test")
    return fig


def _label_family_axes(ax: plt.Axes, ylabel: str, title: str) -> None:
    """Axis labels and title of a per-(family, beta) bar chart, its legend below the axes, clear of the bars."""
    ax.set_xlabel("posterior family and KL weight")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)


def correlation_by_family(runs: pd.DataFrame) -> plt.Figure:
    """Mean absolute correlation between latents given x: under q, and under the true posterior (importance
    weighted from q), per family and beta."""
    ok = _family_rows(runs)
    long = ok.melt(id_vars=["setting"], value_vars=["q_correlation", "true_correlation"], var_name="measure",
                   value_name="correlation")
    long["measure"] = long["measure"].map({"q_correlation": "q(z|x)", "true_correlation": "p(z|x), reweighted"})
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN * 0.6, SINGLE_COLUMN))
        sns.barplot(long, x="setting", y="correlation", hue="measure", palette=[_PALETTE[7], _PALETTE[3]],
                    errorbar=SEED_INTERVAL, seed=0, capsize=0.1, ax=ax)
        _label_family_axes(ax, "mean |correlation| of latents given x  [unitless]",
                           "Berkson: latents independent a priori, dependent given x")
    _note_left_out(fig, runs, "test")
    return fig


def amortization_by_family(runs: pd.DataFrame) -> plt.Figure:
    """The inference gap split into its approximation part (log p(x) − ELBO of the best q of the family) and
    its amortisation part (ELBO of the best q − ELBO of the encoder's q), nats, mean over seeds; whiskers: the 95%
    bootstrap interval over seeds of the approximation gap (at its top) and of the whole gap (at the stack's top)."""
    ok = _family_rows(runs).assign(total_gap=lambda d: d["approximation_gap"] + d["amortization_gap"])
    pts = _mean_interval(ok, "setting", cols=("approximation_gap", "total_gap"))
    pts = pts.set_index("setting").loc[list(dict.fromkeys(ok["setting"]))]  # the runs' order
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN * 0.6, SINGLE_COLUMN))
        x = np.arange(len(pts))
        ax.bar(x, pts["approximation_gap"], color=_PALETTE[0], label="approximation gap")
        ax.bar(x, pts["total_gap"] - pts["approximation_gap"], bottom=pts["approximation_gap"], color=_PALETTE[1],
               label="amortisation gap")
        for column in ("approximation_gap", "total_gap"):
            ax.errorbar(x, pts[column], yerr=pts[f"{column}_err"], fmt="none", color="0.25", capsize=3, lw=1.2)
        ax.set_xticks(x, pts.index)
        _label_family_axes(ax, "log p(x) − ELBO  [nats]", "Where the ELBO gap comes from (Cremer et al. 2018)")
    _note_left_out(fig, runs, "test")
    return fig


def rd_shannon(df: pd.DataFrame, spectrum: list[float], latent_dim: int, scale: float | None,
               split: str = "test") -> plt.Figure:
    """The beta-VAE sweep against Shannon's rate-distortion function of its Gaussian source (reverse
    water-filling over ``spectrum``, Cover & Thomas 2006, thm. 10.3.3): rate against MSE per example, and,
    when the decoder scale s is fixed, against the NLL distortion mse / (2 s^2) + D/2 ln(2 pi s^2). Dashed: the
    curve with only ``latent_dim`` directions free to carry rate; circles on it: where the water level crosses
    an eigenvalue and one more unit falls silent."""
    from ibkit.theory import gaussian_rd, gaussian_rd_curve

    runs = df[(df["split"] == split) & (df["status"] == "ok") & (df["kind"] == "vae")]
    pts = _mean_interval(runs, "beta", cols=("rate", "mse", "distortion")).sort_values("beta") if len(runs) else None
    panels = [("mse", "distortion: MSE per example  [squared units]", lambda d: d)]
    if scale is not None:
        offset = 0.5 * len(spectrum) * np.log(2 * np.pi * scale**2)
        panels.append(("distortion", "distortion: −E log p(x|z)  [nats]", lambda d: d / (2 * scale**2) + offset))
    free, bound = gaussian_rd_curve(spectrum, 300), gaussian_rd_curve(spectrum, 300, max_dims=latent_dim)
    colour, marker, _ = KIND_STYLE["vae"]
    with plt.rc_context(_style()):
        fig, axes = plt.subplots(1, len(panels), figsize=(SINGLE_COLUMN * 1.3 * len(panels), SINGLE_COLUMN),
                                 squeeze=False)
        for ax, (column, xlabel, to_x) in zip(axes[0], panels):
            ax.plot(to_x(free["mse"]), free["rate"], color="0.1", lw=1.2, label="Shannon R(D)")
            if latent_dim < len(spectrum):
                ax.plot(to_x(bound["mse"]), bound["rate"], color="0.45", lw=1, ls="--",
                        label=f"R(D) with {latent_dim} latents")
            for i, lam in enumerate(spectrum[:latent_dim], start=1):  # theta = lambda_i: unit i falls silent
                r, d = gaussian_rd(spectrum, lam, max_dims=latent_dim)
                ax.plot(to_x(d), r, "o", ms=4, mfc="white", mec="0.45",
                        label="θ = λᵢ: a unit falls silent (i→i−1)" if i == 1 else None)
                ax.annotate(f"{i}→{i - 1}", (to_x(d), r), xytext=(3, 3), textcoords="offset points", fontsize=6,
                            color="0.35")
            if pts is not None:
                ax.errorbar(pts[column], pts["rate"], xerr=pts[f"{column}_err"], yerr=pts["rate_err"], color=colour,
                            marker=marker, ms=4, ls="none", capsize=2, label="β-VAE (mean over seeds)")
                for _, p in pts.iterrows():
                    ax.annotate(f"β={p['beta']:.3g}", (p[column], p["rate"]), xytext=(5, 5),
                                textcoords="offset points", fontsize=6, color=colour)
            top = 1.6 * max(pts["rate"].max() if pts is not None else 0, gaussian_rd(spectrum, spectrum[-1])[0], 1)
            ax.set_ylim(0, top)  # the curve rises without bound as D -> 0: show the sweep's range
            ax.set_xlabel(xlabel)
            ax.set_ylabel("rate R  [nats]")
        axes[0][0].set_title(f"Gaussian source: β-VAEs on Shannon's R(D) ({split} split)", loc="left")
        axes[0][-1].legend(loc="upper right", frameon=False)
    _note_left_out(fig, df, split)
    return fig
