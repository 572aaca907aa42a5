"""Posterior families q(z|x): each maps the encoder's output to a ``torch.distributions`` object, and names the
prior N(0, I) in the form torch has a closed-form KL against.

Each family is registered by name in ``ibkit.registry.POSTERIORS`` (``@register_posterior("diagonal", colour=0)``,
with the colour figures give it), which ``VAEConfig.posterior`` and ``ibkit.wrap(posterior=...)`` read: "diagonal",
"full" and "iaf" here. The operations on the distributions they return (``rsample_from``, ``add_noise``,
``covariance``, ``diagonal_normal``) and the KL helpers live in ``ibkit.distributions``; checkpoints written before a
family's present parameterisation are converted when they load (``ibkit.models.checkpoint``).
"""

from __future__ import annotations

import typing

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, kl_divergence

from ibkit.distributions import kl_or_monte_carlo
from ibkit.models.iaf import IAFDistribution, IAFStep, iaf_context_dim, iaf_width
from ibkit.registry import register_posterior


class PosteriorFamily(nn.Module):
    """Turns encoder features [N, n_params] into q(z|x) with batch_shape [N], event_shape [d].

    Args:
        latent_dim: d.
        **options: a family's own options (the IAF's ``flow_steps``); others ignore them.
    """

    def __init__(self, latent_dim: int, **options):
        super().__init__()
        self.latent_dim = latent_dim

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        """Width of the encoder output this family consumes for a d-dimensional latent.

        Args:
            latent_dim: d.

        Returns:
            P, the encoder output's width.
        """
        raise NotImplementedError

    def widen(self, head: nn.Linear) -> nn.Linear:
        """The encoder's last layer, built with the diagonal family's 2d outputs (loc and log variance, which
        every family here reads first), widened to this family's ``n_params``: those rows as they are, the extra
        ones from ``extra_rows``. Called after the rest of the model is built, so that one seed gives every family
        the same decoder and the same loc and variance outputs, and a family's extra draws disturb nothing.

        Args:
            head: the encoder's last layer, with 2d outputs.

        Returns:
            ``head`` itself where it is wide enough, else the widened layer.
        """
        extra = self.n_params(self.latent_dim) - head.out_features
        if extra <= 0:
            return head
        wide = nn.utils.skip_init(nn.Linear, head.in_features, head.out_features + extra)  # draws nothing
        weight, bias = self.extra_rows(head.in_features, extra)
        with torch.no_grad():
            wide.weight.copy_(torch.cat([head.weight, weight]))
            wide.bias.copy_(torch.cat([head.bias, bias]))
        return wide

    def extra_rows(self, in_features: int, extra: int) -> tuple[Tensor, Tensor]:
        """The initial weight [extra, in] and bias [extra] of the family's outputs beyond loc and log variance:
        PyTorch's default initialisation of a linear layer.

        Args:
            in_features: the layer's input width.
            extra: the number of extra outputs.

        Returns:
            (weight [extra, in], bias [extra]).
        """
        layer = nn.Linear(in_features, extra)
        return layer.weight.detach(), layer.bias.detach()

    def prior(self, loc: Tensor, scale: Tensor) -> Distribution:
        """p(z) = N(loc, diag(scale^2)) (loc, scale [d]) as a diagonal Normal.

        Args:
            loc: [d] the prior's mean.
            scale: [d] its standard deviations.

        Returns:
            p(z), event_shape [d].
        """
        return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)

    def kl_terms(self, q: Distribution, p: Distribution, z: Tensor) -> Tensor:
        """KL(q || p) [N, G] in the groups of latents free bits clip (``group_sizes``): one group of all d here,
        closed form where torch has it, else Monte Carlo at the samples z [1, N, d].

        Args:
            q: q(z|x), batch_shape [N].
            p: p(z).
            z: [1, N, d] samples of q.

        Returns:
            [N, G] the KL's groups in nats.
        """
        return kl_or_monte_carlo(q, p, z).unsqueeze(-1)

    def group_sizes(self) -> Tensor:
        """The number of latent units in each of ``kl_terms``' groups [G].

        Returns:
            [G] the group sizes: one group of d here.
        """
        return torch.tensor([float(self.latent_dim)])


@register_posterior("diagonal", colour=0)
class DiagonalGaussian(PosteriorFamily):
    """Mean-field Gaussian q(z|x) = N(mu(x), diag(exp(logvar(x)))) (Kingma & Welling 2014)."""

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim

    def kl_terms(self, q: Distribution, p: Distribution, z: Tensor) -> Tensor:
        """KL(q || p) per latent dimension [N, d], in closed form (q and p are diagonal Normals)."""
        return kl_divergence(typing.cast(Independent, q).base_dist, typing.cast(Independent, p).base_dist)

    def group_sizes(self) -> Tensor:
        return torch.ones(self.latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        mu, logvar = h.chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)


@register_posterior("full", colour=4)
class FullGaussian(PosteriorFamily):
    """Full-covariance Gaussian q(z|x) = N(mu(x), L(x) L(x)^T) with L lower triangular: a linear IAF (Kingma et al.
    2016, sec. 3). It can hold the correlations the true posterior has given x (Berkson's paradox) that the
    diagonal family cannot. Encoder output: mu [d], a log variance v [d], and the d(d-1)/2 entries of a strictly
    lower-triangular B; then

        L = diag(sigma) (I + B),   sigma = exp(v / 2),   so   Cov = diag(sigma) (I + B)(I + B)^T diag(sigma):

    the diagonal of L is the diagonal family's sigma, and the off-diagonal entries are in units of their row's
    sigma, so that the correlations (set by B alone) do not depend on the scales. B starts at zero
    (``extra_rows``): with one seed this family starts from exactly the diagonal family's q and decoder.

    On MNIST (d = 8, beta = 1, 100 epochs) the earlier parameterisation, diag(L) = exp(v) with absolute
    off-diagonal entries drawn at PyTorch's default initialisation, trained to a test ELBO 5 nats below the
    diagonal family's, and a train ELBO 6 below: absolute off-diagonals take Adam steps as large as the
    posterior's own scale, and the posteriors it reached had condition numbers over 1,000. This one ends above
    the diagonal family (``experiments/posterior_families/diagnosis.py`` measures each cause on its own).
    Checkpoints of format 1 were trained with that earlier parameterisation (``ibkit.models.checkpoint``).
    """

    def __init__(self, latent_dim: int, **options):
        super().__init__(latent_dim)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        place = torch.zeros(len(rows), latent_dim * latent_dim)  # one-hot: entry k goes below the diagonal
        place[torch.arange(len(rows)), rows * latent_dim + cols] = 1.0
        self.register_buffer("_place", place, persistent=False)

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim + latent_dim * (latent_dim - 1) // 2

    def extra_rows(self, in_features: int, extra: int) -> tuple[Tensor, Tensor]:
        """B starts at zero: q starts as the diagonal family's."""
        return torch.zeros(extra, in_features), torch.zeros(extra)

    def forward(self, h: Tensor) -> Distribution:
        d = self.latent_dim
        mu, logvar, below = h.split([d, d, d * (d - 1) // 2], dim=-1)
        # placed by a 0/1 matrix product (exact, and out of place, so it also runs under vmap for fit_many)
        b = (below @ self._place.to(h.dtype)).unflatten(-1, (d, d))
        sigma = torch.exp(0.5 * logvar)
        return MultivariateNormal(mu, scale_tril=sigma.unsqueeze(-1) * b + torch.diag_embed(sigma),
                                  validate_args=False)

    def prior(self, loc: Tensor, scale: Tensor) -> Distribution:
        """p(z) as a MultivariateNormal, so KL(q || p) is torch's closed form."""
        return MultivariateNormal(loc, scale_tril=torch.diag(scale), validate_args=False)


@register_posterior("iaf", colour=2)
class IAF(PosteriorFamily):
    """Inverse autoregressive flow (Kingma et al. 2016): a diagonal Gaussian and ``flow_steps`` MADE steps with
    reversed orderings between steps, conditioned on a context from the encoder (see ``ibkit.models.iaf``).
    Encoder output: loc [d], log variance [d], context [c]. The steps start as the identity, so with one seed q
    starts as the diagonal family's. Its KL has no closed form: the rate is the base's closed-form KL plus a Monte
    Carlo correction for the flow (``IAFDistribution.kl_samples``), exact while the flow is the identity."""

    def __init__(self, latent_dim: int, flow_steps: int = 2, **options):
        super().__init__(latent_dim)
        self.steps = nn.ModuleList(
            IAFStep(latent_dim, iaf_context_dim(latent_dim), iaf_width(latent_dim), reverse=t % 2 == 1)
            for t in range(flow_steps))

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim + iaf_context_dim(latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        d = self.latent_dim
        loc, logvar, context = h.split([d, d, h.shape[-1] - 2 * d], dim=-1)
        return IAFDistribution(loc, torch.exp(0.5 * logvar), context, self.steps)


__all__ = ["PosteriorFamily", "DiagonalGaussian", "FullGaussian", "IAF"]
