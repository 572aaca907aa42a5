"""A tiny CPU run of the coding experiment: every model's bits-back length beside its -ELBO, its channel-simulation
bits beside the rate and the bound, the figure and findings that agree with the table."""

import math
import re

import pandas as pd
import pytest

pytest.importorskip("constriction")

from experiments.coding import Config, model_grid  # noqa: E402

TINY = ["--set", "epochs=15", "--set", "code_rows=120", "--set", "hidden=64,64"]


@pytest.fixture(scope="module")
def run_dir(run_experiment):
    return run_experiment("coding", TINY)


def test_the_grid_is_a_vae_at_every_beta_and_seed_on_binary_data_only():
    specs = model_grid(Config())
    assert [s.get("beta") for s in specs if s.seed == 0] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert len(specs) == 15 and {s.kind for s in specs} == {"vae"}
    with pytest.raises(ValueError, match="dataset='gaussian'"):
        Config(dataset="gaussian")
    with pytest.raises(ValueError, match="latent_bins=1 must be >= 2"):
        Config(latent_bins=1)


def test_every_code_is_exact_and_as_long_as_its_bound(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv")
    assert (runs["status"] == "ok").all() and len(runs) == 2 and set(runs["split"]) == {"test"}
    assert (runs["rows_exact"] == 120).all() and (runs["samples_exact"] == 120).all()
    # the stream per row is -ELBO (64 draws) to 2% on digits; the paired difference is their difference
    assert runs["bits_back_ratio"].between(0.98, 1.02).all()
    assert (runs["bits_back"] - runs["neg_elbo"] - runs["bits_back_excess"]).abs().max() < 1e-9
    assert (runs["neg_elbo"] - runs["rate"] - runs["distortion"]).abs().max() < 1e-6
    assert (runs["bits_back_stream"] >= runs["bits_back"]).all()  # padding to whole words only adds
    # clean bits (a chain per row): exact draws of q; every code stays above -log p(x)'s IWAE estimate (k = 100)
    assert runs["bits_back_clean"].between(0.98 * runs["neg_elbo"], 1.02 * runs["neg_elbo"]).all()
    assert (runs["bits_back"] > -runs["iwae"]).all() and (runs["bits_back_clean"] > -runs["iwae"]).all()
    # channel simulation: the KL in bits is the rate in nats; the proposal's KL is at least it; bits under the bound
    assert runs["kl_bits"].to_numpy() == pytest.approx((runs["rate"] / math.log(2)).to_numpy(), rel=1e-4)
    assert (runs["proposal_kl_bits"] >= runs["kl_bits"] - 1e-9).all()
    assert (runs["channel_bits"] <= runs["bound_bits"]).all() and (runs["channel_bits"] >= runs["kl_bits"]).all()
    assert (run_dir / "figures" / "code_lengths.png").exists()


def test_the_findings_say_what_the_table_holds(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv").sort_values("beta")
    text = (run_dir / "findings.md").read_text()
    for _, row in runs.iterrows():
        line = next(line for line in text.splitlines() if line.startswith(f"- β={row['beta']:g}: ") and "ratio" in line)
        assert f"(ratio {row['bits_back_ratio']:.4f};" in line and "all 120 rows decoded exactly" in line
        said = float(re.search(r"the difference (-?[\d.]+) ± ([\d.]+) nats", line).group(1))
        assert said == pytest.approx(row["bits_back_excess"], abs=0.01)
        side = "above it" if row["bits_back_excess_ex_lo"] > 0 else "below it" if row["bits_back_excess_ex_hi"] < 0 \
            else "level with it"
        assert side in line
        channel = next(line for line in text.splitlines() if line.startswith(f"- β={row['beta']:g}: ") and
                       "bits per example" in line)
        assert "under the bound" in channel and "every sample rebuilt bit for bit" in channel
