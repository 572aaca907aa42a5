"""A tiny CPU run of the information-flow experiment: every table, figure and the generated findings."""

import math
import re

import pandas as pd
import pytest

from ibkit.cli import main

TINY = ["--set", "epochs=2", "--set", "hidden=16", "--set", "latent_dim=3", "--set", "probe_sigmas=1,0.01,0.0001",
        "--set", "betas=0.5"]


@pytest.fixture(scope="module")
def run_dir(run_experiment):
    return run_experiment("information-flow", TINY)


def test_tables(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv")
    # AE d=1, AE d=8, sparse AE, noisy AE tanh and unbounded, VAE: 6 runs, train and test
    assert len(runs) == 12 and (runs["status"] == "ok").all()
    test = runs[runs["split"] == "test"].set_index("run_id")
    det = test[test["kind"].isin(["ae", "sparse_ae"])]
    assert det["rate"].isna().all() and (det["probe_sigma"] == 1e-4).all()
    assert (det["mi_lower"] <= det["log_n"] + 1e-9).all()
    noisy = test[test["kind"] == "noisy_ae"]
    tanh = noisy[noisy["code_bound"] == "tanh"]
    # the noisy AE's channel capacity has its own column; ``capacity`` is the VAEs' KL-capacity knob (NaN here)
    assert tanh["channel_capacity"].iloc[0] == pytest.approx(1.5 * math.log(1 + 1 / 0.2**2))
    assert noisy[noisy["code_bound"] != "tanh"]["channel_capacity"].isna().all() and test["capacity"].isna().all()
    vae = test[test["kind"] == "vae"].iloc[0]
    assert 0 <= vae["mi_upper"] <= vae["rate"] + 1e-9 and vae["mi_lower"] <= vae["log_n"]
    assert test["label_accuracy"].min() >= 0 and test["label_accuracy"].max() <= 1
    assert (test["label_mi_noise"] > 0).all()
    # a deterministic code: no upper bound on I(X;Z), a finite one through its probe, at most the probe's capacity
    assert (det["mi_upper"] == math.inf).all() and (det["probe_upper"] >= det["mi_lower"] - 0.1).all()
    curves = pd.read_csv(run_dir / "probe_curve.csv")
    assert len(curves) == 6 * 3 and set(curves["sigma"]) == {1.0, 0.01, 0.0001}
    assert (curves["upper"] <= curves["capacity"]).all() and (curves["upper"] >= 0).all()
    kl = pd.read_csv(run_dir / "kl_per_dim.csv")
    assert len(kl) == 3 and kl["kl"].sum() == pytest.approx(vae["rate"], rel=1e-4)


def test_figures_and_findings(run_dir):
    for name in ("information_vs_probe_noise", "information_vs_distortion", "kl_per_dim"):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    findings = (run_dir / "findings.md").read_text()
    assert "AE d=1: through a probe of σ = 0.0001" in findings
    assert "noisy AE σ=0.2 tanh" in findings and "capacity bound 4.89" in findings
    (run_dir / "findings.md").unlink()
    assert main(["plot", str(run_dir)]) == 0  # regenerated from the stored tables
    again = (run_dir / "findings.md").read_text()  # the same, but for the command that wrote it
    assert again.replace(f"`ibkit plot {run_dir}`", "CMD") == re.sub(r"`ibkit run [^`]*`", "CMD", findings)


def test_resume_keeps_the_side_tables(run_dir):
    before = {name: pd.read_csv(run_dir / name) for name in ("runs.csv", "probe_curve.csv", "kl_per_dim.csv")}
    assert main(["run", "information-flow", "--quick", "--out", str(run_dir), *TINY]) == 0  # nothing to redo
    for name, table in before.items():
        pd.testing.assert_frame_equal(pd.read_csv(run_dir / name), table)


def test_table_keeps_bounded_and_unbounded_noisy_aes_apart(run_dir):
    from ibkit.results import load
    from ibkit.tables import format_table

    rows = [line for line in format_table(load(run_dir), "markdown").splitlines() if line.startswith("| noisy AE")]
    assert len(rows) == 2 and any("tanh" in r for r in rows)


def test_figures_draw_into_the_given_axes(run_dir):
    """The experiment's figures, drawn into axes the caller laid out (a notebook's own figure)."""
    import matplotlib.pyplot as plt

    from experiments.information_flow.figures import information_vs_distortion, information_vs_probe_noise, kl_per_dim
    from ibkit.results import load, side_table

    curves = side_table(run_dir, "probe_curve")
    fig, axes = plt.subplots(1, 4, sharex=True, sharey=True)
    assert information_vs_probe_noise(curves, axes=axes) is fig
    assert [ax.get_title() for ax in axes] == ["deterministic AE", "sparse AE", "noisy AE", "VAE"]
    assert all(ax.xaxis_inverted() and ax.get_ylim()[0] < 0 < ax.get_ylim()[1] for ax in axes)  # 0 in view
    fig, (left, right) = plt.subplots(1, 2)
    assert information_vs_distortion(load(run_dir), ax=left) is fig and left.get_legend() is not None
    assert kl_per_dim(side_table(run_dir, "kl_per_dim"), ax=right) is fig and right.get_title()
    plt.close("all")


def test_findings_never_call_a_negative_leave_one_out_estimate_the_tighter_bound(run_dir):
    """A VAE whose LOO estimate fell below 0 in one seed (a collapsed code: Monte Carlo noise around 0): the
    findings say the rate is the bound there, never 'LOO -1.9e-05 (the tighter upper bound: LOO)'."""
    from experiments.information_flow.findings import _vae_lines

    vae = pd.DataFrame(dict(kind="vae", beta=4.0, latent_dim=3, seed=[0, 1], rate=[4e-5, 5e-5], loo=[-1.9e-5, 2e-5],
                            mi_lower=[-1e-5, 1e-5], mi_upper=[4e-5, 2e-5], mi_lower_se=1e-5, mi_upper_se=1e-5,
                            distortion=40.0, active_units=0, label="VAE β=4"))
    (line,) = _vae_lines(vae)
    assert "LOO below 0 (Monte Carlo noise, no bound) in 1 seed" in line and "tighter upper bound: mixed" in line
    vae["loo"] = [-1.9e-5, -2e-5]
    assert "the tighter upper bound: the rate" in _vae_lines(vae)[0]


def test_findings_read_label_information_below_its_noise_floor_as_none():
    from experiments.information_flow.findings import _label_lines

    ok = pd.DataFrame(dict(label=["VAE β=4", "VAE β=4", "AE d=8"], label_accuracy=[0.13, 0.12, 0.87],
                           label_chance=0.13, label_mi_max=[0.08, 0.09, 0.63], label_mi_noise=[0.10, 0.10, 0.10]))
    lines = _label_lines(ok)
    assert lines[-2].startswith("- AE d=8: accuracy 0.87") and "largest I(z_k; label) 0.63" in lines[-2]
    assert lines[-1] == ("- VAE β=4: accuracy 0.1250 ± 0.0050; no dimension's I(z_k; label) is told apart from 0 "
                         "(the largest, 0.08, below the noise floor 0.10 in every seed)")
