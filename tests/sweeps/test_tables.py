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
