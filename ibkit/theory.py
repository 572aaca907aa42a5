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
    """
    check_number("latent_dim", latent_dim, low=1, integer=True)
    check_number("sigma", sigma, low=0, low_open=True)
    check_number("power", power, low=0)
    return 0.5 * latent_dim * math.log1p(power / sigma**2)


def ppca_max_log_likelihood(x, latent_dim: int) -> float:
    """The maximum mean log-likelihood of probabilistic PCA with ``latent_dim`` factors on the rows of x [N, D]
    (Tipping & Bishop 1999, eq. 8 and 15): L_max / N = -1/2 [D ln 2 pi + sum_{j<=k} ln lambda_j
    + (D - k) ln sigma^2 + D], lambda the eigenvalues of the sample covariance (largest first) and sigma^2 the
    mean of the D - k discarded ones. A linear VAE with a diagonal posterior reaches it (Lucas et al. 2019)."""
    x = check_data(x).double()
    check_number("latent_dim", latent_dim, low=1, high=x.shape[1] - 1, integer=True)
    xc = x - x.mean(0)
    lam = torch.linalg.eigvalsh(xc.T @ xc / len(x)).flip(0)
    d, k = x.shape[1], latent_dim
    return float(-0.5 * (d * math.log(2 * math.pi) + lam[:k].log().sum() + (d - k) * lam[k:].mean().log() + d))
