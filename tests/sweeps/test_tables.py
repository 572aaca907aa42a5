"""ibkit table: 95% bootstrap intervals over seeds, numbers rounded to them, CSV that parses back, LaTeX tabulars."""

import io
import math

import numpy as np
import pandas as pd
import pytest

from ibkit.tables import bootstrap_interval, format_table, over_examples, round_to_uncertainty


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


def test_bootstrap_interval_matches_the_normal_interval_for_many_seeds():
    values = np.random.default_rng(1).standard_normal(400)
    lo, hi = bootstrap_interval(values)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1) and lo < values.mean() < hi
    assert all(math.isnan(v) for v in bootstrap_interval([3.0]))


@pytest.mark.parametrize("mean,half,text", [(4.8992, 0.0512, "4.899 ± 0.051"), (0.14254, 0.0012, "0.1425 ± 0.0012"),
                                            (-13.3, 2.4, "-13.3 ± 2.4"), (152.3, 17, "152 ± 17"),
                                            (3.25, math.nan, "3.25"), (math.nan, 1.0, "–"),
                                            (5.86090681867721930, 4.4e-16, "5.86091 ± 0.00000")])
def test_numbers_are_rounded_to_their_uncertainty(mean, half, text):
    assert round_to_uncertainty(mean, half) == text


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
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule") and tex[-1] == r"\end{tabular}"
    assert r"$\pm$" in "\n".join(tex) and "_" not in "\n".join(rows).replace(r"\_", "")
    # a paper's headers with units; the constant columns said once in the note; the package it needs named
    assert rows[0] == r"kind & posterior & $\beta$ & $R$ (nats) & $D$ (nats) \\"
    assert "latent\\_dim = 4 in every row" in tex[0] and tex[1] == r"% needs \usepackage{booktabs}"


def test_latex_columns_can_be_picked_and_the_rules_and_alignment_chosen():
    tex = format_table(_runs(), "latex", columns=["beta", "seeds", "rate"], booktabs=False, siunitx=True)
    lines = tex.splitlines()
    assert lines[1] == r"% needs \usepackage{siunitx}" and r"\toprule" not in tex and tex.count(r"\hline") == 3
    assert lines[2] == r"\begin{tabular}{lS[separate-uncertainty]S[separate-uncertainty]}"
    assert lines[4] == r"$\beta$ & {seeds} & {$R$ (nats)} \\"
    assert lines[6].startswith(r"-- & 1 & {--}")  # a cell that is no number is braced: S columns skip it
    assert lines[-3].startswith("2 & 3 & 1.") and " +- " in lines[-3]  # siunitx's uncertainty syntax
    with pytest.raises(ValueError, match=r"columns: 'gamma' is not a column of this table; its columns: kind,"):
        format_table(_runs(), "latex", columns=["gamma"])


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


@pytest.mark.parametrize("lower, upper, lower_se, upper_se, text", [
    ([1.0, 1.2, 1.1], [2.0, 2.1, 2.2], None, None, "between 1.10 ± 0.10 and 2.10 ± 0.10"),
    ([-0.002052], [-0.002055], [0.0004], [0.0004], "about 0 (the lower estimate -0.00205 ± 0.00078 and the upper "
     "-0.00205 ± 0.00078 are equal within error; a negative estimate, clipped at 0: I(X;Z) >= 0)"),
    ([0.0178], [0.0138], [0.003], [0.0001], "about 0.01380 ± 0.00020 (the lower estimate 0.0178 ± 0.0059 and the "
     "upper 0.01380 ± 0.00020 are equal within error)"),
    ([5.29], [math.inf], [0.005], [math.nan], "at least 5.2900 ± 0.0098 (unbounded above: no upper bound exists)"),
])
def test_a_findings_bracket_agrees_with_its_numbers(lower, upper, lower_se, upper_se, text):
    from ibkit.tables import bracket_text

    assert bracket_text(lower, upper, lower_se, upper_se) == text


def test_a_findings_verdict_agrees_with_the_interval_printed_beside_it():
    """Three seeds whose percentile bootstrap interval excludes 0 while the printed mean ± half-width does not
    (1.0 ± 1.3 read as 'higher'): the verdict follows what the reader sees."""
    from ibkit.tables import direction, interval_text

    diff = [0.1, 0.2, 2.7]
    assert interval_text(diff).startswith("1.0 ± 1.") and direction(diff).startswith("no different")
    assert direction([1.0, 1.1, 1.2]) == "higher" and direction([-1.0, -1.1, -1.2]) == "lower"
    assert direction([0.5]) == "higher (one seed: no interval)"


def test_schedule_columns_appear_only_where_a_run_sets_a_schedule():
    """gamma = 1000 and warmup_epochs = 0 in every VAE row are defaults (no schedule): no columns, not even in the
    note; one run with a warm-up brings its column back."""
    runs = _runs().assign(gamma=1000.0, warmup_epochs=0.0, capacity=math.nan)
    header = format_table(runs).splitlines()[0]
    assert "gamma" not in format_table(runs) and "warmup_epochs" not in format_table(runs)
    assert header.startswith("| kind | posterior | beta | seeds |")
    runs.loc[runs.index[0], "warmup_epochs"] = 20.0
    assert "| warmup_epochs |" in format_table(runs).splitlines()[0]
