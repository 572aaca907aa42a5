"""findings.md of the coding experiment, generated from the stored table (never typed by hand)."""

from __future__ import annotations

import pandas as pd

from ibkit.prose import plural
from ibkit.stats import bootstrap_interval, interval_text, round_to_uncertainty


def _text(g: pd.DataFrame, column: str) -> str:
    """'m ± h': over seeds (bootstrap), or for one seed over the coded rows (the stored interval)."""
    if len(g) == 1 and f"{column}_ex_lo" in g:
        row = g.iloc[0]
        return round_to_uncertainty(row[column], (row[f"{column}_ex_hi"] - row[f"{column}_ex_lo"]) / 2)
    return interval_text(g[column])


def _interval(g: pd.DataFrame, column: str) -> tuple[float, float]:
    """The 95% interval ``_text`` prints."""
    if len(g) == 1 and f"{column}_ex_lo" in g:
        return float(g[f"{column}_ex_lo"].iloc[0]), float(g[f"{column}_ex_hi"].iloc[0])
    return bootstrap_interval(g[column].dropna())


def _side(g: pd.DataFrame, column: str, above: str, below: str, level: str) -> str:
    """Which side of 0 the interval of ``column`` lies: ``above``, ``below``, or ``level`` where it holds 0."""
    lo, hi = _interval(g, column)
    return above if lo > 0 else below if hi < 0 else level


def _bits_back_line(beta: float, g: pd.DataFrame) -> str:
    rows, exact = int(g["code_rows"].sum()), int(g["rows_exact"].sum())
    excess = _side(g, "bits_back_excess", "above it", "below it", "level with it within the interval")
    clean = _side(g, "bits_back_clean_excess", "above it", "below it", "level with it within the interval")
    decoded = f"all {plural(rows, 'row')} decoded exactly" if exact == rows else \
        f"only {exact} of {plural(rows, 'row')} decoded exactly"
    return (f"- β={beta:g}: {_text(g, 'bits_back')} nats per example against -ELBO {_text(g, 'neg_elbo')} "
            f"(ratio {g['bits_back_ratio'].mean():.4f}; the difference {_text(g, 'bits_back_excess')} nats, "
            f"{excess}); with clean bits {_text(g, 'bits_back_clean')} (the difference "
            f"{_text(g, 'bits_back_clean_excess')}, {clean}); -log p(x) is about {_text(g, 'iwae_nll')} (IWAE); "
            f"{decoded}. With the chains' padding to whole words, the stored stream costs "
            f"{g['bits_back_stream'].mean():.2f} nats per row, and {int(g['initial_bits'].iloc[0]):,} seed bits "
            "once.")


def _channel_line(beta: float, g: pd.DataFrame) -> str:
    rows, exact = int(g["code_rows"].sum()), int(g["samples_exact"].sum())
    under = _side(g, "channel_margin", "under", "over", "within the interval of")
    rebuilt = "every sample rebuilt bit for bit" if exact == rows else f"only {exact} of {rows} samples rebuilt"
    blocks = g["blocks"]
    block_text = plural(blocks.iloc[0], "block") if blocks.nunique() == 1 else f"{blocks.min()}-{blocks.max()} blocks"
    wider = g["proposal_kl_bits"].mean() - g["kl_bits"].mean()
    proposal = "the candidates drawn from the prior" if wider < 5e-4 else \
        f"the candidates' proposal, wider than the prior in collapsed units, adding {wider:.3f} bits of KL"
    return (f"- β={beta:g}: {_text(g, 'channel_bits')} bits per example for a rate of {_text(g, 'kl_bits')} bits "
            f"(the excess {_text(g, 'channel_excess_bits')} bits), {under} the bound {_text(g, 'bound_bits')} bits "
            f"({block_text}; {proposal}); {rebuilt} from the indices and the seed alone.")


def write_findings(runs: pd.DataFrame, split: str = "test") -> str:
    """findings.md: for each beta the bits-back length against -ELBO and the channel-simulation bits against the
    rate and its bound, in numbers from the stored table."""
    ok = runs[(runs["status"] == "ok") & (runs["split"] == split)].copy()
    if not len(ok):
        return "# Findings: coding\n\nNo run finished; see the status and error columns of runs.csv.\n"
    ok["channel_margin"] = ok["bound_bits"] - ok["channel_bits"]
    ok["iwae_nll"], ok["iwae_nll_ex_lo"], ok["iwae_nll_ex_hi"] = -ok["iwae"], -ok["iwae_ex_hi"], -ok["iwae_ex_lo"]
    for side in ("lo", "hi"):  # the margin's interval, conservatively from the two means' intervals
        other = "hi" if side == "lo" else "lo"
        ok[f"channel_margin_ex_{side}"] = ok["bound_bits"] - ok[f"channel_bits_ex_{other}"] + \
            (ok[f"bound_bits_ex_{side}"] - ok["bound_bits"])
    seeds, rows = ok["seed"].nunique(), int(ok["code_rows"].iloc[0])
    spread = "mean ± half-width of the 95% bootstrap interval over seeds" if seeds > 1 else \
        "mean ± half-width of the 95% bootstrap interval over the coded rows"
    first = ok.iloc[0]
    lines = ["# Findings: coding", "",
             f"Generated from runs.csv ({first['dataset']}, the first {plural(rows, 'row')} of the {split} split; "
             f"{plural(seeds, 'seed')}, {spread}). Bits-back (BB-ANS on constriction's ANS coder, "
             f"{int(first['latent_bins']):,} equal-mass bins of the prior per latent dimension, "
             f"{int(first['chains'])} chains) in nats per example; channel simulation (the Poisson functional "
             f"representation, blocks of dimensions whose search draws at most 2^{first['block_bits']:g} candidates on "
             "average, indices under the Elias "
             "delta code) in bits per example.", "",
             "## -ELBO is the length of a real bitstream",
             "Each row's net increment of its chain's stream, against -ELBO "
             f"({int(first['elbo_samples'])} draws per row); the difference is paired row by row. Each row's pop of "
             "z reads the bits the rows before it pushed, uniform only where the aggregate posterior matches the "
             "prior (Townsend et al. 2019's clean bits), so its z are not exact draws of q(z|x) and the stream can "
             "fall below -ELBO, though not below -log p(x) on average; with clean bits (every row in a chain of its "
             "own, its pop reading fresh seed bits) each z is an exact draw of q(z|x) and the expected length is "
             "-ELBO, up to the discretisation of z and the coder's 24-bit probabilities."]
    groups = sorted(ok.groupby("beta"), key=lambda item: item[0])
    lines += [_bits_back_line(beta, g) for beta, g in groups]
    lines += ["", "## The rate is the cost of sending one sample of q(z|x)",
              "The indices that name one exact sample of q(z|x) among candidates drawn with the shared seed from the "
              "prior (a little wider in a collapsed unit, where q is as wide as p, so that the search ends), against "
              "the rate KL(q‖p) and the bound Σ over blocks of KL + log₂(KL + 1) + 4, its KL against the "
              "candidates' proposal (Li & El Gamal 2018)."]
    lines += [_channel_line(beta, g) for beta, g in groups]
    low, high = ok["bits_back_ratio"].min(), ok["bits_back_ratio"].max()
    lines += ["", f"Across the sweep's runs the bits-back stream is {low:.4f} to {high:.4f} times -ELBO."]
    return "\n".join(lines) + "\n"
