"""The cheating-codes experiment's figures: the constructed packed codes (distortion against the digits packed,
information against its closed form) and the trained one-unit codes (distortion, probe curves). Points are means
over seeds, whiskers the 95% bootstrap interval over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ibkit import plots

DTYPE_STYLE = {"float32": ("o", "-"), "float64": ("s", "--")}


def code_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's code in words: "AE, 4 units" or "fourier decoder, 1 unit" (from kind, code_dim and features)."""
    features = table["features"].fillna("")
    return pd.Series([f"{f} decoder, 1 unit" if k == "periodic_ae" else f"AE, {int(d)} unit{'s' * (d > 1)}"
                      for k, d, f in zip(table["kind"], table["code_dim"], features, strict=True)], index=table.index)


def packed_codes(packed: pd.DataFrame) -> Figure:
    """Left: each packed code's distortion above the quantised d-unit code's (nats, symlog) against the bits it
    packs, d log2 L, per dtype; dotted lines at the mantissas, 24 and 53 bits. Middle: InfoNCE through the finest
    probe against d log L (nats), per dtype, with log N and the mantissas. Right: the packed codes' InfoNCE through
    every probe against the closed form min(log N, d log L, mantissa log 2, log(1/sigma) - 1/2 log 2 pi e)."""
    with plt.rc_context(plots.style()):
        fig, (left, middle, right) = plt.subplots(1, 3, figsize=(plots.SINGLE_COLUMN * 3.6, plots.SINGLE_COLUMN))
        if len(packed):
            finest = packed[packed["sigma"] == packed["sigma"].min()].assign(nats=lambda t: t["bits"] * np.log(2))
            for dtype, rows in finest.groupby("dtype"):
                marker, line = DTYPE_STYLE.get(str(dtype), ("o", "-"))
                pts = plots.mean_interval(rows, "nats", cols=("infonce",)).sort_values("nats")
                middle.errorbar(pts["nats"], pts["infonce"], yerr=pts["infonce_err"], marker=marker, ls=line, ms=3.5,
                                capsize=2, color=plots.PALETTE[0 if dtype == "float32" else 1], label=f"{dtype} real")
            top = float(finest["nats"].max())
            middle.plot([0, top], [0, top], color="0.2", lw=1, label="d log L")
            middle.axhline(float(finest["log_n"].max()), color="0.3", ls=":", lw=1, label="log N")
            for nats in (24 * np.log(2), 53 * np.log(2)):
                middle.axvline(nats, color="0.5", ls=":", lw=1)
            middle.set_ylim(0, float(finest["log_n"].max()) * 1.25)
            once = packed.drop_duplicates(["run_id", "levels", "dtype"]).assign(
                excess=lambda t: t["distortion"] - t["quantised_distortion"])
            for dtype, rows in once.groupby("dtype"):
                marker, line = DTYPE_STYLE.get(str(dtype), ("o", "-"))
                pts = plots.mean_interval(rows, "bits", cols=("excess",)).sort_values("bits")
                right_colour = plots.PALETTE[0 if dtype == "float32" else 1]
                left.errorbar(pts["bits"], pts["excess"], yerr=pts["excess_err"], marker=marker, ls=line, ms=3.5,
                              capsize=2, color=right_colour, label=f"{dtype} real")
            for bits, name in ((24, "float32 mantissa"), (53, "float64 mantissa")):
                left.axvline(bits, color="0.5", ls=":", lw=1)
                left.annotate(name, (bits, 0), xytext=(2, 4), textcoords="offset points", fontsize=5.5,
                              color="0.4", rotation=90, va="bottom")
            left.set_yscale("symlog", linthresh=0.01)
            left.set_ylim(bottom=0)
            sigmas = sorted(packed["sigma"].unique())
            colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sigmas)))
            for sigma, colour in zip(sigmas, colours, strict=True):
                rows = packed[packed["sigma"] == sigma]
                right.scatter(rows["theory"], rows["infonce"], s=8, color=colour, alpha=0.8, label=f"σ = {sigma:g}")
            top = float(max(packed["theory"].max(), packed["infonce"].max())) * 1.05
            right.plot([0, top], [0, top], color="0.2", lw=1, label="measured = closed form")
            right.set_xlim(0, top)
            right.set_ylim(0, top)
        left.set_xlabel("digits packed into one real, d·log₂L  [bits]")
        left.set_ylabel("distortion above the quantised d-unit code  [nats]")
        left.set_title("packing is exact until the mantissa ends", loc="left")
        left.legend(loc="upper left", frameon=False, fontsize=6)
        middle.set_xlabel("digits packed, d·log L  [nats]")
        middle.set_ylabel("InfoNCE at the finest probe  [nats]")
        middle.set_title("information against the digits", loc="left")
        middle.legend(loc="lower right", frameon=False, fontsize=6)
        right.set_xlabel("min(log N, d log L, mantissa, log(1/σ) − ½log 2πe)  [nats]")
        right.set_ylabel("InfoNCE through the probe  [nats]")
        right.set_title("what the digits carry until noise drowns them", loc="left")
        right.legend(loc="upper left", frameon=False, fontsize=5, ncol=2)
        fig.tight_layout()
    return fig


def trained_codes(runs: pd.DataFrame, curves: pd.DataFrame, split: str = "test") -> Figure:
    """Left: the test distortion of each trained code (plain one-unit AE, periodic one-unit decoders, d-unit AEs).
    Right: their InfoNCE through probes of every sigma, with log N, means over seeds."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == split)].copy()
    with plt.rc_context(plots.style()):
        fig, (left, right) = plt.subplots(1, 2, figsize=(plots.SINGLE_COLUMN * 2.6, plots.SINGLE_COLUMN))
        if len(ok):
            ok["label"] = code_labels(ok)
            order = sorted(ok["label"].unique(), key=lambda s: (not s.endswith("1 unit"), "decoder" in s, s))
            pts = plots.mean_interval(ok, "label", cols=("distortion",)).set_index("label").loc[order]
            y = np.arange(len(order))
            for i, label in enumerate(order):  # one colour per code, as in the probe curves beside
                left.errorbar(pts.loc[label, "distortion"], i, xerr=pts.loc[label, "distortion_err"], ls="none",
                              marker="D", ms=4, capsize=2, color=plots.PALETTE[i % len(plots.PALETTE)])
            left.set_yticks(y, order)
            left.invert_yaxis()
            if len(curves):
                curves = curves.assign(label=code_labels(curves))
                for i, label in enumerate(order):
                    rows = curves[curves["label"] == label]
                    mean = rows.groupby("sigma")["infonce"].mean().sort_index()
                    right.plot(mean.index, mean.to_numpy(), marker="o", ms=2.5, lw=1,
                               color=plots.PALETTE[i % len(plots.PALETTE)], label=label)
                right.axhline(float(curves["log_n"].max()), color="0.3", ls=":", lw=1, label="log N")
                right.set_xscale("log")
        left.set_xlabel("distortion −log p(x|z)  [nats per example]")
        left.set_title("trained codes", loc="left")
        right.set_xlabel("probe noise σ  [code units]")
        right.set_ylabel("InfoNCE through the probe  [nats]")
        right.set_title("information through the probe", loc="left")
        right.legend(loc="lower left", frameon=False, fontsize=5.5)
        fig.tight_layout()
    plots.note_left_out(fig, runs, split)
    return fig
