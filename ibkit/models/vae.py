"""The variational autoencoder: posterior family q(z|x), prior N(0, I), loss distortion + beta * rate."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ibkit.models.posteriors import PosteriorFamily  # and with it the families "diagonal", "full", "iaf"
from ibkit.models.schedules import RateScheduled, ScheduledConfig
from ibkit.registry import POSTERIORS, register_model


@dataclass(frozen=True)
class VAEConfig(ScheduledConfig):
    """The shared fields (``ModelConfig``), beta and the KL schedules (``ibkit.models.schedules.ScheduledConfig``:
    ``beta``, ``warmup_epochs``, ``capacity``, ``gamma``, ``capacity_epochs``, ``free_bits``, ``aggressive``) and
    the posterior family.

    Args:
        posterior: q(z|x) family (``ibkit.registry.POSTERIORS``): "diagonal", "full" (Cholesky factor), "iaf"
            (inverse autoregressive flow), or one registered.
        flow_steps: iaf: number of autoregressive steps, >= 1.
    """

    # q(z|x) family: diagonal | full (Cholesky factor) | iaf (inverse autoregressive flow)
    posterior: str = field(default="diagonal", metadata={"choices": POSTERIORS})  # read when checked: yours too
    flow_steps: int = field(default=2, metadata={"low": 1})  # iaf: number of autoregressive steps


@register_model("vae", label="VAE", marker="o", colour=0)
class VAE(RateScheduled):
    """beta-VAE (Kingma & Welling 2014; Higgins et al. 2017): loss = -E_q log p(x|z) + beta KL(q(z|x) || p(z)).

    beta = 1 is the negative ELBO; Alemi et al. 2018 read it as a point D + beta R on the rate-distortion plane.
    The KL schedules (warm-up, capacity, free bits: ``ibkit.models.schedules``) change how the rate enters the
    loss; free bits clip each latent dimension of a diagonal posterior, and the whole KL of another family.

    Args:
        config: a ``VAEConfig`` (``build`` and ``ibkit.build_model`` make it from keyword fields).
    """

    Config = VAEConfig
    config: VAEConfig
    # with q = p(z), a decoder at the marginal is the collapsed optimum, where high-beta runs stayed (MNIST
    # beta = 10.3: D + beta R = 206 nats there, 182 from the default start)
    STARTS_AT_MARGINAL = False

    def __init__(self, config: VAEConfig):
        super().__init__(config)  # the encoder's head has the diagonal family's 2d outputs; the family widens it
        self.family: PosteriorFamily = POSTERIORS[config.posterior](config.latent_dim, flow_steps=config.flow_steps)
        self.encoder[-1] = self.family.widen(typing.cast(nn.Linear, self.encoder[-1]))

    def encoder_width(self) -> int:
        """As built: loc and log variance [2d], which every family reads first (its own extra outputs follow).

        Returns:
            2 d.
        """
        return 2 * self.config.latent_dim

    def start_from(self, source: VAE) -> VAE:
        """Copy ``source``'s weights (a VAE of the same architecture, any family) into this one: every parameter
        of the same name and shape, and the loc and log-variance rows of the encoder's head; the outputs only this
        family has keep their initial values (a full family's off-diagonals at zero, so it starts with exactly
        ``source``'s q if that is diagonal).

        Args:
            source: a VAE of the same architecture.

        Returns:
            self.
        """
        theirs = dict(source.named_parameters())
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name in theirs and theirs[name].shape == p.shape:
                    p.copy_(theirs[name])
            head, other = typing.cast(nn.Linear, self.encoder[-1]), typing.cast(nn.Linear, source.encoder[-1])
            shared = 2 * self.config.latent_dim
            head.weight[:shared] = other.weight[:shared]
            head.bias[:shared] = other.bias[:shared]
        return self

    def posterior_from_params(self, h: Tensor) -> Distribution:
        """q(z|x) of the posterior family for the encoder's outputs h.

        Args:
            h: [N, P] the encoder's outputs (P = 2 d and the family's own).

        Returns:
            q(z|x), batch_shape [N], event_shape [d].
        """
        return self.family(h)

    def prior(self) -> Distribution:
        """p(z) = N(0, I) in the form that has a closed-form KL against the posterior family.

        Returns:
            p(z), event_shape [d].
        """
        return self.family.prior(self._prior_loc, self._prior_scale)

    def kl_terms(self, q: Distribution, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) in the family's groups [N, G]: per dimension for the diagonal family.

        Args:
            q: q(z|x), batch_shape [N].
            z: [1, N, d] samples of q, for a Monte Carlo KL.

        Returns:
            [N, G] the KL's groups in nats.
        """
        return self.family.kl_terms(q, self.prior(), z)

    def rate_groups(self) -> Tensor:
        """The number of latent units in each of the family's KL groups [G], which free bits clip.

        Returns:
            [G] the group sizes.
        """
        return self.family.group_sizes()
