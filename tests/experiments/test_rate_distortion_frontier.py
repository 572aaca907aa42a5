"""The rate-distortion experiment's frontier switch end to end on digits' grey pixels: frontier.csv, the plane
under squared error with the band, each model's rate above the envelope and the lower bound, and the findings."""

import math

import pandas as pd
import pytest

import ibkit
from ibkit.cli import main
from ibkit.frontier import COLUMNS

TINY = ["--set", "binarize=none", "--set", "scale=0.5", "--set", "betas=0.5,4", "--set", "epochs=3",
        "--set", "hidden=16", "--set", "latent_dim=4", "--set", "iwae_k=4", "--set", "eval_rows=100",
        "--set", "iwae_rows=20", "--set", "frontier=true", "--set", "frontier_lambdas=0.5,4",
        "--set", "frontier_rows=300", "--set", "frontier_steps=20", "--set", "frontier_iterations=20"]


@pytest.fixture(scope="module")
def frontier_run(run_experiment):
    return run_experiment("rate-distortion", TINY)


def test_the_frontier_is_a_side_table_with_every_method_on_both_splits(frontier_run):
    table = pd.read_csv(frontier_run / "frontier.csv")
    assert list(table.columns) == list(COLUMNS)
    slopes = table.dropna(subset=["lambda"])
    assert set(slopes["lambda"]) == {0.5, 4.0}
    for method, side in (("blahut_arimoto", "upper"), ("wgd", "upper"), ("sandwich", "lower")):
        rows = slopes[slopes["method"] == method]
        assert set(rows["side"]) == {side} and sorted(rows["split"]) == ["test", "test", "train", "train"]
    ups = table[table["side"] == "upper"]
    assert (ups["rate"] >= 0).all() and (ups["rate_low"] <= ups["rate"]).all() and \
        (ups["rate"] <= ups["rate_high"]).all()
    assert (table[table["method"] == "blahut_arimoto"]["rate"] <= math.log(300) + 1e-9).all()
    lows = table[table["side"] == "lower"]
    assert (lows["intercept_low"] <= lows["intercept"]).all() and (lows["intercept"] <= lows["intercept_high"]).all()
    constant = table[table["method"] == "constant"].set_index("split")
    variance = ibkit.data.load("digits", binarize="none").train[:300].var(0, unbiased=False).sum().item()
    assert constant.loc["train", "distortion"] == pytest.approx(variance, rel=1e-5)


def test_each_model_is_at_least_as_far_above_the_lower_bound_as_above_the_envelope(frontier_run):
    """The envelope counts each model as achievable, so no model is below it; the lower bound is below the
    envelope, so the distance above it is the larger; codes without a rate have neither."""
    runs = pd.read_csv(frontier_run / "runs.csv")
    rated = runs[runs["rate"].notna()]
    assert len(rated) == 6  # two VAEs and the noisy AE, on two splits
    assert (rated["rate_above_upper_envelope"] >= -1e-9).all()
    assert (rated["rate_above_lower_bound"] >= rated["rate_above_upper_envelope"] - 1e-9).all()
    assert runs[runs["rate"].isna()]["rate_above_upper_envelope"].isna().all()


def test_the_plane_under_squared_error_and_the_findings_are_written(frontier_run):
    for split in ("train", "test"):
        assert (frontier_run / "figures" / f"rate_distortion_mse_{split}.png").stat().st_size > 1000
    findings = (frontier_run / "findings.md").read_text()
    assert "## The data's own R(D) under squared error" in findings
    assert "- λ=0.5, train rows: Blahut–Arimoto on the training rows R <= " in findings
    assert "above the upper envelope by" in findings


def test_the_frontier_is_read_back_when_a_run_resumes(frontier_run):
    before = (frontier_run / "frontier.csv").read_text()
    assert main(["run", "rate-distortion", "--quick", "--out", str(frontier_run), *TINY]) == 0
    assert (frontier_run / "frontier.csv").read_text() == before


def test_the_plane_needs_mse_and_binarize_needs_images():
    runs = pd.DataFrame(dict(split=["test"], status=["ok"], kind=["vae"], rate=[1.0], distortion=[2.0]))
    with pytest.raises(ValueError, match="has no mse column"):
        ibkit.plots.rate_distortion(runs, frontier=pd.DataFrame(columns=list(COLUMNS)))
    config = ibkit.registry.experiment("rate-distortion").Config
    with pytest.raises(ValueError, match="binarize='none' applies to the image datasets digits, mnist"):
        config(dataset="gaussian", binarize="none")
    with pytest.raises(ValueError, match="scale=0.5 fixes a Gaussian decoder's std"):
        config(dataset="digits", scale=0.5)
