"""Decoder likelihoods p(x|z): the decoder outputs their parameters, they score x in nats.

Registered in ``ibkit.registry.LIKELIHOODS`` as "bernoulli" and "gaussian".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import constraints

from ibkit.registry import register_likelihood


class Likelihood(nn.Module):
    """p(x|z) given the decoder output; ``log_prob`` sums over the D pixels. ``support``: the values one pixel may
    take, a ``torch.distributions.constraints`` object (what a model's ``support`` reports to the estimators)."""

    support: constraints.Constraint = constraints.real

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x|z) for x [N, D] and decoder output [..., N, D]; returns [..., N].

        Args:
            x: [N, D] data.
            params: [..., N, D] the decoder's output.

        Returns:
            [..., N] log p(x|z) in nats, summed over the D pixels.
        """
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """E[x|z] [..., N, D] from the decoder output.

        Args:
            params: [..., N, D] the decoder's output.

        Returns:
            [..., N, D] E[x|z].
        """
        raise NotImplementedError

    def marginal_params(self, x: Tensor) -> Tensor:
        """The decoder output [D] under which p(x|z) is each dimension's marginal over the rows of x [N, D].

        Args:
            x: [N, D] the training rows.

        Returns:
            [D] the decoder output (``Autoencoder.start_at_marginal`` sets the decoder's bias to it).
        """
        raise NotImplementedError

    def check_data(self, x: Tensor, name: str = "x") -> None:
        """Refuse data this likelihood cannot score (hook; default accepts any finite reals).

        Args:
            x: [N, D] data.
            name: what the message calls x.

        Raises:
            ValueError: (in an override) values this likelihood cannot score.
        """


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder:
    log p(x|z) = sum_j x_j l_j - softplus(l_j). A proper log-likelihood for x in {0, 1}; grey levels in [0, 1] are
    accepted (the cross-entropy of the usual MNIST practice)."""

    support = constraints.unit_interval

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        # one fused kernel (forward and backward) instead of three elementwise ops
        return -F.binary_cross_entropy_with_logits(params, x.expand_as(params), reduction="none").sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def marginal_params(self, x: Tensor) -> Tensor:
        """The logit of each pixel's mean (clamped to [1e-4, 1 - 1e-4]: a pixel that is never on gets -9.2)."""
        return torch.logit(x.mean(0).clamp(1e-4, 1 - 1e-4))

    def check_data(self, x: Tensor, name: str = "x") -> None:
        if not bool(self.support.check(x).all()):
            lo, hi = x.min().item(), x.max().item()
            raise ValueError(
                f"{name} has values in [{lo:.3g}, {hi:.3g}] but likelihood='bernoulli' needs values in [0, 1]; "
                "binarise or rescale the data, or use likelihood='gaussian'"
            )


class GaussianLikelihood(Likelihood):
    """x ~ N(mean(z), s^2 I) with the mean from the decoder and one log-scale log s shared by all pixels, learned,
    or fixed at ``scale`` (a fixed s makes a beta-VAE's loss the rate-distortion Lagrangian with squared error at
    theta = beta s^2: ``ibkit.theory.vae_water_level``): log p(x|z) = -1/2 sum_j [(x_j - m_j)^2 / s^2
    + log(2 pi s^2)]."""

    support = constraints.real

    def __init__(self, scale: float | None = None):
        super().__init__()
        if scale is None:
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:  # fixed: a buffer, rebuilt from the config (not stored in checkpoints)
            self.register_buffer("log_scale", torch.tensor(math.log(scale)), persistent=False)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        inv_var = torch.exp(-2 * self.log_scale)
        sq = (x - params).pow(2).sum(-1)
        d = x.shape[-1]
        return -0.5 * (sq * inv_var + d * (2 * self.log_scale + math.log(2 * math.pi)))

    def mean(self, params: Tensor) -> Tensor:
        return params

    def marginal_params(self, x: Tensor) -> Tensor:
        return x.mean(0)


register_likelihood("bernoulli")(BernoulliLikelihood)
register_likelihood("gaussian")(GaussianLikelihood)
