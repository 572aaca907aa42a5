"""The periodic autoencoder: a deterministic code whose decoder can fold the code line, to see whether training finds
a cheating code.

Digit interleaving (``ibkit.models.interleave``) needs a decoder with something like modulo. This kind gives the
decoder's first layer periodic features of each code coordinate, so that a one-unit code could in principle wrap
the data around itself many times:

    fourier:   [z, cos(omega_k z + phi_k), sin(omega_k z + phi_k)]_k        (Fourier features; Tancik et al. 2020,
                                                                             SIREN-like, Sitzmann et al. 2020)
    sawtooth:  [z, frac(omega_k z + phi_k) - 1/2]_k                         (a learned modulo)

with K learned frequencies omega_k per coordinate, started geometrically from 1 to ``max_frequency``, and learned
phases. The encoder is the plain one; the loss is -log p(x|z), as for the deterministic AE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ibkit.models.base import Autoencoder
from ibkit.models.config import ModelConfig
from ibkit.models.networks import mlp
from ibkit.registry import register_model

FEATURES = ("fourier", "sawtooth")


@dataclass(frozen=True)
class PeriodicAEConfig(ModelConfig):
    """The shared fields (``ModelConfig``, an MLP decoder) and the periodic features.

    Args:
        features: "fourier" (cos and sin) or "sawtooth" (frac).
        frequencies: K, the learned frequencies per code coordinate.
        max_frequency: the largest starting frequency (they start at 1, ..., max_frequency, geometrically).
    """

    features: str = field(default="fourier", metadata={"choices": FEATURES, "id": "feat"})
    frequencies: int = field(default=16, metadata={"low": 1, "id": "K"})
    max_frequency: float = field(default=64.0, metadata={"low": 1, "id": "wmax"})

    def __post_init__(self):
        super().__post_init__()
        if self.network != "mlp":
            raise ValueError(f"network={self.network!r}: the periodic decoder is an MLP on its features; use "
                             f"network='mlp'")


class PeriodicFeatures(nn.Module):
    """z [..., d] -> [..., d (1 + m K)]: z and its periodic features (m = 2 for fourier, 1 for sawtooth).

    Args:
        d: the code's width.
        frequencies: K.
        max_frequency: the largest starting frequency.
        kind: "fourier" or "sawtooth".
    """

    def __init__(self, d: int, frequencies: int, max_frequency: float, kind: str):
        super().__init__()
        start = torch.logspace(0.0, math.log10(max_frequency), frequencies) if frequencies > 1 else torch.ones(1)
        self.omega = nn.Parameter(start.repeat(d, 1))  # [d, K]
        self.phase = nn.Parameter(torch.zeros(d, frequencies))
        self.kind = kind

    @property
    def width(self) -> int:
        d, k = self.omega.shape
        return d * (1 + (2 if self.kind == "fourier" else 1) * k)

    def forward(self, z: Tensor) -> Tensor:
        angle = z.unsqueeze(-1) * self.omega + self.phase  # [..., d, K]
        if self.kind == "fourier":
            waves = torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
        else:
            waves = angle - torch.floor(angle) - 0.5  # a sawtooth of period 1 in [-1/2, 1/2)
        return torch.cat([z, waves.flatten(-2)], dim=-1)


@register_model("periodic_ae", label="periodic AE", marker="*", colour=6)
class PeriodicAE(Autoencoder):
    """A deterministic autoencoder whose decoder reads periodic features of the code (module docstring).

    Args:
        config: a ``PeriodicAEConfig``.
    """

    Config = PeriodicAEConfig
    config: PeriodicAEConfig

    def __init__(self, config: PeriodicAEConfig):
        super().__init__(config)
        features = PeriodicFeatures(config.latent_dim, config.frequencies, config.max_frequency, config.features)
        self.decoder = nn.Sequential(features, *mlp(features.width, tuple(config.decoder_hidden or ()),
                                                    config.input_dim))


__all__ = ["PeriodicAEConfig", "PeriodicAE", "PeriodicFeatures", "FEATURES"]
