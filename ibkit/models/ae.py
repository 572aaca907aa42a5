"""The deterministic autoencoder: z = f(x), loss = -log p(x|z), no penalty on the code."""

from dataclasses import dataclass

from ibkit.models.base import Autoencoder
from ibkit.models.config import ModelConfig
from ibkit.registry import register_model


@dataclass(frozen=True)
class AEConfig(ModelConfig):
    """A deterministic code has nothing beyond the shared fields: no rate, no penalty."""


@register_model("ae", label="AE", marker="D", colour=2)
class DeterministicAE(Autoencoder):
    """Plain autoencoder; its code can carry unbounded information (measure it through a probe channel).

    Args:
        config: an ``AEConfig`` (``build`` and ``ibkit.build_model`` make it from keyword fields).
    """

    Config = AEConfig
