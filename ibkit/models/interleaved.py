"""The interleaved autoencoder: a constructed cheating code that packs d quantised coordinates into one real number.

A deterministic code of one real number can carry as much as its precision holds, if the encoder and the decoder
conspire: quantise each of the d coordinates c_i of a d-dimensional code to L levels over the code's range, k_i in
{0, ..., L - 1}, and interleave their digits into

    z = sum_i k_i L^-(i+1) = n / L^d,   n = sum_i k_i L^(d-1-i)        (base-L digits)

rounded once to ``dtype``. The decoder unpacks the digits with floor and modulo, n = floor(z L^d + 1/2) (the
nearest cell), k_i = (n // L^(d-1-i)) mod L, and runs the d-dimensional decoder on the snapped codes. While
d log2(L) fits in the mantissa of z's ``dtype`` (24 bits for float32, 53 for float64), the reconstructions equal
the quantised d-dimensional code's bit for bit; beyond, z's rounding loses the last digits, and the distortion
shows it. A probe channel of noise sigma
on z drowns the digits below sigma: the code carries about min(d log L, mantissa bits log 2, log(1 / sigma)) nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ibkit.interface import is_stochastic
from ibkit.models.base import Autoencoder
from ibkit.models.config import ModelConfig
from ibkit.models.networks import decoder_network
from ibkit.registry import register_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MANTISSA_BITS = {"float32": 24, "float64": 53}  # with the implicit leading bit


@dataclass(frozen=True)
class InterleavedAEConfig(ModelConfig):
    """The shared fields (the networks of the wrapped d-dimensional code), with ``latent_dim`` = 1, and the packing.

    Args:
        code_dim: d, the width of the wrapped code whose coordinates are packed.
        levels: L, the quantisation levels of each coordinate over its range.
        dtype: the precision of the one real number: "float32" or "float64".
    """

    code_dim: int = field(default=2, metadata={"low": 1})
    levels: int = field(default=16, metadata={"low": 2, "high": 2**16, "id": "L"})
    dtype: str = field(default="float64", metadata={"choices": tuple(DTYPES)})

    def __post_init__(self):
        super().__post_init__()
        if self.latent_dim != 1:
            raise ValueError(f"latent_dim={self.latent_dim} must be 1: an interleaved code packs code_dim="
                             f"{self.code_dim} coordinates into one real number")


@register_model("interleaved_ae", label="interleaved AE", marker="X", colour=5)
class InterleavedAE(Autoencoder):
    """One real number z [N, 1] holding the digits of d quantised code coordinates (module docstring). Its
    ``encoder`` and ``decoder`` are those of the wrapped d-dimensional code; ``low`` and ``high`` [d] its range.
    ``interleave`` makes one from a trained autoencoder.

    Args:
        config: an ``InterleavedAEConfig``.
    """

    Config = InterleavedAEConfig
    config: InterleavedAEConfig
    low: Tensor  # [d] the range of each code coordinate (buffers)
    high: Tensor

    def __init__(self, config: InterleavedAEConfig):
        super().__init__(config)
        self.decoder = decoder_network(config, config.code_dim)  # the wrapped code's decoder reads d coordinates
        self.register_buffer("low", torch.full((config.code_dim,), -1.0))
        self.register_buffer("high", torch.full((config.code_dim,), 1.0))

    def encoder_width(self) -> int:
        return self.config.code_dim

    @property
    def fits(self) -> bool:
        """Whether d log2(L) fits in the mantissa of ``dtype``: then the packing is exact."""
        return self.config.code_dim * math.log2(self.config.levels) <= MANTISSA_BITS[self.config.dtype]

    def digits(self, codes: Tensor) -> Tensor:
        """The level k_i [..., d] (int64) of each coordinate of codes [..., d]: the nearest of L levels spaced
        evenly over [low, high], codes outside clipped."""
        unit = (codes.double() - self.low.double()) / (self.high.double() - self.low.double())
        return (unit.clamp(0.0, 1.0) * (self.config.levels - 1)).round().long()

    def levels_to_codes(self, k: Tensor) -> Tensor:
        """The codes [..., d] (float32) at the levels k [..., d]."""
        unit = k.double() / (self.config.levels - 1)
        return (self.low.double() + unit * (self.high.double() - self.low.double())).float()

    def quantise(self, codes: Tensor) -> Tensor:
        """The d-dimensional codes [..., d] snapped to the L-level grid (what the packed code decodes exactly).

        Args:
            codes: [..., d] codes of the wrapped encoder.

        Returns:
            [..., d] float32 codes on the grid.
        """
        return self.levels_to_codes(self.digits(codes))

    def pack(self, k: Tensor) -> Tensor:
        """z [..., 1] in ``dtype``: n / L^d with n = sum_i k_i L^(d-1-i), an exact integer, rounded once."""
        levels, d = self.config.levels, self.config.code_dim
        n = torch.zeros(k.shape[:-1], dtype=torch.float64 if levels**d >= 2**63 else torch.long, device=k.device)
        for i in range(d):  # Horner in integers (in float64 beyond int64, where the low digits are lost anyway)
            n = n * levels + k[..., i]
        return (n.double() / float(levels) ** d).to(DTYPES[self.config.dtype]).unsqueeze(-1)

    def unpack(self, z: Tensor) -> Tensor:
        """The levels k [..., d] (int64) read off z [..., 1] with floor and modulo: n = floor(z L^d + 1/2) (z
        clipped to the cells), k_i = (n // L^(d-1-i)) mod L."""
        levels, d = self.config.levels, self.config.code_dim
        cells = float(levels) ** d
        n = (z[..., 0].double() * cells + 0.5).floor().clamp(0, cells - 1)
        if levels**d < 2**63:
            n = n.long()
        return torch.stack([torch.remainder(torch.div(n, levels ** (d - 1 - i), rounding_mode="floor"), levels)
                            for i in range(d)], dim=-1).long()

    def encode(self, x: Tensor) -> Tensor:
        """z [N, 1] in ``dtype``: the wrapped encoder's codes, quantised and interleaved.

        Args:
            x: [N, D] data.

        Returns:
            [N, 1] the one real number.
        """
        return self.pack(self.digits(self.encoder(x)))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) in nats for x [N, D] and z [..., N, 1]: the wrapped decoder on the unpacked codes.

        Args:
            x: [N, D] data.
            z: [..., N, 1] packed codes.

        Returns:
            [..., N] log p(x|z).
        """
        return self.likelihood.log_prob(x, self.decoder(self.levels_to_codes(self.unpack(z))))

    def decode(self, z: Tensor) -> Tensor:
        """E[x|z] [..., N, D] of packed codes z [..., N, 1].

        Args:
            z: [..., N, 1] packed codes.

        Returns:
            [..., N, D] the likelihood's mean.
        """
        return self.likelihood.mean(self.decoder(self.levels_to_codes(self.unpack(z))))


def interleave(ae, levels: int, dtype: str = "float64", *, x: Tensor | None = None) -> InterleavedAE:
    """Pack a trained d-dimensional deterministic autoencoder's code into one real number (module docstring).

    Args:
        ae: an ibkit autoencoder with a deterministic ``encode`` and an MLP or conv ``decoder`` (any kind: ``ae``,
            ``sparse_ae``, ...); its weights are copied.
        levels: L, the quantisation levels per coordinate (2 to 65,536).
        dtype: "float32" or "float64", the precision of the one real number.
        x: [N, D] rows whose codes set each coordinate's range [min, max] (the training split); None: [-1, 1],
            the range of a tanh-bounded code.

    Returns:
        the ``InterleavedAE``, in eval mode.

    Raises:
        ValueError: a stochastic model or no ibkit autoencoder, or levels/dtype out of range.
    """
    if not isinstance(ae, Autoencoder) or is_stochastic(ae):
        raise ValueError(f"interleave wraps a deterministic ibkit autoencoder (kind ae or sparse_ae); got "
                         f"{type(ae).__name__}")
    fields = {f: getattr(ae.config, f) for f in ("hidden", "decoder_hidden", "network", "image_shape", "channels",
                                                  "likelihood", "scale", "seed")}
    model = InterleavedAE.build(ae.input_dim, 1, code_dim=ae.latent_dim, levels=levels, dtype=dtype, **fields)
    assert isinstance(model, InterleavedAE)
    model.encoder.load_state_dict(ae.encoder.state_dict())
    model.decoder.load_state_dict(ae.decoder.state_dict())
    if x is not None:
        with torch.no_grad():
            codes = ae.eval().encode(torch.as_tensor(x, dtype=torch.float32))
        model.low.copy_(codes.min(0).values)
        model.high.copy_(torch.maximum(codes.max(0).values, model.low + 1e-6))
    return model.eval()


__all__ = ["InterleavedAEConfig", "InterleavedAE", "interleave", "MANTISSA_BITS"]
