"""``ibkit.models.generating``: VAEs on the generating decoder of a linear-Gaussian source. How they train and what
they measure is tested in test_posteriors.py (one layer) and test_hvae.py (two); here, what they are built from."""

import math

import pytest
import torch

import ibkit
from ibkit.models.generating import generating_hvae, generating_vae


@pytest.fixture(scope="module")
def one(gaussian_source):
    return gaussian_source(n_train=20, n_test=20)


@pytest.fixture(scope="module")
def two(gaussian_source):
    return gaussian_source(latent_dims=(3, 2), n_train=20, n_test=20)


def test_vae_from_the_chain_or_the_dataset_is_the_same(one):
    a, b = generating_vae(one, "full", hidden=(8,), seed=1), generating_vae(one.truth, "full", hidden=(8,), seed=1)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert torch.equal(a.decoder[0].weight, one.W) and torch.equal(a.decoder[0].bias, one.b)
    assert a.likelihood.log_scale.item() == pytest.approx(math.log(one.noise))
    assert a.config.posterior == "full" and a.config.hidden == (8,) and a.config.decoder_hidden == ()


def test_hvae_holds_the_generating_prior_frozen(two):
    m = generating_hvae(two, "bottom_up", seed=0)
    prior = m.get_submodule("priors.0.0")
    assert torch.equal(prior.weight[:3], two.A) and not prior.weight.requires_grad
    assert torch.equal(m.decoder[0].weight, two.W)
    assert all(p.requires_grad for p in m.encoder.parameters())


def test_each_builder_needs_its_depth(one, two):
    with pytest.raises(ValueError, match=r"generating_vae needs a source with 1 latent layer; .*latent_dims=\(3, 2\) "
                                         r"\(use generating_hvae\)"):
        generating_vae(two, "diagonal")
    with pytest.raises(ValueError, match=r"generating_hvae needs a source with 2 latent layers; .*generating_vae"):
        generating_hvae(one, "top_down")
    with pytest.raises(ValueError, match=r"generating_vae needs a linear-Gaussian source.*got Dataset"):
        generating_vae(ibkit.data.load("digits"), "diagonal")
