"""Linear-Gaussian sources with known answers: ``load("gaussian")``.

x = W z + b + sigma eps (probabilistic PCA), or with ``latent_dims=(d1, d2)`` the two-layer z2 -> z1 -> x. Every
joint is Gaussian, so log p(x), h(X), I(X;Z) per layer and the exact posterior are closed forms, and estimators run
on these data can be checked against true answers (``ds.truth``).

- ``chain.py``: ``LinearGaussianChain``, the one closed form, z_L -> ... -> z_1 -> x (one link: probabilistic PCA).
- ``posteriors.py``: ``TwoLayerPosteriors``, the exact posterior of two links factored into diagonal Gaussians.
- ``samplers.py``: the chains ``load_gaussian`` draws, and rows of x.
- ``dataset.py``: ``LinearGaussianDataset``, the rows with ``truth``, the chain behind them.

The VAEs built on the generating decoder (to train an encoder against a known posterior) are in
``ibkit.models.generating``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ibkit.checks import check_number
from ibkit.data._split import check_seed
from ibkit.data.gaussian.chain import LinearGaussianChain, LinearGaussianModel, TwoLayerGaussianModel
from ibkit.data.gaussian.dataset import GaussianSourceDataset, LinearGaussianDataset, TwoLayerGaussianDataset
from ibkit.data.gaussian.posteriors import TwoLayerPosteriors
from ibkit.data.gaussian.samplers import axis_aligned_chain, gaussian_chain, sample, spectrum_chain

_DEFAULT_LATENT_DIM = 2  # load_gaussian's latent_dim; latent_dims refuses any other latent_dim beside it


def _latent_dims(latent_dims, latent_dim: int, eigenvalues) -> tuple[int, ...]:
    """The latent widths, nearest the data first: (latent_dim,) when ``latent_dims`` is None, else ``latent_dims``
    checked (one or two integers >= 1, with neither a latent_dim other than the default nor eigenvalues)."""
    if latent_dims is None:
        return (int(latent_dim),)
    if isinstance(latent_dims, (str, bytes)) or not isinstance(latent_dims, Sequence):
        raise ValueError(
            f"latent_dims={latent_dims!r} must be a tuple of integers: (d1,) for one latent layer or (d1, d2) for two"
        )
    if len(latent_dims) not in (1, 2):
        raise ValueError(
            f"latent_dims={tuple(latent_dims)!r} has {len(latent_dims)} entries; allowed are (d1,) for one latent "
            "layer or (d1, d2) for two (z1 nearest the data)"
        )
    for i, d in enumerate(latent_dims):
        check_number(f"latent_dims[{i}]", d, low=1, integer=True)
    dims = tuple(int(d) for d in latent_dims)
    if latent_dim != _DEFAULT_LATENT_DIM:
        raise ValueError(
            f"latent_dims={dims} and latent_dim={latent_dim!r} both set the latent width; pass only latent_dims "
            "(latent_dims=(k,) is latent_dim=k)"
        )
    if eigenvalues is not None:
        raise ValueError(
            f"latent_dims={dims} cannot be combined with eigenvalues, which define a one-layer source; pass "
            "latent_dim=k with eigenvalues, or latent_dims without them"
        )
    return dims


def load_gaussian(
    *,
    input_dim: int | None = None,
    latent_dim: int = _DEFAULT_LATENT_DIM,
    noise: float | None = None,
    n_train: int = 5000,
    n_test: int = 5000,
    seed: int = 0,
    eigenvalues=None,
    latent_dims: tuple[int, ...] | None = None,
    layer_noise: float | None = None,
) -> LinearGaussianDataset:
    """Linear-Gaussian data x = W z + b + sigma eps with W ~ N(0, 1) [D, k], b ~ N(0, 1) [D].

    Args:
        input_dim: D; 8 when None (or len(eigenvalues) when those are given).
        latent_dim: k, the dimension of z.
        noise: sigma > 0; 0.5 when None (or sqrt(min(eigenvalues)) when those are given).
        n_train: rows sampled for the train split.
        n_test: rows sampled for the test split.
        seed: all randomness (W, b, rotation, samples) comes from ``np.random.default_rng(seed)``.
        eigenvalues: (l_1..l_D) > 0: instead a source with covariance C = Q diag(l) Q^T for a random rotation Q,
            b = 0: sigma^2 = min(l) and W = Q[:, :k] diag(sqrt(l_i - sigma^2)) for the k largest; the other D - k
            eigenvalues must equal min(l) (an isotropic noise floor).
        latent_dims: (d1, d2): instead two latent layers, z2 ~ N(0, I_{d2}), z1 = A z2 + s1 eps1,
            x = W z1 + b + s eps with s = noise, z1 nearest the data. W = Q[:, :d1] diag(w) for a random rotation Q
            and w ~ U[0.5, 2.5] (orthogonal columns; needs d1 <= D), A [d1, d2] zero but for A[j, j] = a_j ~
            U[0.8, 2.0], j < min(d1, d2), b ~ N(0, 1): so every factor of the exact posterior is diagonal. (k,) is
            latent_dim=k; not with latent_dim or eigenvalues.
        layer_noise: s1 > 0, the standard deviation of z1 given z2 (two layers only); 0.5 when None.

    Returns:
        A ``LinearGaussianDataset`` (train and test rows, likelihood "gaussian") whose ``truth`` is the chain.
    """
    check_number("latent_dim", latent_dim, low=1, integer=True)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        check_number(name, value, low=1, integer=True)
    check_seed(seed)
    if input_dim is not None:
        check_number("input_dim", input_dim, low=1, integer=True)
    if noise is not None:
        check_number("noise", noise, low=0, low_open=True)
    dims = _latent_dims(latent_dims, latent_dim, eigenvalues)
    if layer_noise is not None:
        check_number("layer_noise", layer_noise, low=0, low_open=True)
        if len(dims) != 2:
            raise ValueError(
                f"layer_noise={layer_noise!r} is the noise between two latent layers but this source has one; "
                "pass latent_dims=(d1, d2) or leave layer_noise unset"
            )
    rng = np.random.default_rng(int(seed))
    sigma = float(noise if noise is not None else 0.5)
    if len(dims) == 2:
        s1 = float(layer_noise if layer_noise is not None else 0.5)
        chain = axis_aligned_chain(dims, int(input_dim or 8), (sigma, s1), rng)
        split = f"sampled {int(n_train):,}/{int(n_test):,}"
    else:
        if eigenvalues is None:
            chain = gaussian_chain(int(input_dim or 8), dims[0], sigma, rng)
        else:
            chain = spectrum_chain(eigenvalues, dims[0], rng, input_dim=input_dim, noise=noise)
        split = f"sampled {int(n_train):,}/{int(n_test):,} (seed {seed})"
    train = sample(chain, int(n_train), rng)
    test = sample(chain, int(n_test), rng)
    return LinearGaussianDataset(name="gaussian", train=train, test=test, likelihood="gaussian", truth=chain,
                                 provenance={"split": split})


__all__ = [
    "GaussianSourceDataset",
    "LinearGaussianChain",
    "LinearGaussianDataset",
    "LinearGaussianModel",
    "TwoLayerGaussianDataset",
    "TwoLayerGaussianModel",
    "TwoLayerPosteriors",
    "load_gaussian",
    "sample",
]
