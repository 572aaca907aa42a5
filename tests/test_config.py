"""ibkit.config: the one validator, the training and experiment configs, the --set text and RunSpec."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ibkit
from experiments import layer_information, posterior_families, rate_distortion
from ibkit.config import (
    ExperimentConfig,
    RunSpec,
    TrainingConfig,
    config_help,
    parse_overrides,
    setting,
)


def test_training_config_checks_each_field_with_the_message_of_its_metadata():
    assert TrainingConfig() == TrainingConfig(epochs=10, batch_size=128, lr=1e-3, seeds=(0,), device="auto")
    for bad, message in [(dict(epochs=0), "epochs=0 must be >= 1"), (dict(lr=0.0), "lr=0.0 must be > 0"),
                         (dict(epochs=2.0), "epochs=2.0 must be an integer, e.g. 2"),
                         (dict(seeds=()), r"seeds=\(\) is empty; give at least one value"),
                         (dict(seeds=(0, -1)), r"seeds\[1\]=-1 must be >= 0"),
                         (dict(log="wandb"), "log='wandb' is not known; choose one of: none, tensorboard"),
                         (dict(device="tpu"), "device='tpu' is not a device"),
                         (dict(batched="yes"), "batched='yes' must be True or False")]:
        with pytest.raises(ValueError, match=message):
            TrainingConfig(**bad)


def test_values_are_normalised_lists_to_tuples_ints_to_floats():
    config = rate_distortion.Config(betas=[1, 2], seeds=[3])
    assert config.betas == (1.0, 2.0) and isinstance(config.betas[0], float) and config.seeds == (3,)


def test_defaults_change_a_shared_field_in_place_keeping_its_checks_and_help():
    """layer-information trains 100 epochs of (64, 64) networks by default; the fields stay where ExperimentConfig
    puts them, with their help and checks."""
    assert layer_information.Config().epochs == 100 and layer_information.Config().hidden == (64, 64)
    assert rate_distortion.Config().epochs == 150 and rate_distortion.Config().hidden == (128, 128)
    assert posterior_families.Config().curves and not rate_distortion.Config().curves
    names = [f.name for f in dataclasses.fields(layer_information.Config)]
    assert names[:len(dataclasses.fields(ExperimentConfig))] == [f.name for f in dataclasses.fields(ExperimentConfig)]
    epochs = next(f for f in dataclasses.fields(layer_information.Config) if f.name == "epochs")
    assert epochs.metadata["help"] == "passes over the training split"
    with pytest.raises(ValueError, match="epochs=0 must be >= 1"):
        layer_information.Config(epochs=0)
    with pytest.raises(ValueError, match="defaults names 'epoch', which is no inherited field"):
        type("Bad", (ExperimentConfig,), {"__annotations__": {}}, defaults=dict(epoch=3))


def test_an_experiment_config_knows_its_data_and_its_networks():
    with pytest.raises(ValueError, match="dataset='cifar' is not known; choose one of: digits, mnist, "
                                         "fashion_mnist, gaussian, images, cifar10"):
        rate_distortion.Config(dataset="cifar")
    with pytest.raises(ValueError, match="dataset='gaussian' is not known; choose one of: digits, mnist"):
        layer_information.Config(dataset="gaussian")
    with pytest.raises(ValueError, match="network='conv' needs image data \\(dataset digits or mnist or "
                                         "fashion_mnist or cifar10\\); got dataset='gaussian'"):
        rate_distortion.Config(dataset="gaussian", network="conv")
    assert rate_distortion.Config(network="conv", channels=(4,)).network_fields() == {"network": "conv",
                                                                                      "channels": (4,)}
    assert rate_distortion.Config().network_fields() == {}
    fields = rate_distortion.Config(dataset="cifar10", network="conv", channels=(4,)).network_fields()
    assert fields == {"network": "conv", "channels": (4,), "image_shape": (3, 32, 32)}  # RGB: not read from D alone
    model = ibkit.build_model("vae", 3 * 32 * 32, 2, hidden=(8,), **fields)
    assert model(torch.rand(2, 3 * 32 * 32)).loss.shape == (2,)  # the conv network sees [N, 3, 32, 32]
    training = rate_distortion.Config(epochs=7, lr=0.01).training
    assert type(training) is TrainingConfig and (training.epochs, training.lr, training.seeds) == (7, 0.01, (0, 1, 2))


def test_set_text_is_typed_and_checked_and_help_reads_the_metadata():
    assert parse_overrides(rate_distortion.Config, ["betas=0.1,1", "scale=none", "batched=no", "epochs=3"]) == \
        dict(betas=(0.1, 1.0), scale=None, batched=False, epochs=3)
    with pytest.raises(ValueError, match="--set seeds='1.5': expected int"):
        parse_overrides(rate_distortion.Config, ["seeds=1.5"])
    with pytest.raises(ValueError, match="--set beta: unknown config key; valid keys: epochs, batch_size"):
        parse_overrides(rate_distortion.Config, ["beta=1"])
    text = config_help(rate_distortion.Config)
    assert "  epochs (int; default 150): passes over the training split" in text
    assert "  scale (float or none; default none): gaussian, or grey pixels: every model's fixed decoder std s" in text
    assert "  conv_betas (floats (a,b,...); default none given): a conv VAE beta sweep" in text


def test_a_field_declared_with_setting_is_checked_like_the_built_in_ones():
    @dataclasses.dataclass(frozen=True)
    class Grid(ExperimentConfig):
        widths: tuple[int, ...] = setting((2, 4), "latent widths", low=1, nonempty=True)
        family: str = setting("diagonal", "posterior family", choices=("diagonal", "full"))

    assert Grid().widths == (2, 4)
    with pytest.raises(ValueError, match=r"widths\[0\]=0 must be >= 1"):
        Grid(widths=(0,))
    with pytest.raises(ValueError, match=r"widths=\(\) is empty"):
        Grid(widths=())
    with pytest.raises(ValueError, match="family='iaf' is not known; choose one of: diagonal, full"):
        Grid(family="iaf")
    with pytest.raises(ValueError, match="widths=3 must be a tuple of ints"):
        Grid(widths=3)


def test_run_spec_names_builds_and_checks_its_run():
    spec = RunSpec("vae", dict(latent_dim=8, hidden=(16,), beta=0.5), seed=2)
    assert spec.run_id == "vae-d8-beta0.5-seed2"
    assert RunSpec("vae", dict(latent_dim=8, beta=1.0, posterior="iaf")).run_id == "vae-iaf-d8-beta1.0-seed0"
    assert RunSpec("noisy_ae", dict(latent_dim=8, noise=0.2, code_bound="tanh")).run_id == \
        "noisy_ae-d8-noise0.2-boundtanh-seed0"
    assert RunSpec("vae", dict(latent_dim=8, beta=1.0, posterior="full"), label="frozen").run_id == \
        "vae-full-d8-beta1.0-frozen-seed0"
    assert (spec.get("beta"), spec.get("posterior"), spec.get("noise", -1.0), spec.get("seed")) == \
        (0.5, "diagonal", -1.0, 2)
    import ibkit

    ds = ibkit.data.load("digits")
    model = spec.build(ds)
    assert (model.config.beta, model.config.seed, model.config.input_dim) == (0.5, 2, ds.input_dim)
    spec.check_built(model)
    with pytest.raises(ValueError, match=r"the built model differs from its spec: beta=1.0 \(spec: 0.5\)"):
        spec.check_built(ibkit.build_model("vae", ds.input_dim, 8, hidden=(16,), seed=2))
    columns = spec.columns()
    assert (columns["kind"], columns["latent_dim"], columns["knobs"]["beta"], columns["seed"]) == ("vae", 8, 0.5, 2)
    with pytest.raises(ValueError, match="kind='gan' is not a registered model kind"):
        RunSpec("gan", {})
    assert spec.batch_key() == RunSpec("vae", dict(latent_dim=8, hidden=(16,), beta=4.0), seed=0).batch_key()
    assert spec.batch_key() != RunSpec("vae", dict(latent_dim=8, hidden=(32,), beta=0.5), seed=2).batch_key()
