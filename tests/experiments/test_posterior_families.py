"""A tiny CPU run of the posterior-families experiment (with the frozen-decoder control, as --quick has it): the
table with its test and train rows, the side tables, the figures and the generated findings."""

import pandas as pd
import pytest
import torch

TINY = ["--set", "epochs=2", "--set", "hidden=16", "--set", "latent_dim=3", "--set", "iwae_k=20",
        "--set", "eval_rows=40", "--set", "correlation_k=50", "--set", "amortization_max_steps=200",
        "--set", "frozen_epochs=2", "--set", "train_rows=100", "--set", "min_ess=5"]


@pytest.fixture(scope="module")
def run_dir(run_experiment):
    return run_experiment("posterior-families", TINY)


def test_table_figures_findings(run_dir):
    both = pd.read_csv(run_dir / "runs.csv")
    assert (both["status"] == "ok").all() and len(both) == 12  # 3 families x 2 decoders x 2 splits
    assert sorted(both.groupby(["decoder", "split"]).size().items()) == [
        (("frozen", "test"), 3), (("frozen", "train"), 3), (("learned", "test"), 3), (("learned", "train"), 3)]
    train = both[both["split"] == "train"]
    assert train["elbo"].notna().all() and train["iwae"].notna().all() and train["q_correlation"].isna().all()
    runs = both[(both["split"] == "test") & (both["decoder"] == "learned")]
    assert sorted(runs["posterior"]) == ["diagonal", "full", "iaf"]
    assert (runs["q_correlation"][runs["posterior"] == "diagonal"] == 0).all()
    assert (runs["q_correlation"][runs["posterior"] != "diagonal"] > 0).all()
    pd.testing.assert_series_equal(runs["rate"], runs["index_information"] + runs["marginal_kl"],
                                   check_names=False, rtol=1e-6)
    assert ((runs["amortization_gap"] - (runs["elbo_optimised"] - runs["elbo_amortised"])).abs() < 1e-6).all()
    assert (runs["ess"] <= 50).all() and (runs["ess"] >= 1).all() and (runs["ess_q10"] <= runs["ess_q90"]).all()
    assert (runs["amortization_steps"] >= 100).all() and (runs["amortization_steps"] <= 200).all()
    correlations = pd.read_csv(run_dir / "correlations.csv")
    assert len(correlations) == 6 * 40 and set(correlations["decoder"]) == {"learned", "frozen"}
    reliable = correlations[correlations["reliable"]].groupby("run_id")["true_correlation"].mean()
    by_run = both[both["split"] == "test"].set_index("run_id")
    pd.testing.assert_series_equal(reliable, by_run["true_correlation"].dropna().loc[reliable.index],
                                   check_names=False)  # the table's number is the mean over its reliable rows
    history = pd.read_csv(run_dir / "history.csv")
    assert history.groupby("run_id")["epoch"].max().to_dict() == {
        r: 2 for r in both["run_id"].unique()} and history["monitor_loss"].notna().all()
    for name in ("elbo_gap_by_family", "posterior_correlation", "amortization_gap", "learning_curves"):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    findings = (run_dir / "findings.md").read_text()
    assert "## Is the diagonal posterior too crude?" in findings
    assert "- learned decoders, β = 1: full − diagonal ELBO" in findings and "on train" in findings
    assert "- frozen decoder, β = 1: iaf − diagonal ELBO" in findings
    assert "## Learned decoders, β = 1" in findings and "## Frozen decoder" in findings


def test_the_frozen_control_trains_encoders_on_the_learned_diagonal_decoder(run_dir):
    from ibkit.models import load_checkpoint

    learned = load_checkpoint(run_dir / "checkpoints" / "vae-d3-beta1.0-seed0.pt")
    for family in ("", "-full", "-iaf"):
        frozen = load_checkpoint(run_dir / "checkpoints" / f"vae{family}-d3-beta1.0-frozen-seed0.pt")
        for a, b in zip(learned.decoder.parameters(), frozen.decoder.parameters(), strict=True):
            assert torch.equal(a, b)  # frozen through training
        assert not torch.equal(learned.encoder[0].weight, frozen.encoder[0].weight)  # the encoder trained


def test_figures_draw_into_the_given_axes(run_dir):
    import matplotlib.pyplot as plt

    from experiments.posterior_families.figures import amortization_by_family, correlation_by_family, gap_by_family
    from ibkit.results import load

    runs = load(run_dir)
    fig, axes = plt.subplots(1, 3)
    for draw, ax in zip((gap_by_family, correlation_by_family, amortization_by_family), axes, strict=True):
        assert draw(runs, ax=ax) is fig
        assert ax.get_legend() is not None and ax.get_title()
    assert len(fig.axes) == 3
    plt.close(fig)


def test_every_family_has_its_own_run_id_and_checkpoint(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv")
    assert not runs.duplicated(["run_id", "split"]).any()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == [
        "vae-d3-beta1.0-frozen-seed0.pt", "vae-d3-beta1.0-seed0.pt", "vae-full-d3-beta1.0-frozen-seed0.pt",
        "vae-full-d3-beta1.0-seed0.pt", "vae-iaf-d3-beta1.0-frozen-seed0.pt", "vae-iaf-d3-beta1.0-seed0.pt"]
    assert (runs["rate_se"][runs["posterior"] != "iaf"] == 0).all()  # closed-form KL
    assert (runs["rate_se"][runs["posterior"] == "iaf"] > 0).all()  # Monte Carlo


def test_generating_decoder_setting_measures_against_the_exact_log_px(run_experiment):
    """dataset=gaussian, decoder=generating: the decoder stays the generating one, log p(x) is exact, and no
    diagonal q beats the closed-form best-diagonal cost."""
    import ibkit
    from ibkit.models import load_checkpoint

    ds = ibkit.data.load("gaussian")
    out = run_experiment("posterior-families", ["--set", "dataset=gaussian", "--set", "decoder=generating",
                                                "--set", "betas=0.5,1",
                                                "--set", "epochs=2", "--set", "hidden=16", "--set", "iwae_k=20",
                                                "--set", "eval_rows=100", "--set", "train_rows=100",
                                                "--set", "decomposition_rows=300",
                                                "--set", "correlation_k=50", "--set", "frozen_control=false",
                                                "--set", "amortization_max_steps=100"])
    both = pd.read_csv(out / "runs.csv").query("split == 'test'")
    assert len(both) == 6 and both["run_id"].is_unique and (both["decoder"] == "generating").all()
    half = both[both["beta"] == 0.5].set_index("posterior")
    assert (half["rate"] != both[both["beta"] == 1].set_index("posterior")["rate"]).all()  # beta reaches the loss
    assert load_checkpoint(out / "checkpoints" / "vae-iaf-d2-beta0.5-seed0.pt").config.beta == 0.5
    runs = both[both["beta"] == 1].set_index("posterior")
    assert (runs["status"] == "ok").all() and (runs["latent_dim"] == 2).all()
    assert runs["log_px"].iloc[0] == pytest.approx(ds.log_px(ds.test).mean().item(), rel=1e-6)
    pd.testing.assert_series_equal(runs["inference_gap"], runs["log_px"] - runs["elbo"], check_names=False)
    assert runs["best_diagonal_kl"].iloc[0] == pytest.approx(0.186, abs=0.001)
    assert runs.loc["diagonal", "inference_gap"] > 0.186 - 0.02  # KL(q || p(z|x)) of any diagonal q
    assert (runs["iwae"] <= runs["log_px"] + 0.02).all()
    for family in ("diagonal", "full", "iaf"):
        tag = "" if family == "diagonal" else f"-{family}"
        model = load_checkpoint(out / "checkpoints" / f"vae{tag}-d2-beta1.0-seed0.pt")
        torch.testing.assert_close(model.decoder[0].weight, ds.W)  # frozen through training
    findings = (out / "findings.md").read_text()
    assert "exact gap" in findings and "best diagonal q pays" in findings
    assert (out / "figures" / "elbo_gap_by_family.png").stat().st_size > 1000


def test_generating_decoder_needs_gaussian_data(capsys):
    from ibkit.cli import main

    assert main(["run", "posterior-families", "--quick", "--set", "decoder=generating"]) == 2
    assert "decoder='generating' needs dataset='gaussian'" in capsys.readouterr().err
