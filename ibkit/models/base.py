"""The base autoencoder every variant derives from, overriding one hook.

``Autoencoder`` has a deterministic code z = f(x); ``StochasticAutoencoder`` a posterior q(z|x) and a
prior p(z) = N(0, I), and so follows the model protocol of ``ibkit.interface``. Both compute per-example
distortion -log p(x|z) and rate KL(q(z|x) || p(z)); a variant adds its ``regularizer``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ibkit.divergence import kl_or_monte_carlo
from ibkit.interface import ForwardOutput
from ibkit.models.config import ModelConfig
from ibkit.models.likelihoods import LIKELIHOODS
from ibkit.models.networks import mlp


class Autoencoder(nn.Module):
    """Deterministic autoencoder: z = f(x), loss = -log p(x|z) + regularizer(z, rate)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.likelihood = LIKELIHOODS[config.likelihood]()
        self.encoder = mlp(config.input_dim, config.hidden, self.encoder_width())
        self.decoder = mlp(config.latent_dim, config.decoder_hidden, config.input_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encoder_width(self) -> int:
        """Width of the encoder's output: the code itself here."""
        return self.config.latent_dim

    def encode(self, x: Tensor) -> Tensor:
        """The deterministic code (or posterior mean) [N, d] of x [N, D]."""
        return self.encoder(x)

    def sample_code(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The code the decoder sees, z [N, d], and the rate [N] (NaN: a deterministic code has no rate)."""
        z = self.encode(x)
        return z, torch.full(z.shape[:-1], math.nan, device=z.device)

    def regularizer(self, z: Tensor, rate: Tensor) -> Tensor:
        """The variant's penalty [N] added to the distortion; the one hook variants override."""
        return torch.zeros(z.shape[:-1], device=z.device)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) in nats for x [N, D] and z [..., N, d] (e.g. [S, N, d]); returns [..., N]."""
        return self.likelihood.log_prob(x, self.decoder(z))

    def forward(self, x: Tensor) -> ForwardOutput:
        z, rate = self.sample_code(x)
        distortion = -self.log_likelihood(x, z)
        return ForwardOutput(distortion, rate, distortion + self.regularizer(z, rate), z)


class StochasticAutoencoder(Autoencoder):
    """An autoencoder whose code is a sample of q(z|x); prior p(z) = N(0, I). Follows the model protocol."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.register_buffer("_prior_loc", torch.zeros(config.latent_dim), persistent=False)
        self.register_buffer("_prior_scale", torch.ones(config.latent_dim), persistent=False)

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x): batch_shape [N], event_shape [d]."""
        raise NotImplementedError

    def prior(self) -> Distribution:
        """p(z) = N(0, I_d), event_shape [d]."""
        return Independent(Normal(self._prior_loc, self._prior_scale, validate_args=False), 1, validate_args=False)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean E_q[z] [N, d]."""
        return self.posterior(x).mean

    def sample_code(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z ~ q(z|x) by reparameterisation [N, d], and KL(q(z|x) || p(z)) [N] (closed form where torch has it)."""
        q = self.posterior(x)
        z = q.rsample((1,))  # [1, N, d]: the sample the Monte Carlo KL (where needed) reuses as drawn
        return z[0], kl_or_monte_carlo(q, self.prior(), z)
