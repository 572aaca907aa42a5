"""Drawing linear-Gaussian sources: the parameters of the chains ``load_gaussian`` builds, and rows of x.

Everything random comes from one ``numpy.random.Generator``, drawn in a fixed order, so a seed gives the same chain
and the same rows on every machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ibkit.data.gaussian.chain import LinearGaussianChain


def sample(chain: LinearGaussianChain, n: int, rng: np.random.Generator) -> Tensor:
    """n rows of x drawn ancestrally: z_L ~ N(0, I), then z_{l-1} = W_l z_l (+ b for x) + s_{l-1} eps down the
    links, each step's noise drawn after its parent, in float64 from the chain's float32 parameters (so the rows
    follow the float32 model exactly).

    Args:
        chain: the source.
        n: the number of rows.
        rng: where every draw comes from.

    Returns:
        x [n, D] float32.
    """
    z = rng.standard_normal((n, chain.latent_dims[-1]))  # [n, d_L]
    for link in range(chain.depth, 0, -1):
        W = chain.weights[link - 1].numpy().astype(np.float64)  # [d_{link-1}, d_link]
        mean = z @ W.T
        if link == 1:
            mean = mean + chain.offset.numpy().astype(np.float64)
        z = mean + chain.noises[link - 1] * rng.standard_normal((n, W.shape[0]))  # [n, d_{link-1}]
    return torch.from_numpy(z.astype(np.float32))


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix [d, d]: QR of a Gaussian matrix with R's diagonal made positive."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _chain(weights: list[np.ndarray], b: np.ndarray, noises: list[float]) -> LinearGaussianChain:
    """The chain with float32 copies of numpy parameters."""
    return LinearGaussianChain(tuple(torch.from_numpy(W.astype(np.float32)) for W in weights),
                               torch.from_numpy(b.astype(np.float32)), tuple(noises))


def gaussian_chain(D: int, k: int, sigma: float, rng: np.random.Generator) -> LinearGaussianChain:
    """One link with W ~ N(0, 1) [D, k], then b ~ N(0, 1) [D], and noise sigma."""
    W = rng.standard_normal((D, k))
    b = rng.standard_normal(D)
    return _chain([W], b, [sigma])


def spectrum_chain(
    eigenvalues, k: int, rng: np.random.Generator, input_dim: int | None, noise: float | None
) -> LinearGaussianChain:
    """One link whose covariance has the given spectrum: sigma^2 = min(l), W = Q[:, :k] diag(sqrt(l_i - sigma^2))
    for the k largest l_i and a random rotation Q [D, D], b = 0.

    Args:
        eigenvalues: (l_1, ..., l_D) > 0; the D - k smallest must equal min(l), the isotropic noise floor.
        k: the latent width.
        rng: draws Q.
        input_dim: D if given (it must be len(eigenvalues)).
        noise: sigma if given (it must be sqrt(min(l))).

    Returns:
        The chain, with covariance Q diag(l) Q^T.
    """
    try:
        lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    except (TypeError, ValueError):
        raise ValueError(f"eigenvalues={eigenvalues!r} must be a sequence of positive numbers") from None
    if lam.size == 0 or not np.all(np.isfinite(lam)) or lam[-1] <= 0:
        raise ValueError(f"eigenvalues={eigenvalues!r} must be a non-empty sequence of finite numbers > 0")
    D = lam.size
    if input_dim is not None and input_dim != D:
        raise ValueError(
            f"input_dim={input_dim} but {D} eigenvalues were given; pass one eigenvalue per input dimension"
        )
    if k > D:
        raise ValueError(f"latent_dim={k} exceeds the {D} eigenvalues given; choose latent_dim <= {D}")
    floor = lam[-1]
    if not np.allclose(lam[k:], floor, rtol=1e-9, atol=0):
        above = int(np.sum(~np.isclose(lam, floor, rtol=1e-9, atol=0)))
        raise ValueError(
            f"eigenvalues={eigenvalues!r} with latent_dim={k}: a linear-Gaussian source has covariance "
            f"W W^T + sigma^2 I, so its {D - k} smallest eigenvalues must all equal the noise floor "
            f"sigma^2 = min(eigenvalues) = {floor:g}; pass latent_dim={above} or make the smallest "
            f"{D - k} eigenvalues equal"
        )
    sigma = math.sqrt(floor)
    if noise is not None and not math.isclose(noise, sigma, rel_tol=1e-9):
        raise ValueError(
            f"noise={noise!r} but eigenvalues fix sigma = sqrt(min(eigenvalues)) = {sigma:g}; leave noise unset"
        )
    W = random_rotation(rng, D)[:, :k] * np.sqrt(lam[:k] - floor)
    return _chain([W], np.zeros(D), [sigma])


def axis_aligned_chain(
    dims: tuple[int, ...], D: int, noises: tuple[float, ...], rng: np.random.Generator
) -> LinearGaussianChain:
    """A chain whose exact posterior factors are all diagonal: W_1 = Q[:, :d_1] diag(w) for a random rotation Q
    [D, D] and w ~ U[0.5, 2.5] (orthogonal columns), each further W_l [d_{l-1}, d_l] zero but for W_l[j, j] ~
    U[0.8, 2.0], j < min(d_{l-1}, d_l), then b ~ N(0, 1) [D].

    Args:
        dims: (d_1, ..., d_L), nearest the data first; d_1 <= D.
        D: the width of x.
        noises: (s_0, ..., s_{L-1}), one per link.
        rng: every draw, in the order above.

    Returns:
        The chain.
    """
    if dims[0] > D:
        raise ValueError(
            f"latent_dims={dims} has d1={dims[0]} > input_dim={D}, but W [D, d1] needs orthogonal columns; "
            f"choose d1 <= {D} or a larger input_dim"
        )
    weights = [random_rotation(rng, D)[:, : dims[0]] * rng.uniform(0.5, 2.5, dims[0])]  # [D, d1]
    for rows, cols in zip(dims, dims[1:], strict=False):
        m = min(rows, cols)
        A = np.zeros((rows, cols))
        A[np.arange(m), np.arange(m)] = rng.uniform(0.8, 2.0, m)  # axis-aligned
        weights.append(A)
    b = rng.standard_normal(D)
    return _chain(weights, b, list(noises))
