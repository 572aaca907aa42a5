"""A tiny CPU run of the layer-information experiment: the grid, the per-layer table, the figures and findings."""

import re

import pandas as pd
import pytest

from experiments.layer_information import Config, model_grid
from ibkit.cli import main

TINY = ["--set", "epochs=2", "--set", "hidden=16", "--set", "layer_hidden=8", "--set", "layer_dims=4,2",
        "--set", "betas=1", "--set", "schedules=none,warmup,free_bits,aggressive", "--set", "iwae_k=5",
        "--set", "eval_rows=60", "--set", "warmup_epochs=2",
        "--set", "aggressive_inference=top_down", "--set", "batch_size=512"]  # aggressive: one structure


@pytest.fixture(scope="module")
def run_dir(run_experiment):
    return run_experiment("layer-information", TINY)


def test_the_grid_has_every_structure_schedule_and_beta():
    specs = model_grid(Config(seeds=(0,)))
    assert len({s.get("latent_dims") for s in specs}) == 3  # (8,), (8, 4), (8, 4, 2)
    one_layer = [s for s in specs if len(s.get("latent_dims")) == 1]
    assert {s.get("inference") for s in one_layer} == {"top_down"}  # one layer: a single inference order
    # 1 + 2 + 2 structures x 4 betas x (none, warmup, free bits), and aggressive at beta 1 on the 2 two-layer ones
    assert len(specs) == 5 * 4 * 3 + 2
    narrowed = model_grid(Config(seeds=(0,), aggressive_depths=(3,), aggressive_betas=(4.0,),
                                 aggressive_inference=("top_down",)))
    assert [(s.get("latent_dims"), s.get("inference"), s.get("beta")) for s in narrowed if s.get("aggressive")] == [
        ((8, 4, 2), "top_down", 4.0)]
    with pytest.raises(ValueError, match=r"aggressive_inference\[0\]='sideways'"):
        Config(aggressive_inference=("sideways",))
    with pytest.raises(ValueError, match=r"depths=4 must be"):
        Config(depths=(4,))
    with pytest.raises(ValueError, match=r"schedules\[0\]='cyclical'"):
        Config(schedules=("cyclical",))


def test_runs_and_the_per_layer_table(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv")
    assert (runs["status"] == "ok").all() and set(runs["split"]) == {"test"}
    # 1 layer (3 schedules, no aggressive at depth 1) + 2 layers x 2 orders x 3 schedules + aggressive top-down
    assert len(runs) == 3 + 2 * 3 + 1
    assert set(runs["schedule"]) == {"none", "warmup", "free_bits", "aggressive"}
    layers = pd.read_csv(run_dir / "layers.csv")
    assert len(layers) == 3 + (2 * 3 + 1) * 2  # one row per run and layer
    per_run = layers.groupby("run_id")["rate"].sum()
    rates = runs.set_index("run_id")["rate"]
    assert (per_run - rates.loc[per_run.index]).abs().max() < 0.05  # the layers' rates sum to the rate
    assert (layers["mi_upper"] >= layers["rate"] - 1e-9).all()
    top = layers[layers["layer"] == layers.groupby("run_id")["layer"].transform("max")]
    assert (top["mi_upper"] == top["rate"]).all()  # the top layer's cumulative rate is its own
    # the whole code's bracket: InfoNCE below, the smaller of leave-one-out and the rate above, with errors
    assert (runs["mi_lower"] == runs["infonce"]).all()
    valid_loo = runs["loo"].where(runs["loo"] >= 0)  # a negative LOO estimate is Monte Carlo noise, no bound
    tightest = pd.concat([valid_loo, runs["rate"]], axis=1).min(axis=1)
    assert runs["mi_upper"].to_numpy() == pytest.approx(tightest.to_numpy(), rel=1e-6)
    assert (runs["mi_upper"] >= 0).all() and runs.loc[runs["loo"] < 0, "mi_upper_note"].str.contains("below 0").all()
    assert (runs[["mi_lower_se", "mi_upper_se"]] > 0).all().all()
    free = runs[runs["schedule"] == "free_bits"]
    assert (free["free_bits"] == 0.5).all() and runs.loc[runs["schedule"] == "none", "free_bits"].eq(0).all()
    history = pd.read_csv(run_dir / "history.csv")
    warm = history[history["run_id"].isin(runs.loc[runs["schedule"] == "warmup", "run_id"])]
    assert warm.groupby("epoch")["beta_used"].mean().is_monotonic_increasing
    aggressive = history[history["run_id"].isin(runs.loc[runs["schedule"] == "aggressive", "run_id"])]
    assert (aggressive["encoder_steps"].iloc[:1] > 0).all()


def test_figures_and_findings(run_dir):
    for name in ("rate_per_layer", "active_units_per_layer", "information_per_layer", "rate_distortion"):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 0
    text = (run_dir / "findings.md").read_text()
    assert "## Which layers collapse, and at which β (plain training)" in text
    for heading in ("What KL warm-up changes", "What free bits changes", "What aggressive training changes",
                    "Deeper models against one layer"):
        assert heading in text
    assert "2 layers, top-down, z2 (d = 2)" in text and "2 layers, bottom-up, z1 (d = 4)" in text
    assert main(["plot", str(run_dir)]) == 0
    again = (run_dir / "findings.md").read_text()  # redrawn from the stored tables alone; it names its command
    assert again.replace(f"`ibkit plot {run_dir}`", "CMD") == re.sub(r"`ibkit run [^`]*`", "CMD", text)
