"""Shared fixtures: the digits data, small models and sources built by factories, and a tiny command-line run of an
experiment into a temporary folder.

- ``tiny_vae(**overrides)``: a small VAE, ``ibkit.build_model("vae", 64, 2, hidden=(16,), seed=0)`` with any config
  field overridden (``tiny_vae(latent_dim=4, posterior="full", beta=4.0)``).
- ``photographs``: two 64x64 crops of scikit-learn's sample photographs, [2, 3*64*64] in [0, 1].
- ``gaussian_source(**overrides)``: a small linear-Gaussian source, ``ibkit.data.load("gaussian", n_train=200,
  n_test=200)`` (D=8, k=2, sigma=0.5, seed 0: the loader's defaults) with any option overridden; ``.truth`` is its
  ``LinearGaussianChain``.

Both build afresh on every call (nothing is cached: a test may train or change what it gets); a test that needs the
same trained model in several tests builds it once in a module-scoped fixture of its own.
"""

import pytest

import ibkit
from ibkit.cli import main

TINY_VAE = dict(input_dim=64, latent_dim=2, hidden=(16,), seed=0)  # digits' width; every other field the default
GAUSSIAN_SOURCE = dict(n_train=200, n_test=200)  # input_dim, latent_dim, noise and seed: load_gaussian's defaults


@pytest.fixture(scope="session")
def photographs():
    """Two 64x64 crops of scikit-learn's sample photographs (china.jpg, flower.jpg), the real RGB images the image
    adapters' tests measure: [2, 3*64*64] float32 in [0, 1], channels first."""
    import torch
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images  # uint8 [427, 640, 3] each
    crops = [china[200:264, 300:364], flower[150:214, 250:314]]
    return torch.stack([torch.as_tensor(c).permute(2, 0, 1).flatten() for c in crops]).float() / 255


@pytest.fixture(scope="session")
def digits():
    """The digits dataset (scikit-learn's 8x8 digits, binarised)."""
    return ibkit.data.load("digits")


@pytest.fixture(scope="session")
def tiny_vae():
    """tiny_vae(**overrides) -> an untrained VAE: ``ibkit.build_model("vae", **{**TINY_VAE, **overrides})``.

    Args (of the factory):
        **overrides: input_dim, latent_dim and any field of ``VAEConfig`` (hidden, seed, beta, posterior,
            likelihood, network, ...). The defaults: input_dim=64 (digits), latent_dim=2, hidden=(16,), seed=0.

    Returns:
        the factory; each call builds a new model, its weights drawn from ``seed``.
    """

    def make(**overrides):
        options = {**TINY_VAE, **overrides}
        return ibkit.build_model("vae", options.pop("input_dim"), options.pop("latent_dim"), **options)

    return make


@pytest.fixture(scope="session")
def gaussian_source():
    """gaussian_source(**overrides) -> a ``LinearGaussianDataset``: ``ibkit.data.load("gaussian", **{**GAUSSIAN_SOURCE,
    **overrides})``, its generating chain at ``.truth``.

    Args (of the factory):
        **overrides: any option of ``load_gaussian`` (input_dim, latent_dim, noise, n_train, n_test, seed,
            eigenvalues, latent_dims, layer_noise). The defaults: 200 train and 200 test rows; the loader's own
            D=8, k=2, sigma=0.5, seed 0 for the rest.

    Returns:
        the factory; each call samples a new dataset (the same rows for the same options).
    """

    def make(**overrides):
        return ibkit.data.load("gaussian", **{**GAUSSIAN_SOURCE, **overrides})

    return make


@pytest.fixture(scope="module")
def run_experiment(tmp_path_factory):
    """run_experiment(name, args) -> the folder of `ibkit run NAME --quick --out DIR ARGS`, asserted to succeed."""

    def run(name: str, args: list[str]):
        out = tmp_path_factory.mktemp(name) / "run"
        assert main(["run", name, "--quick", "--out", str(out), *args]) == 0
        return out

    return run
