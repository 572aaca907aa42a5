"""The fixed-noise autoencoder: code plus Gaussian channel noise of fixed std, no KL term in the loss."""

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ibkit.models.base import StochasticAutoencoder


class NoisyAE(StochasticAutoencoder):
    """z = c(x) + noise * eps with c(x) = tanh(f(x)) (code_bound="tanh": power <= 1 per dimension, so
    I(X;Z) <= d/2 log(1 + 1/noise^2)) or c(x) = f(x) (code_bound=None: the encoder can out-shout the noise).

    Trained on distortion alone; its reported rate KL(q(z|x) || N(0, I)) still bounds I(X;Z).
    """

    KNOB = "noise"

    def posterior(self, x: Tensor) -> Distribution:
        code = self.encoder(x)
        if self.config.code_bound == "tanh":
            code = torch.tanh(code)
        scale = self.noise.unsqueeze(-1).expand_as(code)  # [1] here, [K, 1, 1] in fit_many's stacked model
        return Independent(Normal(code, scale, validate_args=False), 1, validate_args=False)
