"""ibkit table: 95% bootstrap intervals over seeds, numbers rounded to them, CSV that parses back, LaTeX tabulars
(the statistics themselves: tests/test_stats.py; the sentences: tests/test_prose.py)."""

import io
import math

import numpy as np
import pandas as pd
import pytest

from ibkit.stats import over_examples, round_to_uncertainty
from ibkit.tables import format_table


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for beta, rate in ((0.5, 4.9), (2.0, 1.2)):
        for seed in range(3):
            rows.append(dict(run_id=f"vae-beta{beta}-seed{seed}", kind="vae", posterior="diagonal", latent_dim=4,
                             beta=beta, noise=math.nan, sparsity=math.nan, code_bound="", seed=seed, split="test",
                             status="ok", rate=rate + 0.05 * rng.standard_normal(), distortion=10 - rate,
                             active_units=4))
    rows.append(dict(run_id="ae-seed0", kind="ae", posterior="", latent_dim=4, beta=math.nan, noise=math.nan,
                     sparsity=math.nan, code_bound="", seed=0, split="test", status="ok", rate=math.nan,
                     distortion=3.25, active_units=4))
    return pd.DataFrame(rows)


def test_csv_parses_back_with_the_interval_around_the_mean():
    back = pd.read_csv(io.StringIO(format_table(_runs(), "csv")))
    vae = back[back["kind"] == "vae"].set_index("beta")
    assert list(vae.index) == [0.5, 2.0] and (vae["seeds"] == 3).all()
    assert ((vae["rate_lo"] <= vae["rate"]) & (vae["rate"] <= vae["rate_hi"])).all()
    assert vae.loc[0.5, "rate"] == pytest.approx(_runs().query("beta == 0.5")["rate"].mean())
    ae = back[back["kind"] == "ae"].iloc[0]
    assert ae["seeds"] == 1 and math.isnan(ae["distortion_lo"]) and ae["distortion"] == 3.25


def test_one_seed_gets_the_bootstrap_interval_over_its_test_examples():
    """A single-seed run stores the interval over its examples (over_examples); for a mean of N normal values it
    is the normal interval +-1.96 sd / sqrt(N), and the table reports it and says so."""
    values = np.random.default_rng(2).normal(3.0, 2.0, size=5000)
    stored = over_examples(distortion=values)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert stored["distortion"] == pytest.approx(values.mean())
    assert (stored["distortion_ex_hi"] - stored["distortion_ex_lo"]) / 2 == pytest.approx(half, rel=0.1)
    runs = _runs()
    ae = runs["kind"] == "ae"
    runs.loc[ae, "distortion"] = stored["distortion"]
    runs.loc[ae, "distortion_ex_lo"], runs.loc[ae, "distortion_ex_hi"] = stored["distortion_ex_lo"], stored[
        "distortion_ex_hi"]
    back = pd.read_csv(io.StringIO(format_table(runs, "csv")))
    row = back[back["kind"] == "ae"].iloc[0]
    assert row["interval"] == "examples" and row["distortion_lo"] == pytest.approx(stored["distortion_ex_lo"])
    assert set(back.loc[back["kind"] == "vae", "interval"]) == {"seeds"}  # three seeds: over seeds, as before
    markdown = format_table(runs, "markdown")
    stored_half = (stored["distortion_ex_hi"] - stored["distortion_ex_lo"]) / 2
    assert f"| {round_to_uncertainty(stored['distortion'], stored_half)} |" in markdown
    assert "over seeds (rows with 1 seed: over the test split's examples)" in markdown
    assert "(rows with 1 seed: none)" in format_table(_runs(), "markdown")


def test_latex_is_a_booktabs_tabular_with_one_cell_per_column():
    tex = format_table(_runs(), "latex").splitlines()
    begin = next(line for line in tex if line.startswith(r"\begin{tabular}"))
    columns = len(begin[len(r"\begin{tabular}{"):-1])
    rows = [line for line in tex if line.endswith(r"\\")]
    assert len(rows) == 1 + 3  # header and three configurations
    assert all(line.count("&") == columns - 1 for line in rows)
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert tex[-2:] == [r"\end{tabular}", r"\end{table}"]
    assert r"$\pm$" in "\n".join(tex) and "_" not in "\n".join(rows).replace(r"\_", "")
    # a paper's headers with units; the constant columns said once in the caption; the package it needs named
    assert rows[0] == r"kind & posterior & $\beta$ & $R$ (nats) & $D$ (nats) \\"
    assert "$d$ = 4 in every row" in tex[3] and tex[:2] == [r"% needs \usepackage{booktabs}", r"\begin{table}"]


def test_latex_columns_can_be_picked_and_the_rules_and_alignment_chosen():
    tex = format_table(_runs(), "latex", columns=["beta", "seeds", "rate"], booktabs=False, siunitx=True)
    lines = tex.splitlines()
    assert lines[0] == r"% needs \usepackage{siunitx}" and r"\toprule" not in tex and tex.count(r"\hline") == 3
    assert lines[4] == r"\begin{tabular}{lS[separate-uncertainty]S[separate-uncertainty]}"
    assert lines[6] == r"$\beta$ & {seeds} & {$R$ (nats)} \\"
    assert lines[8].startswith(r"-- & 1 & {--}")  # a cell that is no number is braced: S columns skip it
    assert lines[-4].startswith("2 & 3 & 1.") and " +- " in lines[-4]  # siunitx's uncertainty syntax
    with pytest.raises(ValueError, match=r"columns: 'gamma' is not a column of this table; its columns: kind,"):
        format_table(_runs(), "latex", columns=["gamma"])


BETA_GRID = (0.05, 0.0973, 0.1893, 0.3684, 0.7169, 1.395, 2.7144, 5.282, 10.2781, 20.0)  # geomspace(0.05, 20, 10)


def _paper_runs() -> pd.DataFrame:
    """Two seeds of a VAE at each beta of BETA_GRID, of two noisy AEs and of a sparse AE, with ELBO and IWAE."""
    rows = []
    configs = [dict(kind="vae", posterior="diagonal", beta=b) for b in BETA_GRID]
    configs += [dict(kind="noisy_ae", noise=s) for s in (0.05, 0.2)] + [dict(kind="sparse_ae", sparsity=0.01)]
    for i, config in enumerate(configs):
        for seed in range(2):
            rate = 1.0 + i + 0.01 * seed
            rows.append(dict(run_id=f"r{i}-seed{seed}", latent_dim=8, seed=seed, split="test", status="ok", rate=rate,
                             distortion=100.0 - i, elbo=i - 101.0 - 0.01 * seed, iwae=i - 99.0) | config)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("grid, digits", [(BETA_GRID, 3), ((0.05, 0.2, 0.5), 2), ((0.01, 0.1, 1.0), 2),
                                          ((10.2781, 20.0), 3), ((1.2341, 1.2348), 4), ((1.0, 1.01), 3),
                                          ((6.43775, 13.0324, 23.9758), 2)])
def test_a_knob_gets_the_fewest_digits_that_keep_its_grid_apart_and_within_one_percent(grid, digits):
    """Two digits would keep BETA_GRID apart, but print 10.2781 as 10 (2.7% off): three print 10.3."""
    from ibkit.tables import knob_digits

    assert knob_digits([*grid, math.nan, grid[0]]) == digits


def test_latex_is_a_captioned_table_of_labels_knob_digits_and_both_likelihood_bounds():
    tex = format_table(_paper_runs(), "latex", source="digits, 1,438/359")
    lines = tex.splitlines()
    assert lines[:3] == [r"% needs \usepackage{booktabs}", r"\begin{table}", r"\centering"]
    assert [line[0] for line in lines if line.startswith("%")] == ["%"]  # the note is the caption, no comment
    caption = lines[3]
    assert caption.startswith(r"\caption{Data: digits, 1,438/359. $\beta$: weight of the rate in the loss (VAE); "
                              r"$\sigma$: std of the Gaussian channel noise (noisy AE); $\lambda$: weight of the L1 "
                              r"penalty on the code (sparse AE); $R$: the rate") and caption.endswith(".}")
    assert r"$d$ = 8 in every row. Mean $\pm$ half-width of the 95\% bootstrap interval" in caption
    header, *rows = [line for line in lines if line.endswith(r"\\")]
    assert header == (r"kind & posterior & $\beta$ & $\sigma$ & $\lambda$ & $R$ (nats) & $D$ (nats) & ELBO (nats) & "
                      r"$\log p(x) \geq$ (IWAE, nats) \\")
    cells = [[c.strip() for c in row.removesuffix(r"\\").split("&")] for row in rows]
    assert [c[0] for c in cells] == ["noisy AE"] * 2 + ["sparse AE"] + ["VAE"] * 10  # labels, not identifiers
    assert [c[2] for c in cells[3:]] == ["0.05", "0.0973", "0.189", "0.368", "0.717", "1.4", "2.71", "5.28", "10.3",
                                         "20"]
    assert [c[3] for c in cells[:2]] == ["0.05", "0.2"] and cells[2][4] == "0.01"
    assert cells[3][7] == r"$-$101.005 $\pm$ 0.005" and cells[3][8] == r"$-$99 $\pm$ 0"  # a minus, not a hyphen
    body = tex.replace(r"\{", "").replace(r"\}", "")
    assert body.count("{") == body.count("}") and all(line.count("$") % 2 == 0 for line in lines)
    assert "noisy_ae" not in tex and "_" not in tex.replace(r"\_", "")


def test_markdown_has_the_same_labels_and_knob_digits():
    table = format_table(_paper_runs())
    assert "| VAE | diagonal | 10.3 |" in table and "| noisy AE | – | – | 0.05 |" in table
    assert "noisy_ae" not in table and "10.2781" not in table


def test_two_knobs_of_one_symbol_are_headed_by_their_names():
    """sparsity and free_bits are both λ: a table with both says which is which by name."""
    runs = _paper_runs().assign(free_bits=0.0)
    runs.loc[runs["beta"] == 20.0, "free_bits"] = 0.5
    header = next(line for line in format_table(runs, "latex").splitlines() if line.startswith("kind &"))
    assert r"$\lambda$" not in header and " & free bits & " in header and " & sparsity & " in header


def test_tex_escapes_the_specials_and_writes_symbols_as_math():
    from ibkit.tables import tex

    assert tex("test_fraction 95% I(X;Z) >= 0, -1.5 ± 0.2 (σ = 1e-05), a low-rank & ∞") == (
        r"test\_fraction 95\% I(X;Z) $\geq$ 0, $-$1.5 $\pm$ 0.2 ($\sigma$ = 1e-05), a low-rank \& $\infty$")


def test_gallery_is_assembled_from_the_stored_folders(tmp_path):
    from ibkit.cli import main

    root = tmp_path / "results"
    assert main(["run", "rate-distortion", "--quick", "--out", str(root / "rd"), "--set", "epochs=2",
                 "--set", "betas=0.5,4", "--set", "hidden=16", "--set", "iwae_k=5"]) == 0
    assert main(["gallery", str(root)]) == 0
    text = (root / "README.md").read_text()
    command = next(line for line in text.splitlines() if line.startswith("`ibkit run")).split("`")[1]
    assert command.startswith(f"ibkit run rate-distortion --out {(root / 'rd').as_posix()} ")
    assert "--set epochs=2" in command and "--set betas=0.5,4.0" in command and "--set hidden=16" in command
    assert "![rate_distortion](rd/figures/rate_distortion.png)" in text
    findings = (root / "rd" / "findings.md").read_text().splitlines()
    assert findings[-1] in text and "### The KL penalty: the rate bounds the information" in text


def test_runs_of_one_config_on_other_decoders_are_other_rows():
    """A learned and a frozen decoder (the posterior-families control) are two settings, never pooled."""
    from ibkit.tables import summarise

    runs = _runs().query("kind == 'vae'")
    both = pd.concat([runs.assign(decoder="learned"), runs.assign(decoder="frozen", rate=runs["rate"] + 1)])
    summary = summarise(both).set_index(["decoder", "beta"])
    assert len(summary) == 4 and list(summary.index.names) == ["decoder", "beta"]
    diff = summary.loc["frozen", "rate"] - summary.loc["learned", "rate"]
    assert np.allclose(diff, 1.0)


def _bracket_runs(lower, upper, lower_se=0.0004, upper_se=0.0004, kind="vae") -> pd.DataFrame:
    """One run's test row with the given bounds on I(X;Z) and their standard errors."""
    return pd.DataFrame([dict(run_id="r", kind=kind, latent_dim=4, beta=5.28, seed=0, split="test", status="ok",
                              rate=0.0138, mi_lower=lower, mi_lower_se=lower_se, mi_upper=upper,
                              mi_upper_se=upper_se)])


def _cells(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[2].strip("|").split("|")]


def test_a_bracket_is_never_negative_or_inverted_in_a_table():
    """The issue's numbers: mi_lower -0.002052 above mi_upper -0.002055 (a collapsed VAE) is printed as one value
    clipped at 0 and marked, with the marks explained; one seed's interval comes from the standard errors."""
    table = format_table(_bracket_runs(-0.002052, -0.002055))
    cells = _cells(table)
    assert cells[-2:] == ["0†‡", "0†‡"]
    assert "† a negative estimate of I(X;Z) >= 0, shown as 0" in table and "‡ the lower estimate exceeded" in table
    table = format_table(_bracket_runs(0.0178, 0.0138, 0.003, 0.0001))  # infonce above the rate, within error
    assert _cells(table)[-2:] == ["0.01380 ± 0.00020‡", "0.01380 ± 0.00020‡"]
    table = format_table(_bracket_runs(0.0178, 0.0138, 0.0001, 0.0001))  # beyond error: marked so, not hidden
    assert _cells(table)[-2:] == ["0.01380 ± 0.00020§", "0.01380 ± 0.00020§"] and "§ the lower estimate" in table
    assert _cells(format_table(_bracket_runs(1.0, 2.0, 0.01, 0.02)))[-2:] == ["1.000 ± 0.020", "2.000 ± 0.039"]


def test_an_upper_bound_that_does_not_exist_is_infinity_never_a_huge_number(tmp_path):
    runs = _bracket_runs(5.29, math.inf, 0.005, math.nan, kind="ae")
    table = format_table(runs)
    assert _cells(table)[-2:] == ["5.2900 ± 0.0098", "∞"]
    assert "∞: no upper bound exists" in table
    latex = format_table(runs, "latex")
    assert r"$\infty$" in latex and "e+" not in latex
    runs.to_csv(tmp_path / "runs.csv", index=False)  # stored as inf, read back as inf
    assert math.isinf(pd.read_csv(tmp_path / "runs.csv")["mi_upper"].iloc[0])


def test_schedule_columns_appear_only_where_a_run_sets_a_schedule():
    """gamma = 1000 and warmup_epochs = 0 in every VAE row are defaults (no schedule): no columns, not even in the
    note; one run with a warm-up brings its column back."""
    runs = _runs().assign(gamma=1000.0, warmup_epochs=0.0, capacity=math.nan)
    header = format_table(runs).splitlines()[0]
    assert "gamma" not in format_table(runs) and "warmup_epochs" not in format_table(runs)
    assert header.startswith("| kind | posterior | beta | seeds |")
    runs.loc[runs.index[0], "warmup_epochs"] = 20.0
    assert "| warmup_epochs |" in format_table(runs).splitlines()[0]
