"""Closed forms the measurements are held against. Each cites its derivation."""

from __future__ import annotations

import math

from ibkit.checks import check_number


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
