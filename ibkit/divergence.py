"""KL divergence between torch distributions: closed form where torch registers one, Monte Carlo otherwise."""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution, kl_divergence


def kl_or_monte_carlo(q: Distribution, p: Distribution, z: Tensor | None = None, n_samples: int = 1) -> Tensor:
    """KL(q || p) per batch element, [N] for q with batch_shape [N].

    Uses torch's registered closed form (``@register_kl``) when there is one. Otherwise the Monte Carlo
    estimate, the mean of ``kl_samples`` over the given samples ``z`` [S, N, d] of q (reparameterised, so
    gradients flow) or ``n_samples`` fresh ones.
    """
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return monte_carlo_kl(q, p, z, n_samples)


def monte_carlo_kl(q: Distribution, p: Distribution, z: Tensor | None = None, n_samples: int = 1) -> Tensor:
    """Unbiased estimate of KL(q || p) = E_q[log q(z) - log p(z)] from samples z [S, N, d]; returns [N]."""
    return kl_samples(q, p, z, n_samples).mean(0)


def kl_samples(q: Distribution, p: Distribution, z: Tensor | None = None, n_samples: int = 1) -> Tensor:
    """One unbiased estimate of KL(q || p) per sample [S, N], at the given samples z [S, N, d] of q or
    ``n_samples`` fresh draws: q's own lower-variance estimator ``q.kl_samples(p, z)`` where it has one (an IAF:
    its base's closed-form KL plus the flow's correction, ``IAFDistribution.kl_samples``), else the log ratio
    log q(z_s) - log p(z_s)."""
    if z is None:
        z = q.rsample((n_samples,)) if q.has_rsample else q.sample((n_samples,))
    own = getattr(q, "kl_samples", None)
    return own(p, z) if callable(own) else q.log_prob(z) - p.log_prob(z)


__all__ = ["kl_or_monte_carlo", "monte_carlo_kl", "kl_samples"]
