"""findings.md of the rate-distortion experiment, generated from the stored table (never typed by hand)."""

from __future__ import annotations

import math

import pandas as pd

from ibkit.prose import collapse_text, count_text, direction, plural, runs_bracket
from ibkit.stats import interval_text


def _known(g: pd.DataFrame, column: str) -> bool:
    return column in g and g[column].notna().any()


def write_findings(runs: pd.DataFrame, split: str = "test", frontier: pd.DataFrame | None = None) -> str:
    """findings.md: where each kind sits on the plane and how tightly the rate bounds the information, in numbers
    from the stored table (means ± half-width of the 95% bootstrap interval over seeds); with a ``frontier`` table
    (frontier.csv), the data's R(D) bounds and how far each VAE is from them on both splits."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == split)]
    if not len(ok):
        return "# Findings: rate-distortion\n\nNo run finished; see the status and error columns of runs.csv.\n"
    seeds, log_n = ok["seed"].nunique(), ok["log_n"].max() if "log_n" in ok else math.nan
    lines = ["# Findings: rate-distortion", "",
             f"Generated from runs.csv ({ok['dataset'].iloc[0]}, {split} split, N = "
             f"{math.exp(log_n):.0f} points, so no InfoNCE estimate exceeds log N = {log_n:.2f} nats; "
             f"{plural(seeds, 'seed')}{', mean ± half-width of the 95% bootstrap interval' if seeds > 1 else ''})."
             " Nats per example. I(X;Z) is bracketed by InfoNCE (or h(X) - D where the entropy is known) below and by"
             " the smaller of the leave-one-out bound and the rate above.", "", "## The KL penalty: the rate bounds the"
             " information"]
    vaes = ok[ok["kind"] == "vae"]
    groups = sorted(vaes.groupby([_network(vaes).rename("net"), "beta"]),
                    key=lambda item: (item[0][0] != "mlp", item[0]))
    lines += [_vae_line(beta, g, "VAE" if net == "mlp" else f"{net} VAE") for (net, beta), g in groups]  # MLP first
    lines += _network_lines(runs[(runs["status"] == "ok") & (runs["kind"] == "vae")], split)
    lines += ["", "## Codes without a KL term"]
    for kind, label in (("ae", "AE"), ("sparse_ae", "sparse AE")):
        g = ok[ok["kind"] == kind]
        if len(g):
            lines.append(f"- {label}: distortion {interval_text(g['distortion'])}; through a probe of σ = "
                         f"{g['probe_sigma'].iloc[0]:g} its code carries at least {interval_text(g['mi_lower'])} nats "
                         f"({100 * g['mi_lower'].mean() / log_n:.0f}% of log N: the estimator's ceiling, not the "
                         "code's); its own rate is unbounded.")
    for noise, g in ok[ok["kind"] == "noisy_ae"].groupby("noise"):
        lines.append(f"- noisy AE σ={noise:g}: rate {interval_text(g['rate'])} (KL to N(0, I), an upper bound), "
                     f"I(X;Z) at least {interval_text(g['mi_lower'])}, distortion {interval_text(g['distortion'])}"
                     f"{collapse_text(g['active_units'])}.")
    if frontier is not None and len(frontier):
        lines += _frontier_lines(runs[runs["status"] == "ok"], frontier)
    return "\n".join(lines) + "\n"


METHOD_NAMES = {"blahut_arimoto": "Blahut–Arimoto on the training rows", "wgd": "Wasserstein gradient descent",
                "constant": "the mean of the training rows"}


def _frontier_lines(ok: pd.DataFrame, frontier: pd.DataFrame) -> list[str]:
    """The data's R(D) under squared error (frontier.csv), slope by slope, then each VAE's distance from it: at
    least its rate above the upper envelope, at most its rate above the lower bound, per split."""
    lines = ["", "## The data's own R(D) under squared error (frontier.csv; D summed over dimensions)",
             "Upper bounds are achievable points (R at most this at that D); the sandwich lower bound is a line "
             "R(D) >= intercept - λ D, given at the low end of its 95% interval. Train rows: the fitted rows "
             "(Blahut-Arimoto's bound is of their empirical source, at most log N); test rows: held out."]
    slopes = frontier.dropna(subset=["lambda"]).assign(order=frontier["split"].map({"train": 0, "test": 1}))
    for (lam, _, split), g in slopes.groupby(["lambda", "order", "split"], sort=True):
        parts = []
        for _, r in g[g["side"] == "upper"].iterrows():
            parts.append(f"{METHOD_NAMES.get(r['method'], r['method'])} R <= {r['rate']:.2f} at D = "
                         f"{r['distortion']:.2f}")
        for _, r in g[g["side"] == "lower"].iterrows():
            at = f"R >= {r['rate_low']:.2f} at D = {r['distortion']:.2f}" if r["rate_low"] > 0 else \
                "0 there: trivial"
            parts.append(f"sandwich intercept {r['intercept']:.2f} (95%: {r['intercept_low']:.2f} to "
                         f"{r['intercept_high']:.2f}), {at}")
        lines.append(f"- λ={lam:g}, {split} rows: " + "; ".join(parts) + ".")
    vaes = ok[(ok["kind"] == "vae") & ok["rate_above_upper_envelope"].notna()] \
        if "rate_above_upper_envelope" in ok else ok.iloc[:0]
    if len(vaes):
        lines += ["", "Each VAE's distance above R(D) at its MSE: at least its rate above the upper envelope (the "
                  "least rate of every estimator and model, mixtures included), at most its rate above the lower "
                  "bound:"]
    for (beta, split), g in vaes.groupby(["beta", "split"], sort=True):
        lines.append(f"- VAE β={beta:g}, {split} rows: MSE {interval_text(g['mse'])}, rate {interval_text(g['rate'])};"
                     f" above the upper envelope by {interval_text(g['rate_above_upper_envelope'])}, above the lower "
                     f"bound by {interval_text(g['rate_above_lower_bound'])} nats.")
    return lines


def _network(runs: pd.DataFrame) -> pd.Series:
    """Each run's network, "mlp" where the table names none (tables written before conv networks existed)."""
    if "network" not in runs:
        return pd.Series("mlp", index=runs.index)
    return runs["network"].fillna("").replace("", "mlp")


def _network_lines(vaes: pd.DataFrame, split: str) -> list[str]:
    """Conv against MLP VAEs at each β both swept: the difference in ELBO, seed by seed, and how far each network's
    distortion rises from the training rows to ``split``'s (a network that fits its training rows better but
    generalises worse sits off the frontier of the other only on held-out rows)."""
    net = _network(vaes)
    per_seed = vaes.assign(net=net).pivot_table(index=["beta", "seed"], columns=["net", "split"],
                                                values=["elbo", "distortion"])
    if "conv" not in set(net) or "mlp" not in set(net) or ("elbo", "mlp", "train") not in per_seed:
        return []
    lines = ["", f"## Convolutional against MLP networks (the same β and seed; {split} rows unless said)"]
    for beta, g in per_seed.groupby(level="beta"):
        elbo_diff = (g["elbo", "conv", split] - g["elbo", "mlp", split]).dropna()
        if not len(elbo_diff):
            continue
        rise = {n: g["distortion", n, split] - g["distortion", n, "train"] for n in ("conv", "mlp")}
        lines.append(f"- β={beta:g}: ELBO, conv minus MLP, {interval_text(elbo_diff)} (the conv VAE's is "
                     f"{direction(elbo_diff)}); distortion rises from training to {split} rows by "
                     f"{interval_text(rise['conv'])} (conv) and {interval_text(rise['mlp'])} (MLP).")
    return lines


def _vae_line(beta: float, g: pd.DataFrame, label: str = "VAE") -> str:
    """One VAE's rate, information bracket, distortion and bounds on log p(x)."""
    gap = g["rate"] - g["mi_lower"]
    slack = f"rate minus the lower bound: {interval_text(gap)}" if direction(gap).startswith("higher") else \
        "the lower bound reaches the rate within error: the rate is tight"
    return (f"- {label} β={beta:g}: rate {interval_text(g['rate'])}, I(X;Z) {runs_bracket(g)} ({slack}); "
            f"distortion {interval_text(g['distortion'])}, ELBO {interval_text(g['elbo'])}, IWAE "
            f"{interval_text(g['iwae'])}, {count_text(g['active_units'], 'active unit')}"
            f"{collapse_text(g['active_units'])}"
            + (f"; {interval_text(g['rate_above_shannon'])} nats above Shannon's R(D) at its MSE "
               f"{interval_text(g['mse'])}" if _known(g, "rate_above_shannon") else "") + ".")
