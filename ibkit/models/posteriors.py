"""Posterior families q(z|x): each maps the encoder's output to a ``torch.distributions`` object.

Registry: ``POSTERIORS = {"diagonal": ...}``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal


class PosteriorFamily(nn.Module):
    """Turns encoder features [N, n_params] into q(z|x) with batch_shape [N], event_shape [d]."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        """Width of the encoder output this family consumes for a d-dimensional latent."""
        raise NotImplementedError


class DiagonalGaussian(PosteriorFamily):
    """Mean-field Gaussian q(z|x) = N(mu(x), diag(exp(logvar(x)))) (Kingma & Welling 2014)."""

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim

    def forward(self, h: Tensor) -> Distribution:
        mu, logvar = h.chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)


POSTERIORS: dict[str, type[PosteriorFamily]] = {
    "diagonal": DiagonalGaussian,
}
