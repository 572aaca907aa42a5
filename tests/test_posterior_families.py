"""A tiny CPU run of the posterior-families experiment: the table, three figures and the generated findings."""

import pandas as pd
import pytest

TINY = ["--set", "epochs=2", "--set", "hidden=16", "--set", "latent_dim=3", "--set", "iwae_k=20",
        "--set", "eval_rows=40", "--set", "correlation_k=50", "--set", "amortization_steps=20"]


@pytest.fixture(scope="module")
def run_dir(run_experiment):
    return run_experiment("posterior-families", TINY)


def test_table_figures_findings(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv")
    assert sorted(runs["posterior"]) == ["diagonal", "full", "iaf"] and (runs["status"] == "ok").all()
    assert (runs["q_correlation"][runs["posterior"] == "diagonal"] == 0).all()
    assert (runs["q_correlation"][runs["posterior"] != "diagonal"] > 0).all()
    pd.testing.assert_series_equal(runs["rate"], runs["index_information"] + runs["marginal_kl"],
                                   check_names=False, rtol=1e-6)
    assert ((runs["amortization_gap"] - (runs["elbo_optimised"] - runs["elbo_amortised"])).abs() < 1e-6).all()
    assert (runs["ess"] <= 50).all() and (runs["ess"] >= 1).all()
    for name in ("elbo_gap_by_family", "posterior_correlation", "amortization_gap"):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    findings = (run_dir / "findings.md").read_text()
    assert "## β = 1" in findings and "full minus diagonal" in findings and "iaf minus diagonal" in findings
