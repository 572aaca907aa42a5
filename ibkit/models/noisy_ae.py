"""The fixed-noise autoencoder: code plus Gaussian channel noise of fixed std, no KL term in the loss."""

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ibkit.models.base import StochasticAutoencoder
from ibkit.models.config import ModelConfig
from ibkit.registry import register_model


@dataclass(frozen=True)
class NoisyAEConfig(ModelConfig):
    """The shared fields (``ModelConfig``), the channel noise and the code's bound.

    Args:
        noise: std of the fixed Gaussian channel noise (required, > 0; a knob).
        code_bound: "tanh": the code is bounded (power <= 1 per dimension); None: unbounded, it can out-shout the
            noise.
    """

    # std of the fixed Gaussian channel noise (required, > 0)
    noise: float = field(kw_only=True, metadata={"knob": True, "symbol": "σ", "low": 0, "low_open": True,
                                                 "help": "std of the Gaussian channel noise"})
    # "tanh": the code is bounded (power <= 1 per dimension); None: unbounded, it can out-shout the noise
    code_bound: str | None = field(default="tanh", metadata={"choices": ("tanh", None), "id": "bound"})


@register_model("noisy_ae", label="noisy AE", marker="s", colour=1, line=False)
class NoisyAE(StochasticAutoencoder):
    """z = c(x) + noise * eps with c(x) = tanh(f(x)) (code_bound="tanh": power <= 1 per dimension, so
    I(X;Z) <= d/2 log(1 + 1/noise^2)) or c(x) = f(x) (code_bound=None: the encoder can out-shout the noise).

    Trained on distortion alone; its reported rate KL(q(z|x) || N(0, I)) still bounds I(X;Z).

    Args:
        config: a ``NoisyAEConfig`` (``build`` and ``ibkit.build_model`` make it from keyword fields).
    """

    Config = NoisyAEConfig
    config: NoisyAEConfig
    noise: Tensor  # the knob's buffer: [] alone, [K, 1] in fit_many's stacked model

    def posterior_from_params(self, h: Tensor) -> Distribution:
        """q(z|x) = N(c(x), noise^2 I), c(x) the (bounded) code.

        Args:
            h: [N, d] the encoder's output f(x).

        Returns:
            q(z|x), batch_shape [N], event_shape [d].
        """
        code = torch.tanh(h) if self.config.code_bound == "tanh" else h
        scale = self.noise.unsqueeze(-1).expand_as(code)  # [1] here, [K, 1, 1] in fit_many's stacked model
        return Independent(Normal(code, scale, validate_args=False), 1, validate_args=False)
