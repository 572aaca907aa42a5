"""findings.md of the cheating-codes experiment, generated from the stored tables (never typed by hand)."""

from __future__ import annotations

import math

import pandas as pd

from ibkit.prose import direction, plural
from ibkit.stats import interval_text

from .figures import code_labels


def _packing_lines(packed: pd.DataFrame) -> list[str]:
    """Exactness per dtype: up to how many bits every packing is exact, and the first packing beyond."""
    once = packed.drop_duplicates(["run_id", "levels", "dtype"])
    lines = []
    for dtype, rows in once.groupby("dtype"):
        exact = rows[rows["exact"] == 1.0]
        broken = rows[rows["exact"] < 1.0]
        most = exact["bits"].max() if len(exact) else math.nan
        text = f"- {dtype}: every packing of up to {most:g} bits (d log2 L) reconstructs all rows bit for bit as " \
               f"the quantised d-unit code does"
        if len(broken):
            first = broken["bits"].min()
            at = broken[broken["bits"] == first]
            excess = at["distortion"] - at["quantised_distortion"]
            text += (f"; from {first:g} bits on (the mantissa holds {24 if dtype == 'float32' else 53}) rows are "
                     f"lost: at {first:g} bits {100 * at['exact'].mean():.1f}% of rows survive and the distortion is "
                     f"{interval_text(excess)} nats above the quantised code's")
        elif rows["fits"].all():
            text += "; no packing here passes its mantissa"
        lines.append(text + ".")
    return lines


def _probe_lines(packed: pd.DataFrame) -> list[str]:
    """At the smallest probe: InfoNCE against the packed reals' entropy over the rows (its value as sigma -> 0)
    and the ceiling min(log N, d log L, mantissa, noise); at sigma = e^-(log N - 3): how far below log N."""
    smallest = packed[packed["sigma"] == packed["sigma"].min()]
    se = smallest["infonce_se"].clip(lower=1e-9)
    off = ((smallest["infonce"] - smallest["code_entropy"]).abs() / se).max()
    separate = smallest[smallest["code_entropy"] >= smallest["data_entropy"] - 1e-9]
    h_x = smallest["data_entropy"].iloc[0]
    lines = [f"- At σ = {smallest['sigma'].iloc[0]:g} every packed code's InfoNCE equals the entropy of its reals "
             f"over the rows, what a deterministic code carries as σ → 0, to "
             f"{(smallest['infonce'] - smallest['code_entropy']).abs().max():.2g} nats ({off:.2g} standard errors). "
             f"{len(separate)} of {plural(len(smallest), 'packing')} separate every distinct test image and carry "
             f"their entropy, {h_x:.3f} nats (log N = {smallest['log_n'].iloc[0]:.3f} counts the repeated binary "
             "images twice); the others fall short of the ceiling min(log N, d log L, mantissa bits log 2) by the "
             "rows that share a cell (or a rounded float32 real)."]
    log_n = float(packed["log_n"].max())
    drown = math.exp(-(log_n - 3))
    near = packed[(packed["sigma"] >= drown / 10) & (packed["sigma"] <= drown * 10)]
    if len(near):
        worst = near["infonce"].max()
        lines.append(f"- Through probes within a factor 10 of σ = e^-(log N - 3) = {drown:.2g} no packed code "
                     f"carries more than {worst:.2f} nats, {log_n - worst:.2f} below log N = {log_n:.2f}: the noise "
                     "drowns every digit finer than σ, whatever the mantissa holds.")
    return lines


def _trained_lines(runs: pd.DataFrame) -> list[str]:
    ok = runs.assign(label=code_labels(runs))
    plain = ok[(ok["kind"] == "ae") & (ok["code_dim"] == 1)].set_index("seed")
    widest = ok[ok["kind"] == "ae"]["code_dim"].max()
    wide = ok[(ok["kind"] == "ae") & (ok["code_dim"] == widest)].set_index("seed")
    lines = []
    for label, g in sorted(ok.groupby("label"), key=lambda item: (item[1]["code_dim"].iloc[0], item[0])):
        text = (f"- {label}: distortion {interval_text(g['distortion'])} nats, InfoNCE "
                f"{interval_text(g['infonce'])} at σ = {g['probe_sigma'].iloc[0]:g}")
        if "folds_segments" in g and g["folds_segments"].notna().any():
            text += (f", {interval_text(g['folds_segments'])} segments along the code line over "
                     f"{interval_text(g['folds_distinct'])} distinct nearest training rows")
        if g["kind"].iloc[0] == "periodic_ae" and len(plain):
            seeds = g.set_index("seed").index.intersection(plain.index)
            diff = g.set_index("seed").loc[seeds, "distortion"] - plain.loc[seeds, "distortion"]
            text += (f"; its distortion minus the plain one-unit AE's is {interval_text(diff)} nats, "
                     f"{direction(diff)} (paired by seed)")
            if len(wide):
                seeds = seeds.intersection(wide.index)
                gap = g.set_index("seed").loc[seeds, "distortion"] - wide.loc[seeds, "distortion"]
                text += f", and {interval_text(gap)} nats above the {widest}-unit AE's"
        lines.append(text + ".")
    return lines


def write_findings(runs: pd.DataFrame, packed: pd.DataFrame, split: str = "test") -> str:
    """findings.md: the constructed cheat's exactness and information, and what the trained codes found."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == split)]
    if not len(ok):
        return "# Findings: cheating-codes\n\nNo run finished; see the status and error columns of runs.csv.\n"
    seeds = ok["seed"].nunique()
    lines = ["# Findings: cheating-codes", "",
             f"Generated from runs.csv, packed.csv and probe_curves.csv ({ok['dataset'].iloc[0]}, {split} split, "
             f"N = {math.exp(ok['log_n'].max()):.0f} rows, so no InfoNCE estimate exceeds log N = "
             f"{ok['log_n'].max():.2f} nats; {plural(seeds, 'seed')}"
             f"{', mean ± half-width of the 95% bootstrap interval over seeds' if seeds > 1 else ''}). Nats per "
             "example.", "", "## The constructed cheat: d digits in one real number",
             "A trained d-unit AE's code, each coordinate quantised to L levels and the digits interleaved into one "
             "real number (ibkit.models.interleave), decoded with floor and modulo. The practical bound, plainly: a "
             "float32 latent carries at most 24 bits (16.6 nats) through any decoder that reads it exactly, a "
             "float64 one 53 bits (36.7 nats), and a channel noise of scale σ cuts either to about log(range / σ); "
             "on N rows no estimate shows more than log N."]
    if len(packed):
        lines += _packing_lines(packed) + _probe_lines(packed)
    lines += ["", "## Does training find it?",
              "One-unit codes whose decoder reads periodic features of z (learned frequencies), beside the plain "
              "one-unit AE and the d-unit AEs of the same width."]
    lines += _trained_lines(ok)
    return "\n".join(lines) + "\n"
