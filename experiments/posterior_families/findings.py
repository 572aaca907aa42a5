"""findings.md of the posterior-families experiment, generated from the stored tables (never typed by hand)."""

from __future__ import annotations

import pandas as pd

from ibkit.prose import direction, plural
from ibkit.stats import interval_text

DECODERS = {
    "learned": "Learned decoders",
    "frozen": "Frozen decoder (each learned diagonal VAE's), encoders of every family trained on it",
    "generating": "The generating decoder, frozen (exact log p(x))",
}


def write_findings(runs: pd.DataFrame) -> str:
    """findings.md: whether the diagonal posterior is too crude (each richer family minus the diagonal, paired by
    seed, on the test and the train split), then per decoder and beta each family's bounds, gaps, correlations
    and rate decomposition."""
    ok = runs[runs["status"] == "ok"]
    test = ok[ok["split"] == "test"]
    if not len(test):
        return "# Findings: posterior-families\n\nNo run finished; see the status and error columns of runs.csv.\n"
    if "decoder" not in ok:  # a table from before the decoder column: learned, or the generating control
        ok = ok.assign(decoder="generating" if "inference_gap" in ok and ok["inference_gap"].notna().any()
                       else "learned")
        test = ok[ok["split"] == "test"]
    seeds = test["seed"].nunique()
    interval = " ± half-width of the 95% bootstrap interval over seeds" if seeds > 1 else ""
    lines = ["# Findings: posterior-families", "",
             f"Generated from runs.csv ({test['dataset'].iloc[0]}; "
             f"{plural(seeds, 'seed')}, mean{interval})."
             " Nats per example, test split unless a line says train. IWAE − ELBO is a lower bound on the inference "
             "gap log p(x) − ELBO; the approximation and amortisation gaps are measured on the first test rows by "
             "per-datapoint optimisation run until its ELBO stops improving (Cremer et al. 2018). Differences "
             "between families are paired by seed (same seed: same initial decoder, minibatches and noise).", "",
             "## Is the diagonal posterior too crude?", ""]
    for decoder in [d for d in DECODERS if d in set(test["decoder"])]:
        for beta, g in ok[ok["decoder"] == decoder].groupby("beta"):
            lines += _verdicts(g, decoder, beta)
    lines.append("")
    for decoder in [d for d in DECODERS if d in set(test["decoder"])]:
        for beta, g in ok[ok["decoder"] == decoder].groupby("beta"):
            lines += _section(g, decoder, beta)
    return "\n".join(lines)


def _section(g: pd.DataFrame, decoder: str, beta: float) -> list[str]:
    """Each family at one decoder and beta."""
    test = g[g["split"] == "test"]
    lines = [f"## {DECODERS[decoder]}, β = {beta:g}"]
    if decoder == "generating":
        lines.append(f"log p(x) = {test['log_px'].iloc[0]:.3f} is exact, and so is the inference gap log p(x) − "
                     f"ELBO = KL(q || p(z|x)). The best diagonal q pays 1/2 (Σ log M_ii − log det M) = "
                     f"{test['best_diagonal_kl'].iloc[0]:.3f} nats (M the exact posterior precision); a "
                     "full-covariance q can pay 0.")
    if beta != 1:
        lines.append(f"(At β = {beta:g} the encoder minimises D + βR, not the negative ELBO: the part of the gap "
                     "called amortisation includes that mismatch of objectives, which per-datapoint ELBO "
                     "optimisation removes too.)")
    train = g[g["split"] == "train"]
    for family, f in test.groupby("posterior", sort=False):
        lines.append(_family_line(family, f, train[train["posterior"] == family], decoder == "generating"))
    return lines + [""]


def _family_line(family: str, f: pd.DataFrame, train: pd.DataFrame, exact: bool) -> str:
    """One family at one decoder and beta: its bounds (test and train), gaps, correlations and rate."""
    gap = f"exact gap {interval_text(f['inference_gap'])}, " if exact else ""
    rate_se = f" (Monte Carlo standard error {f['rate_se'].mean():.2g})" if f["rate_se"].gt(0).any() else ""
    on_train = f"; train ELBO {interval_text(train['elbo'])}, IWAE {interval_text(train['iwae'])}" if len(train) else ""
    return (f"- {family}: ELBO {interval_text(f['elbo'])}, IWAE {interval_text(f['iwae'])} ({gap}gap ≥ "
            f"{interval_text(f['iwae_minus_elbo'])}){on_train}; "
            f"approximation gap {interval_text(f['approximation_gap'])}, "
            f"amortisation gap {interval_text(f['amortization_gap'])} "
            f"({100 * (f['amortization_gap'] / (f['amortization_gap'] + f['approximation_gap'])).mean():.0f}% "
            f"of the inference gap{_convergence(f)}); {_correlation(f)}; "
            f"rate {interval_text(f['rate'])}{rate_se} = "
            f"I(n;z) {interval_text(f['index_information'])} + KL(q(z)||p(z)) {interval_text(f['marginal_kl'])}.")


def _convergence(f: pd.DataFrame) -> str:
    """How the per-datapoint optimisation ended: its steps and its last 100 steps' gain."""
    if "amortization_steps" not in f:
        return ""
    gain = f["amortization_last_improvement"].abs().max()
    low, high = f["amortization_steps"].min(), f["amortization_steps"].max()
    steps = f"{low:.0f}" if low == high else f"{low:.0f}–{high:.0f}"
    return f"; optimised for {steps} steps, the last 100 gaining at most {gain:.3f} nats"


def _correlation(f: pd.DataFrame) -> str:
    """The latents' correlation given x under q, and under the true posterior where its sampler was reliable."""
    q = f"latent correlation given x: q {interval_text(f['q_correlation'])}"
    if "ess_median" not in f:  # a table from before the reliability columns: its ESS cannot back a number
        return f"{q}, true posterior not reported (mean ESS {f['ess'].mean():.0f})"
    if f["true_correlation"].isna().all():
        return f"{q}, true posterior not reported (no row reached the ESS threshold; median ESS " \
               f"{f['ess_median'].median():.0f})"
    low, high = f["correlation_rows"].min(), f["correlation_rows"].max()
    rows = f"{low:.0f}" if low == high else f"{low:.0f}–{high:.0f}"
    return (f"{q}, true {interval_text(f['true_correlation'])} (on the {rows} rows per run whose importance "
            f"sampler reached the ESS threshold; median ESS {f['ess_median'].median():.0f}, 10th percentile "
            f"{f['ess_q10'].median():.0f})")


def _paired(g: pd.DataFrame, family: str, split: str, column: str = "elbo") -> pd.Series:
    """Per seed: ``family``'s ``column`` minus the diagonal's on ``split``."""
    rows = g[g["split"] == split].set_index(["posterior", "seed"])[column]
    if family not in rows.index.get_level_values(0) or "diagonal" not in rows.index.get_level_values(0):
        return pd.Series(dtype=float)
    return (rows[family] - rows["diagonal"]).dropna()


def _verdicts(g: pd.DataFrame, decoder: str, beta: float) -> list[str]:
    """Per richer family: its ELBO minus the diagonal's, test and train, and what the pair says."""
    lines = []
    for family in [f for f in ("full", "iaf") if f in set(g["posterior"])]:
        test, train = _paired(g, family, "test"), _paired(g, family, "train")
        if not len(test):
            continue
        verdict = direction(test)
        text = (f"- {DECODERS[decoder].split(' (')[0].split(',')[0].lower()}, β = {beta:g}: {family} − diagonal "
                f"ELBO {interval_text(test)} on test")
        if len(train):
            text += f", {interval_text(train)} on train"
        text += f": {family}'s test ELBO is {verdict}"
        if decoder == "learned" and verdict.startswith("lower") and len(train) and train.mean() >= test.mean() \
                and not direction(train).startswith("lower"):
            text += (f", while on train it is {direction(train).split(' (')[0]}: over-fitting (the richer family "
                     "fits the training rows at least as well and generalises worse), not a worse family")
        elif decoder == "learned" and verdict.startswith("lower"):
            text += ", and lower on train too: not over-fitting; this family trained to a worse optimum"
        elif decoder != "learned" and verdict.startswith("lower"):
            text += ": on one fixed generative model a richer family should not lose; this one did"
        lines.append(text + ".")
    return lines
