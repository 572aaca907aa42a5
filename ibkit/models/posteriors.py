"""Posterior families q(z|x): each maps the encoder's output to a ``torch.distributions`` object, and names the
prior N(0, I) in the form torch has a closed-form KL against.

Registry: ``POSTERIORS = {"diagonal": ..., "full": ...}``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal


class PosteriorFamily(nn.Module):
    """Turns encoder features [N, n_params] into q(z|x) with batch_shape [N], event_shape [d]."""

    def __init__(self, latent_dim: int, **options):
        super().__init__()
        self.latent_dim = latent_dim

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        """Width of the encoder output this family consumes for a d-dimensional latent."""
        raise NotImplementedError

    def prior(self, loc: Tensor, scale: Tensor) -> Distribution:
        """p(z) = N(loc, diag(scale^2)) (loc, scale [d]) as a diagonal Normal."""
        return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


class DiagonalGaussian(PosteriorFamily):
    """Mean-field Gaussian q(z|x) = N(mu(x), diag(exp(logvar(x)))) (Kingma & Welling 2014)."""

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim

    def forward(self, h: Tensor) -> Distribution:
        mu, logvar = h.chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)


class IAF(PosteriorFamily):
    """Inverse autoregressive flow (Kingma et al. 2016): a diagonal Gaussian and ``flow_steps`` MADE steps with
    reversed orderings between steps, conditioned on a context from the encoder (see ``ibkit.models.iaf``).
    Encoder output: loc [d], log variance [d], context [c]. Its KL has no closed form: the rate is Monte Carlo."""

    def __init__(self, latent_dim: int, flow_steps: int = 2, **options):
        super().__init__(latent_dim)
        from ibkit.models.iaf import IAFStep, iaf_context_dim, iaf_width

        self.steps = nn.ModuleList(
            IAFStep(latent_dim, iaf_context_dim(latent_dim), iaf_width(latent_dim), reverse=t % 2 == 1)
            for t in range(flow_steps))

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        from ibkit.models.iaf import iaf_context_dim

        return 2 * latent_dim + iaf_context_dim(latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        from ibkit.models.iaf import IAFDistribution

        d = self.latent_dim
        loc, logvar, context = h.split([d, d, h.shape[-1] - 2 * d], dim=-1)
        return IAFDistribution(loc, torch.exp(0.5 * logvar), context, self.steps)


class FullGaussian(PosteriorFamily):
    """Full-covariance Gaussian q(z|x) = N(mu(x), L(x) L(x)^T) with L lower triangular, diagonal exp(.) > 0:
    a linear IAF (Kingma et al. 2016, sec. 3). It can hold the correlations the true posterior has given x
    (Berkson's paradox) that the diagonal family cannot. Encoder output: mu [d], log diag(L) [d], and the
    d(d-1)/2 entries below the diagonal."""

    def __init__(self, latent_dim: int, **options):
        super().__init__(latent_dim)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        place = torch.zeros(len(rows), latent_dim * latent_dim)  # one-hot: entry k goes below the diagonal
        place[torch.arange(len(rows)), rows * latent_dim + cols] = 1.0
        self.register_buffer("_place", place, persistent=False)

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim + latent_dim * (latent_dim - 1) // 2

    def forward(self, h: Tensor) -> Distribution:
        d = self.latent_dim
        mu, log_diag, below = h.split([d, d, d * (d - 1) // 2], dim=-1)
        # placed by a 0/1 matrix product (exact, and out of place, so it also runs under vmap for fit_many)
        tril = (below @ self._place.to(h.dtype)).unflatten(-1, (d, d)) + torch.diag_embed(torch.exp(log_diag))
        return MultivariateNormal(mu, scale_tril=tril, validate_args=False)

    def prior(self, loc: Tensor, scale: Tensor) -> Distribution:
        """p(z) as a MultivariateNormal, so KL(q || p) is torch's closed form."""
        return MultivariateNormal(loc, scale_tril=torch.diag(scale), validate_args=False)


def rsample_from(q: Distribution, eps: Tensor) -> Tensor:
    """The reparameterised sample of q [S, N, d] at the standard normal noise eps [S, N, d]: what ``q.rsample``
    returns when it draws that eps. loc + scale * eps (diagonal Gaussian), loc + L eps (full), an IAF's steps
    applied to its base sample."""
    from ibkit.models.iaf import IAFDistribution

    if isinstance(q, IAFDistribution):
        return q.rsample_from(eps)
    if isinstance(q, MultivariateNormal):
        return q.loc + torch.matmul(q.scale_tril, eps.unsqueeze(-1)).squeeze(-1)
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
        return q.base_dist.loc + eps * q.base_dist.scale
    raise TypeError(f"rsample_from knows diagonal and full Gaussians and IAF; got {type(q).__name__}")


POSTERIORS: dict[str, type[PosteriorFamily]] = {
    "diagonal": DiagonalGaussian,
    "full": FullGaussian,
    "iaf": IAF,
}
