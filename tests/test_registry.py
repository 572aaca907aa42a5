"""ibkit.registry: one registry idiom for every extension point."""

from __future__ import annotations

import types

import pytest

import ibkit
from ibkit.registry import DATASETS, LIKELIHOODS, MODELS, POSTERIORS, Registry, experiment


def test_the_built_in_names_are_registered_in_order():
    assert list(MODELS) == ["ae", "hvae", "interleaved_ae", "noisy_ae", "periodic_ae", "sparse_ae", "vae"]
    assert list(DATASETS) == ["digits", "mnist", "fashion_mnist", "gaussian", "images", "cifar10"]
    assert list(POSTERIORS) == ["diagonal", "full", "iaf"] and list(LIKELIHOODS) == ["bernoulli", "gaussian"]
    assert DATASETS.info("mnist")["image_shape"] == (1, 28, 28) and DATASETS.info("gaussian")["image_shape"] is None
    assert MODELS.info("vae")["label"] == "VAE" and MODELS["vae"] is ibkit.models.VAE


def test_an_unknown_name_is_refused_with_the_registered_ones():
    with pytest.raises(ValueError, match="posterior='flow' is not a registered posterior family; registered: "
                                         "diagonal, full, iaf \\(add one with @ibkit.registry.register_posterior\\)"):
        POSTERIORS["flow"]
    registry = Registry("thing", "name", "@register_thing")
    registry.add("one", 1, colour="red")
    assert list(registry) == ["one"] and "one" in registry and registry["one"] == 1
    assert registry.info("one") == {"colour": "red"} and registry.info("two") == {}
    with pytest.raises(ValueError, match="thing name 'two words' must be a name of letters"):
        registry.add("two words", 2)
    registry.remove("one")
    assert len(registry) == 0


def test_an_experiment_module_is_checked_against_the_protocol(monkeypatch):
    assert experiment("rate-distortion").NAME == "rate-distortion"

    class Point:
        name, value = "broken", "broken_study"

        @staticmethod
        def load():
            return types.ModuleType("broken_study")

    monkeypatch.setattr("ibkit.registry.experiments", lambda: {"broken": Point})
    with pytest.raises(ValueError, match="experiment 'broken' \\(broken_study\\) lacks NAME, SUMMARY, Config, QUICK, "
                                         "run, plot"):
        experiment("broken")
