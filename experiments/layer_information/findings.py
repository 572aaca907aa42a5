"""findings.md of the layer-information experiment, generated from the stored tables (never typed by hand)."""

from __future__ import annotations

import math

import pandas as pd

from ibkit.prose import direction, plural
from ibkit.stats import interval_text
from ibkit.train import Aggressive

from .figures import structure_of

COLLAPSE_KL = 0.1  # a unit is active under NVAE's criterion when its KL exceeds this (nats); a layer with none
SCHEDULES = {"warmup": "KL warm-up", "free_bits": "free bits", "aggressive": "aggressive training"}


def write_findings(runs: pd.DataFrame, layers: pd.DataFrame, history: pd.DataFrame | None = None) -> str:
    """findings.md: which layers collapse at which beta (plain training), what each schedule changes (the top
    layer's rate, the units in use and the ELBO, paired by seed against plain training at the same beta), and the
    hierarchical models' ELBO against the one-layer model's."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == "test")]
    if not len(ok) or not len(layers):
        return "# Findings: layer-information\n\nNo run finished; see the status and error columns of runs.csv.\n"
    layers = layers[layers["run_id"].isin(ok["run_id"])]
    seeds = ok["seed"].nunique()
    interval = " ± half-width of the 95% bootstrap interval over seeds" if seeds > 1 else ""
    lines = ["# Findings: layer-information", "",
             f"Generated from runs.csv and layers.csv ({ok['dataset'].iloc[0]}; "
             f"{plural(seeds, 'seed')}, mean{interval}). Nats per example on the test split. A layer's rate is "
             "its conditional KL E[log q(z_l | .) − log p(z_l | z_{l+1})]; the layers' rates sum to the model's "
             "rate (bottom-up, a layer below the top has z_{l+1} drawn after it, so its term is a Monte Carlo log "
             "ratio, not a KL, and can be slightly negative). The top layer's rate bounds I(X; z_top) from above. "
             f"A layer is collapsed when none of its units has a KL above {COLLAPSE_KL} nats (NVAE's "
             "criterion). Comparisons are paired by seed (same seed: same initial weights, minibatches and noise).",
             "", "## Which layers collapse, and at which β (plain training)", ""]
    plain = layers[layers["schedule"] == "none"]
    for (depth, inference), rows in _by_structure(plain):
        lines += _collapse_lines(rows, depth, inference)
    for schedule, name in SCHEDULES.items():
        if schedule in set(layers["schedule"]) and len(plain):
            lines += ["", f"## What {name} changes", "", *_schedule_table(layers, ok, schedule)]
    if (ok["depth"] > 1).any() and (ok["depth"] == 1).any():
        lines += ["", "## Deeper models against one layer (plain training)", "", *_depth_table(ok)]
    if history is not None and len(history) and "beta_used" in history:
        lines += ["", *_warmup_line(ok, history), *_aggressive_line(ok, history)]
    return "\n".join(lines) + "\n"


def _by_structure(table: pd.DataFrame):
    """(depth, inference) groups, shallow first, top-down first."""
    groups = dict(iter(table.groupby(["depth", "inference"])))
    for key in sorted(groups, key=lambda k: (k[0], k[1] != "top_down")):
        yield key, groups[key]


def _collapsed(rows: pd.DataFrame) -> pd.Series:
    """Per run-layer row: whether no unit of the layer has a KL above COLLAPSE_KL."""
    return rows["active_units_kl"] == 0


def _collapse_lines(rows: pd.DataFrame, depth: int, inference: str) -> list[str]:
    """For each layer of one structure: the betas at which it is collapsed (in how many seeds), and its rate."""
    lines = []
    for layer, r in rows.groupby("layer"):
        per_beta = r.groupby("beta")
        collapsed = per_beta.apply(lambda g: int(_collapsed(g).sum()), include_groups=False)
        n = per_beta.size()
        rates = "; ".join(f"β = {b:g}: {interval_text(g['rate'])}" for b, g in per_beta)
        where = [b for b in collapsed.index if collapsed[b] * 2 > n[b]]
        if not where:
            verdict = "carries information at every β"
        elif len(where) == len(collapsed):
            verdict = "is collapsed at every β"
        else:
            verdict = f"collapses from β = {min(where):g}" if where == sorted(collapsed.index)[-len(where):] else \
                f"is collapsed at β = {', '.join(f'{b:g}' for b in where)}"
        detail = ", ".join(f"{collapsed[b]} of {plural(n[b], 'seed')} at β = {b:g}" for b in collapsed.index
                           if collapsed[b])
        lines.append(f"- {structure_of(depth, inference)}, z{layer} (d = {r['latent_dim'].iloc[0]}): {verdict}"
                     f"{f' (collapsed in {detail})' if detail else ''}. Rate: {rates}.")
    return lines


def _verdict(diff: pd.Series) -> str:
    """higher, lower, no different, or for one seed the sign and that it has no interval."""
    text = direction(diff)
    return text.replace(" (the interval contains 0)", "").replace(" (one seed: no interval)", ", one seed")


def _paired(a: pd.DataFrame, b: pd.DataFrame, column: str) -> pd.Series:
    """Per seed: a's ``column`` minus b's (rows indexed by seed)."""
    return (a.set_index("seed")[column] - b.set_index("seed")[column]).dropna()


def _schedule_table(layers: pd.DataFrame, runs: pd.DataFrame, schedule: str) -> list[str]:
    """Per structure and beta that has both: the top layer's rate and the units in use (KL > 0.1 nats, all
    layers) with and without the schedule, and the ELBO difference, paired by seed."""
    lines = ["| model | β | top-layer rate, plain | with it | units in use, plain | with it | ELBO with − plain |",
             "|---|---|---|---|---|---|---|"]
    for (depth, inference), rows in _by_structure(layers):
        for beta, g in rows.groupby("beta"):
            plain, scheduled = g[g["schedule"] == "none"], g[g["schedule"] == schedule]
            if not len(plain) or not len(scheduled):
                continue
            top = int(g["layer"].max())
            units = {name: t.groupby("seed")["active_units_kl"].sum().reset_index()
                     for name, t in (("plain", plain), ("with", scheduled))}
            r = runs[(runs["depth"] == depth) & (runs["inference"] == inference) & (runs["beta"] == beta)]
            elbo = _paired(r[r["schedule"] == schedule], r[r["schedule"] == "none"], "elbo")
            lines.append(f"| {structure_of(depth, inference)} | {beta:g} | "
                         f"{interval_text(plain[plain['layer'] == top]['rate'])} | "
                         f"{interval_text(scheduled[scheduled['layer'] == top]['rate'])} | "
                         f"{interval_text(units['plain']['active_units_kl'])} | "
                         f"{interval_text(units['with']['active_units_kl'])} | "
                         f"{interval_text(elbo)} ({_verdict(elbo)}) |")
    return lines if len(lines) > 2 else ["(no structure was trained both plainly and with it)"]


def _depth_table(runs: pd.DataFrame) -> list[str]:
    """Per beta: each deeper structure's test ELBO minus the one-layer model's, paired by seed, and its rate."""
    lines = ["| model | β | ELBO | rate | ELBO − one layer |", "|---|---|---|---|---|"]
    plain = runs[runs["schedule"] == "none"]
    for beta, g in plain.groupby("beta"):
        one = g[g["depth"] == 1]
        for (depth, inference), r in _by_structure(g):
            diff = "–" if depth == 1 else \
                f"{interval_text(_paired(r, one, 'elbo'))} ({_verdict(_paired(r, one, 'elbo'))})"
            lines.append(f"| {structure_of(depth, inference)} | {beta:g} | {interval_text(r['elbo'])} | "
                         f"{interval_text(r['rate'])} | {diff} |")
    return lines


def _warmup_line(runs: pd.DataFrame, history: pd.DataFrame) -> list[str]:
    """The warm-up as the history recorded it: the beta the loss used, as a fraction of the run's beta, by epoch."""
    warm = runs[runs["schedule"] == "warmup"]
    h = history[history["run_id"].isin(warm["run_id"])]
    if not len(h):
        return []
    fraction = (h["beta_used"] / h["run_id"].map(warm.set_index("run_id")["beta"])).groupby(h["epoch"]).mean()
    full = fraction[fraction >= 1 - 1e-6].index
    mid = fraction.index[len(fraction) // 4]
    reached = f"and all of β from epoch {full.min()}" if len(full) else "and never all of β"
    return [f"The warm-up, as history.csv records it (beta_used): the loss used {fraction.iloc[0]:.3f} β in epoch 1, "
            f"{fraction.loc[mid]:.2f} β in epoch {mid}, {reached}."]


def _aggressive_line(runs: pd.DataFrame, history: pd.DataFrame) -> list[str]:
    """How long aggressive training stayed on (until the MI estimate fell) and how many encoder steps it took."""
    ids = runs.loc[runs["schedule"] == "aggressive", "run_id"]
    h = history[history["run_id"].isin(ids)]
    if not len(h) or "aggressive" not in h:
        return []
    per_run = h.groupby("run_id").agg(on=("aggressive", "sum"), epochs=("epoch", "max"),
                                      steps=("encoder_steps", "sum"))
    rows = Aggressive.MI_ROWS
    return [f"Aggressive training stayed on for {per_run['on'].min():.0f}–{per_run['on'].max():.0f} of "
            f"{per_run['epochs'].max():.0f} epochs (until the InfoNCE estimate of I(X;Z) on {rows:,} training rows, "
            f"which cannot exceed log {rows:,} = {math.log(rows):.2f} nats, fell), taking "
            f"{per_run['steps'].mean():,.0f} encoder-only steps per run on average."]
