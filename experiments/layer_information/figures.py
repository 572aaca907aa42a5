"""The layer-information experiment's figures, from layers.csv (per run and layer) and runs.csv: each layer's rate
stacked against beta, its active units, its information bounds, and the rate-distortion plane by depth.

Panels are the structures (one layer; two and three layers, bottom-up and top-down); lines or bars are means over
seeds, whiskers the 95% bootstrap interval over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ibkit import plots

LAYER_COLOURS = [plots.PALETTE[i] for i in (0, 1, 2, 4, 3)]  # z_1, z_2, z_3, ...
SCHEDULE_STYLE = {"none": "-", "warmup": "--", "free_bits": ":", "aggressive": "-."}


def structure_of(depth: int, inference: str) -> str:
    """A panel's title: "1 layer", "2 layers, top-down"."""
    return "1 layer" if depth == 1 else f"{depth} layers, {inference.replace('_', '-')}"


def _structures(table: pd.DataFrame) -> list[tuple[int, str]]:
    """The (depth, inference) pairs of the table, shallow first, top-down before bottom-up."""
    pairs = table[["depth", "inference"]].drop_duplicates()
    return sorted(map(tuple, pairs.to_numpy()), key=lambda p: (p[0], p[1] != "top_down"))  # type: ignore[misc]


def _panels(n: int, height: float = 2.3) -> tuple[Figure, np.ndarray]:
    return plt.subplots(1, n, figsize=(1.4 + 2.15 * n, height), squeeze=False, sharey=True)


def rate_per_layer(layers: pd.DataFrame) -> Figure:
    """Each layer's rate (its conditional KL, nats) stacked against beta, one panel per structure (columns) and
    schedule (rows), means over seeds: where a hierarchical code puts its nats, which layer empties first as beta
    grows, and what a schedule changes."""
    structures = _structures(layers)
    schedules = [s for s in SCHEDULE_STYLE if s in set(layers["schedule"])]
    betas = sorted(layers["beta"].unique())
    with plt.rc_context(plots.style()):
        fig, axes = plt.subplots(len(schedules), len(structures), figsize=(1.4 + 2.15 * len(structures),
                                 0.6 + 1.9 * len(schedules)), squeeze=False, sharey=True, sharex=True)
        for r, (row, schedule) in enumerate(zip(axes, schedules, strict=True)):
            for ax, (depth, inference) in zip(row, structures, strict=True):
                rows = layers[(layers["schedule"] == schedule) & (layers["depth"] == depth) &
                              (layers["inference"] == inference)]
                mean = rows.groupby(["beta", "layer"])["rate"].mean().unstack("layer").reindex(betas)
                x = np.arange(len(betas))
                bottom = np.zeros(len(betas))
                for layer in mean.columns:
                    height = mean[layer].fillna(0).clip(lower=0).to_numpy()
                    ax.bar(x, height, bottom=bottom, color=LAYER_COLOURS[(layer - 1) % 5], width=0.7,
                           label=f"z{layer}")
                    bottom += height
                if not len(rows):
                    ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="0.5", fontsize=7)
                ax.set_xticks(x, [f"{b:g}" for b in betas])
                if r == len(schedules) - 1:
                    ax.set_xlabel("KL weight β")
                if r == 0:
                    ax.set_title(structure_of(depth, inference))
            row[0].set_ylabel(f"{_schedule_text(schedule)}\nrate per layer  [nats]")
        handles, labels = max((ax.get_legend_handles_labels() for ax in axes.flat), key=lambda hl: len(hl[1]))
        fig.legend(handles, labels, title="layer", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle("Where the rate sits, layer by layer (mean over seeds)")
        fig.tight_layout()
    return fig


def active_units_per_layer(layers: pd.DataFrame) -> Figure:
    """Active units per layer against beta (Burda et al.'s Var_x E_q[z_u] > 0.01), one panel per structure, a line
    per layer and schedule (solid: plain, dashed: warm-up, dotted: free bits, dash-dot: aggressive)."""
    betas = sorted(layers["beta"].unique())
    with plt.rc_context(plots.style()):
        fig, axes = _panels(len(_structures(layers)))
        for ax, (depth, inference) in zip(axes[0], _structures(layers), strict=True):
            rows = layers[(layers["depth"] == depth) & (layers["inference"] == inference)]
            for (layer, schedule), r in rows.groupby(["layer", "schedule"]):
                mean = r.groupby("beta")["active_units"].mean()
                ax.plot(mean.index, mean.to_numpy(), SCHEDULE_STYLE.get(str(schedule), "-"), marker="o", ms=3,
                        color=LAYER_COLOURS[(int(layer) - 1) % 5], lw=1.2)
            plots.beta_axis(ax, betas)
            ax.set_title(structure_of(depth, inference))
        axes[0][0].set_ylabel("active units  [count]")
        _layer_and_schedule_legend(fig, layers)
        fig.suptitle("Active units per layer (Var_x E_q[z_u] > 0.01; mean over seeds)")
        fig.tight_layout()
    return fig


def information_per_layer(layers: pd.DataFrame, schedule: str = "none") -> Figure:
    """Each layer's information bounds against beta: InfoNCE on I(X; z_l) (filled markers, its ceiling log N) and
    the cumulative rate from the top, an upper bound on I(X; z_{>=l}) (open markers, dashed), nats, for the runs of
    one ``schedule``; whiskers: 95% bootstrap interval over seeds."""
    table = layers[layers["schedule"] == schedule]
    betas = sorted(table["beta"].unique())
    with plt.rc_context(plots.style()):
        fig, axes = _panels(len(_structures(table)))
        for ax, (depth, inference) in zip(axes[0], _structures(table), strict=True):
            rows = table[(table["depth"] == depth) & (table["inference"] == inference)]
            for layer, r in rows.groupby("layer"):
                colour = LAYER_COLOURS[(int(layer) - 1) % 5]
                pts = plots.mean_interval(r, "beta", cols=("mi_lower", "mi_upper")).sort_values("beta")
                ax.errorbar(pts["beta"], pts["mi_lower"], yerr=pts["mi_lower_err"], marker="o", ms=3.5,
                            color=colour, lw=1.2, capsize=2)
                ax.errorbar(pts["beta"], pts["mi_upper"], yerr=pts["mi_upper_err"], marker="o", ms=3.5,
                            mfc="white", color=colour, lw=1, ls="--", capsize=2)
            plots.beta_axis(ax, betas)
            ax.set_yscale("symlog", linthresh=0.1)
            ax.set_title(structure_of(depth, inference))
        axes[0][0].set_ylabel("information  [nats]")
        handles = [plt.Line2D([], [], color=LAYER_COLOURS[i], lw=2) for i in range(int(table["layer"].max()))]
        labels = [f"z{i + 1}" for i in range(len(handles))]
        handles += [plt.Line2D([], [], color="0.3", marker="o"),
                    plt.Line2D([], [], color="0.3", marker="o", mfc="white", ls="--")]
        labels += ["InfoNCE on I(X; z_l)  (lower)", "rate of z_l and above  (upper)"]
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle(f"Information per layer, bounded below and above ({_schedule_text(schedule)})")
        fig.tight_layout()
    return fig


def rate_distortion_by_depth(runs: pd.DataFrame, schedule: str = "none") -> Figure:
    """The rate-distortion plane (test split, nats): one-layer VAEs across beta joined as the frontier (each point
    labelled with its beta), the hierarchical models as points beside it (colour and marker: depth and inference;
    each sits near the frontier point of its own beta), for the runs of one ``schedule``; whiskers: 95% bootstrap
    interval over seeds."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == "test") & (runs["schedule"] == schedule)]
    with plt.rc_context(plots.style()):
        fig, ax = plt.subplots(figsize=(plots.SINGLE_COLUMN * 1.6, plots.SINGLE_COLUMN))
        for i, ((depth, inference), rows) in enumerate(ok.groupby(["depth", "inference"], sort=True)):
            pts = plots.mean_interval(rows, "beta").sort_values("beta")
            colour, one = LAYER_COLOURS[i % 5], depth == 1
            ax.errorbar(pts["rate"], pts["distortion"], xerr=pts["rate_err"], yerr=pts["distortion_err"],
                        color=colour, marker="o" if one else ("^" if inference == "top_down" else "s"),
                        ms=4.5 if one else 4, ls="-" if one else "none", lw=1.4, elinewidth=0.8, capsize=2,
                        label=structure_of(int(depth), str(inference)), zorder=3 if one else 2)
            if one:
                for _, p in pts.iterrows():
                    ax.annotate(f"β={p['beta']:g}", (p["rate"], p["distortion"]), textcoords="offset points",
                                xytext=(5, 4), fontsize=6.5, color=colour)
        ax.set_xlabel("rate R  [nats]")
        ax.set_ylabel("distortion D  [nats]")
        ax.set_title(f"Rate-distortion plane by depth ({_schedule_text(schedule)})")
        ax.legend(loc="upper right", frameon=False)
        fig.tight_layout()
    plots.note_left_out(fig, runs, "test")
    return fig


def _schedule_text(schedule: str) -> str:
    return {"none": "no schedule", "warmup": "with KL warm-up", "free_bits": "with free bits",
            "aggressive": "aggressive training"}.get(schedule, schedule)


def _layer_and_schedule_legend(fig: Figure, layers: pd.DataFrame) -> None:
    """One legend for colour (layer) and line style (schedule), right of the panels."""
    handles = [plt.Line2D([], [], color=LAYER_COLOURS[i], lw=2) for i in range(int(layers["layer"].max()))]
    labels = [f"z{i + 1}" for i in range(len(handles))]
    for schedule in [s for s in SCHEDULE_STYLE if s in set(layers["schedule"])]:
        handles.append(plt.Line2D([], [], color="0.3", ls=SCHEDULE_STYLE[schedule]))
        labels.append(_schedule_text(schedule))
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
