"""Closed forms the measurements are held against. Each cites its derivation."""

from __future__ import annotations

import math

import torch

from ibkit.checks import check_data, check_number


def gaussian_channel_capacity(latent_dim: int, sigma: float, power: float = 1.0) -> float:
    """Capacity of d parallel Gaussian channels with noise std ``sigma`` and input power at most ``power`` each:
    C = d/2 log(1 + power / sigma^2) nats (Shannon 1948; Cover & Thomas 2006, eq. 9.16).

    A noisy AE with a tanh-bounded code has |c| <= 1, so power <= 1 per dimension and I(X;Z) <= C; the
    amplitude constraint is stricter than the power constraint, so C is an upper bound, not always attained.

    Args:
        latent_dim: d, the number of channels.
        sigma: the noise std, > 0.
        power: the input power per channel, >= 0.

    Returns:
        C in nats.
    """
    check_number("latent_dim", latent_dim, low=1, integer=True)
    check_number("sigma", sigma, low=0, low_open=True)
    check_number("power", power, low=0)
    return 0.5 * latent_dim * math.log1p(power / sigma**2)


def covariance_capacity(covariance, sigma: float) -> float:
    """The most information any input of covariance Sigma [d, d] can send through z + N(0, sigma^2 I):
    C = 1/2 log det(I + Sigma / sigma^2) = 1/2 sum_k log(1 + lambda_k / sigma^2) nats, lambda_k the eigenvalues of
    Sigma (Cover & Thomas 2006, eq. 9.163: the Gaussian maximises h(z + noise) at a given covariance).

    For any X and code Z = f(X) of covariance Sigma, I(X; Z + sigma eps) = h(Z + sigma eps) - h(sigma eps) <= C; it
    is at most d/2 log(1 + P / sigma^2) with P = tr(Sigma) / d, the code's mean power per dimension (Hadamard's
    inequality and Jensen's), so it is ``gaussian_channel_capacity`` at the measured power, or tighter.

    Args:
        covariance: Sigma [d, d], the code's covariance (a tensor or array).
        sigma: the channel's noise std, > 0.

    Returns:
        C in nats.

    Raises:
        ValueError: a covariance that is not a finite square matrix, or a sigma <= 0.
    """
    check_number("sigma", sigma, low=0, low_open=True)
    cov = torch.as_tensor(covariance, dtype=torch.float64)
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1] or not bool(torch.isfinite(cov).all()):
        raise ValueError(f"covariance must be a finite square matrix [d, d]; got shape {list(cov.shape)}")
    lam = torch.linalg.eigvalsh(0.5 * (cov + cov.T)).clamp_min(0)  # rounding can make a zero eigenvalue negative
    return float(0.5 * torch.log1p(lam / sigma**2).sum())


def ppca_max_log_likelihood(x, latent_dim: int) -> float:
    """The maximum mean log-likelihood of probabilistic PCA with ``latent_dim`` factors on the rows of x [N, D]
    (Tipping & Bishop 1999, eq. 8 and 15): L_max / N = -1/2 [D ln 2 pi + sum_{j<=k} ln lambda_j
    + (D - k) ln sigma^2 + D], lambda the eigenvalues of the sample covariance (largest first) and sigma^2 the
    mean of the D - k discarded ones. A linear VAE with a diagonal posterior reaches it (Lucas et al. 2019).

    Args:
        x: [N, D] data.
        latent_dim: k, in 1..D-1.

    Returns:
        L_max / N in nats.
    """
    x = check_data(x).double()
    check_number("latent_dim", latent_dim, low=1, high=x.shape[1] - 1, integer=True)
    xc = x - x.mean(0)
    lam = torch.linalg.eigvalsh(xc.T @ xc / len(x)).flip(0)
    d, k = x.shape[1], latent_dim
    return float(-0.5 * (d * math.log(2 * math.pi) + lam[:k].log().sum() + (d - k) * lam[k:].mean().log() + d))


def _spectrum(eigenvalues) -> list[float]:
    """The eigenvalues as floats, largest first; non-positive or non-finite ones are refused."""
    try:
        lam = sorted((float(v) for v in eigenvalues), reverse=True)
    except (TypeError, ValueError):
        raise ValueError(f"eigenvalues={eigenvalues!r} must be a sequence of positive finite numbers") from None
    if not lam or not all(math.isfinite(v) and v > 0 for v in lam):
        raise ValueError(f"eigenvalues={eigenvalues!r} must be a non-empty sequence of positive finite numbers")
    return lam


def gaussian_rd(eigenvalues, theta: float, max_dims: int | None = None) -> tuple[float, float]:
    """Shannon's rate-distortion trade-off of a Gaussian source with covariance eigenvalues lambda_i under
    squared error, by reverse water-filling at water level ``theta`` (Cover & Thomas 2006, thm. 10.3.3):
    R = sum_i 1/2 ln(lambda_i / theta) over the directions with lambda_i > theta, D = sum_i min(lambda_i, theta)
    (MSE per example, summed over dimensions). Returns (rate in nats, mse).

    max_dims=k: only the k largest directions may carry rate (a model with k latents); the others add their
    whole variance to the distortion, so the point can lie above the unconstrained curve. A linear beta-VAE
    with a fixed decoder variance s^2 reaches this point at theta = beta * s^2 (``vae_water_level``), with
    rate = I(X;Z) (its aggregate posterior is the prior).

    Args:
        eigenvalues: the source's covariance eigenvalues, positive, in any order.
        theta: the water level, > 0.
        max_dims: k, the most directions that may carry rate; None: all.

    Returns:
        (rate in nats, mse).
    """
    lam = _spectrum(eigenvalues)
    check_number("theta", theta, low=0, low_open=True)
    if max_dims is not None:
        check_number("max_dims", max_dims, low=1, integer=True)
    carried = lam[: max_dims] if max_dims is not None else lam
    rate = sum(0.5 * math.log(v / theta) for v in carried if v > theta)
    mse = sum(min(v, theta) for v in carried) + sum(lam[len(carried):])
    return rate, mse


def vae_water_level(beta: float, scale: float) -> float:
    """theta = beta * scale^2: the water level a linear beta-VAE with decoder N(Wz + b, scale^2 I) reaches
    (its loss ||x - Wz||^2 / (2 scale^2) + beta KL is, times scale^2, the Lagrangian D/2 + theta R).

    Args:
        beta: the VAE's beta, > 0.
        scale: its fixed decoder std, > 0.

    Returns:
        theta.
    """
    check_number("beta", beta, low=0, low_open=True)
    check_number("scale", scale, low=0, low_open=True)
    return beta * scale**2


def active_directions(eigenvalues, theta: float, max_dims: int | None = None) -> int:
    """How many directions carry rate at water level ``theta``: those with lambda_i > theta, at most
    ``max_dims``; a beta-VAE's active units.

    Args:
        eigenvalues: the source's covariance eigenvalues, positive.
        theta: the water level, > 0.
        max_dims: the most directions that may carry rate; None: all.

    Returns:
        the number of directions.
    """
    lam = _spectrum(eigenvalues)
    check_number("theta", theta, low=0, low_open=True)
    return min(sum(v > theta for v in lam), max_dims if max_dims is not None else len(lam))


def gaussian_rd_curve(eigenvalues, n: int = 200, max_dims: int | None = None):
    """Shannon's R(D) curve for plotting: a DataFrame of ``n`` points (theta, rate, mse), theta log-spaced from
    a thousandth of the smallest eigenvalue to the largest (where the rate reaches 0).

    Args:
        eigenvalues: the source's covariance eigenvalues, positive.
        n: the number of points, >= 2.
        max_dims: the most directions that may carry rate; None: all.

    Returns:
        a DataFrame with the columns theta, rate (nats) and mse, one row per point.
    """
    import numpy as np
    import pandas as pd

    lam = _spectrum(eigenvalues)
    check_number("n", n, low=2, integer=True)
    thetas = np.geomspace(lam[-1] / 1000, lam[0], n)
    points = [(t, *gaussian_rd(lam, float(t), max_dims)) for t in thetas]
    return pd.DataFrame(points, columns=["theta", "rate", "mse"])


def gaussian_rate_at(eigenvalues, mse: float, max_dims: int | None = None) -> float:
    """Shannon's R(D) at distortion D = ``mse`` (nats): the water level theta with D(theta) = mse found by
    bisection (D(theta) is continuous and increasing), then R(theta) (``gaussian_rd``). 0 at or beyond the total
    variance; infinite below the least distortion ``max_dims`` directions allow (the discarded variance).

    Args:
        eigenvalues: the source's covariance eigenvalues, positive.
        mse: the distortion D, >= 0.
        max_dims: the most directions that may carry rate; None: all.

    Returns:
        R(D) in nats (0 or inf at the ends).
    """
    lam = _spectrum(eigenvalues)
    check_number("mse", mse, low=0)
    floor = sum(lam[max_dims:]) if max_dims is not None else 0.0
    if mse <= floor:
        return math.inf
    if mse >= sum(lam):
        return 0.0
    lo, hi = 0.0, lam[0]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= 0 or gaussian_rd(lam, mid, max_dims)[1] < mse:
            lo = mid
        else:
            hi = mid
    return gaussian_rd(lam, hi, max_dims)[0]
