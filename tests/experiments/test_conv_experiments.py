"""`--set network=conv` in every experiment, and the rate-distortion experiment's conv VAE sweep beside its MLP
models: run ids, the network column, one curve per network on the plane, findings per network."""

import pandas as pd
import pytest

from ibkit import plots
from ibkit.cli import main
from ibkit.results import load

TINY = ["--set", "epochs=2", "--set", "betas=1", "--set", "hidden=16", "--set", "iwae_k=5", "--set", "channels=4,8"]


def test_a_conv_sweep_beside_the_mlp_models(run_experiment):
    out = run_experiment("rate-distortion", [*TINY, "--set", "betas=0.5,1", "--set", "conv_betas=0.5,2"])
    runs = load(out)
    conv = runs[runs["network"] == "conv"]
    assert set(conv["run_id"]) == {"vae-d8-netconv-beta0.5-seed0", "vae-d8-netconv-beta2.0-seed0"}
    assert set(runs.loc[runs["network"] == "mlp", "run_id"]) >= {"vae-d8-beta1.0-seed0", "ae-d8-seed0"}
    labels = [t.get_text() for t in plots.rate_distortion(runs).axes[0].get_legend().get_texts()]
    assert "VAE, MLP (beta sweep)" in labels and "VAE, conv (beta sweep)" in labels
    findings = (out / "findings.md").read_text()
    assert "- VAE β=1: " in findings and "- conv VAE β=0.5: " in findings and "- conv VAE β=2: " in findings
    comparison = findings.split("## Convolutional against MLP networks")[1].split("##")[0]
    assert "- β=0.5: ELBO, conv minus MLP, " in comparison and "β=2" not in comparison  # only the β both swept


def test_findings_compare_the_networks_seed_by_seed_and_say_how_far_each_generalises():
    from experiments.rate_distortion.findings import write_findings

    rows = []
    for seed, conv_elbo in enumerate([-100.0, -104.0, -102.0]):  # the MLP's is -110: conv minus MLP 6, 8, 10
        for net, elbo, train_d, test_d in (("conv", conv_elbo, 60.0, 90.0), ("mlp", -110.0, 70.0, 80.0)):
            for split, d in (("train", train_d), ("test", test_d)):
                rows.append(dict(kind="vae", beta=1.0, seed=seed, network=net, split=split, status="ok", rate=10.0,
                                 distortion=d, elbo=elbo, iwae=elbo + 5, mi_lower=5.0, mi_upper=10.0,
                                 active_units=4, dataset="mnist", log_n=7.6, noise=float("nan")))
    findings = write_findings(pd.DataFrame(rows))
    line = next(x for x in findings.splitlines() if x.startswith("- β=1: ELBO"))
    assert line == ("- β=1: ELBO, conv minus MLP, 8.0 ± 2.0 (the conv VAE's is higher); distortion rises from "
                    "training to test rows by 30 ± 0 (conv) and 10 ± 0 (MLP).")
    assert "## Convolutional" not in write_findings(pd.DataFrame([r for r in rows if r["network"] == "mlp"]))


def test_network_conv_makes_every_model_convolutional(run_experiment):
    out = run_experiment("rate-distortion", [*TINY, "--set", "network=conv"])
    runs = pd.read_csv(out / "runs.csv")
    assert (runs["network"] == "conv").all() and (runs["status"] == "ok").all()
    assert set(runs["kind"]) == {"ae", "sparse_ae", "noisy_ae", "vae"}


@pytest.mark.parametrize("name", ["information-flow", "layer-information", "posterior-families"])
def test_every_experiment_puts_the_network_into_its_models(name):
    from ibkit.registry import experiment

    exp = experiment(name)
    specs = exp.model_grid(exp.Config(network="conv", channels=(4, 8)))
    assert specs and all(s.config["network"] == "conv" and s.config["channels"] == (4, 8) for s in specs)
    assert all("-netconv-" in s.run_id for s in specs)
    assert not any("network" in s.config for s in exp.model_grid(exp.Config()))  # MLP run ids are as they were


@pytest.mark.parametrize("args,message", [
    (["--set", "dataset=gaussian", "--set", "network=conv"], "network='conv' needs image data"),
    (["--set", "network=cnn"], "network='cnn' is not known; choose one of: mlp, conv"),
    (["--set", "conv_betas=1", "--set", "dataset=gaussian"], "network='conv' needs image data"),
])
def test_conv_options_are_checked_before_anything_runs(tmp_path, capsys, args, message):
    assert main(["run", "rate-distortion", "--quick", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_folder_stored_before_the_network_fields_existed_still_resumes(tmp_path, capsys):
    """A reference folder's manifest from before an experiment gained a field (network, channels, conv_betas)
    resumes under the same command: a missing field counts as its default; a changed one is still refused."""
    import json

    out, args = tmp_path / "old", ["run", "rate-distortion", "--quick", *TINY[:-2]]  # channels at the default
    assert main([*args, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("network", "channels", "conv_betas"):
        del manifest["config"][key]
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    assert "4 of 4 runs already finished" in capsys.readouterr().err
    assert main([*args, "--set", "network=conv", "--out", str(out)]) == 2
    assert "holds results of another run" in capsys.readouterr().err
