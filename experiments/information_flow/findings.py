"""findings.md of the information-flow experiment, generated from the stored tables (never typed by hand), and the
short model names its findings and figures share."""

from __future__ import annotations

import math

import pandas as pd

from ibkit.prose import collapse_text, count_text, plural, runs_bracket
from ibkit.stats import interval_text


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


def write_findings(runs: pd.DataFrame, curves: pd.DataFrame, split: str = "test") -> str:
    """findings.md: what each model carried, generated from the stored numbers (never typed by hand)."""
    ok = runs[(runs["split"] == split) & (runs["status"] == "ok")].copy()
    if not len(ok):
        return "# Findings: information-flow\n\nNo run finished; see the status and error columns of runs.csv.\n"
    ok["label"] = ok.apply(model_label, axis=1)
    log_n, seeds = ok["log_n"].max(), ok["seed"].nunique()
    lines = [
        "# Findings: information-flow",
        "",
        f"Generated from runs.csv and probe_curve.csv ({ok['dataset'].iloc[0]}, {split} split, "
        f"N = {round(math.exp(log_n))} points, so no estimate from these points exceeds log N = {log_n:.2f} nats; "
        f"{plural(seeds, 'seed')}, mean"
        f"{' ± half-width of the 95% bootstrap interval' if seeds > 1 else ''}). "
        "Information is in nats: InfoNCE is a lower bound on I(X;Z) (so is h(X) - D where the data's entropy is "
        "known; the larger is reported), the leave-one-out (LOO) bound and the rate are upper bounds.",
        "",
        "## Deterministic and sparse codes: as much as the probe allows",
    ]
    lines += _probed_lines(ok, curves, log_n)
    lines += ["", "## Fixed channel noise: bounded only with a power limit"]
    lines += _noisy_lines(ok)
    lines += ["", "## The KL penalty: the rate bounds the information"]
    lines += _vae_lines(ok)
    lines += _label_lines(ok)
    return "\n".join(lines) + "\n"


def _probed_lines(ok: pd.DataFrame, curves: pd.DataFrame, log_n: float) -> list[str]:
    """Deterministic and sparse codes: what crosses the smallest probe, and where the probe curve meets log N."""
    if len(curves):
        curves = curves.copy()
        curves["label"] = curves.apply(model_label, axis=1)
    lines = []
    for label, g in ok[ok["kind"].isin(["ae", "sparse_ae"])].groupby("label", sort=False):
        c = curves[curves["label"] == label] if len(curves) else curves
        line = (f"- {label}: through a probe of σ = {g['probe_sigma'].iloc[0]:g} its code carries "
                f"{interval_text(g['mi_lower'])} nats (InfoNCE), {100 * g['mi_lower'].mean() / log_n:.0f}% of log N, "
                f"at distortion {interval_text(g['distortion'])}; {count_text(g['active_units'], 'active unit')}")
        if len(c):
            per_sigma = c.groupby("sigma")["infonce"].mean().sort_index(ascending=False)
            reached = per_sigma[per_sigma >= log_n - 0.1]
            line += f"; at σ = {per_sigma.index[0]:.2g} it carries {per_sigma.iloc[0]:.2f}"
            line += (f"; it comes within 0.1 nats of log N from σ = {reached.index[0]:.2g} down" if len(reached)
                     else "; it stays more than 0.1 nats below log N at every probe")
        lines.append(line + ".")
    return lines


def _noisy_lines(ok: pd.DataFrame) -> list[str]:
    """Noisy AEs: the information bracket against the capacity bound of a bounded code."""
    lines = []
    for label, g in ok[ok["kind"] == "noisy_ae"].groupby("label", sort=False):
        cap = g["channel_capacity"].mean()
        bound = f"capacity bound {cap:.2f}" if math.isfinite(cap) else "no capacity bound (unbounded code)"
        lines.append(f"- {label}: I(X;Z) {runs_bracket(g)} "
                     f"(min of LOO and rate {interval_text(g['rate'])}); {bound}; "
                     f"distortion {interval_text(g['distortion'])}{collapse_text(g['active_units'])}.")
    return lines


def _vae_lines(ok: pd.DataFrame) -> list[str]:
    """VAEs: the information bracket, and which upper bound (rate or LOO) is the tighter valid one (a leave-one-out
    estimate below 0 is Monte Carlo noise, no bound: ``ibkit.estimators.information.tightest_upper``)."""
    lines = []
    for label, g in ok[ok["kind"] == "vae"].groupby("label", sort=False):
        loo_valid = g["loo"] >= 0
        rate_tighter = (g["rate"] <= g["loo"]) | ~loo_valid
        tighter = "the rate" if rate_tighter.all() else "LOO" if (~rate_tighter).all() else "mixed"
        loo = (f"LOO {interval_text(g['loo'])}" if loo_valid.all() else
               f"LOO below 0 (Monte Carlo noise, no bound) in {plural(int((~loo_valid).sum()), 'seed')}")
        lines.append(f"- {label}: I(X;Z) {runs_bracket(g)}; "
                     f"rate R = {interval_text(g['rate'])}, {loo} "
                     f"(the tighter upper bound: {tighter}); "
                     f"distortion {interval_text(g['distortion'])}, {count_text(g['active_units'], 'active unit')}.")
    return lines


def _label_lines(ok: pd.DataFrame) -> list[str]:
    """How much of the class label each code keeps (a logistic-regression probe on the drawn code z ~ q(z|x), and
    the largest per-dimension I(z_k; label) beside the estimator's noise floor), best first; none without labels."""
    if "label_accuracy" not in ok or not ok["label_accuracy"].notna().any():
        return []
    lines = ["", "## How much of the class label the code keeps",
             "A logistic-regression probe on the code that crosses the channel, z ~ q(z|x) (the code itself for a "
             f"deterministic model; chance: {ok['label_chance'].mean():.2f}), and the largest per-dimension "
             "I(z_k; label) (k-nearest-neighbour estimate). Y - X - Z is a Markov chain, so I(z_k; label) <= "
             "I(X;Z) <= R: a collapsed code keeps nothing. An estimate below the noise floor (the estimator's "
             "largest value with the labels shuffled) is not told apart from 0.", ""]
    for label, g in sorted(ok.groupby("label", sort=False), key=lambda kv: -kv[1]["label_accuracy"].mean()):
        line = f"- {label}: accuracy {interval_text(g['label_accuracy'])}"
        if "label_mi_max" in g:
            floor = g["label_mi_noise"] if "label_mi_noise" in g else pd.Series(math.nan, index=g.index)
            if floor.notna().all() and (g["label_mi_max"] <= floor).all():
                line += (f"; no dimension's I(z_k; label) is told apart from 0 (the largest, "
                         f"{g['label_mi_max'].mean():.2f}, below the noise floor {floor.mean():.2f} in every seed)")
            else:
                line += f"; largest I(z_k; label) {interval_text(g['label_mi_max'])} nats"
                if floor.notna().all():
                    line += f" (noise floor {floor.mean():.2f})"
        lines.append(line)
    return lines
