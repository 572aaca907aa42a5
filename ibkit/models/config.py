"""Typed model configs: a frozen dataclass per kind, its fields checked on construction by ``ibkit.config.validate``
against their annotated types and the checks in their metadata (``ibkit.config``'s keys: low, high, choices, help,
knob, id, symbol, quiet).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field

from ibkit.config import validate
from ibkit.models.networks import conv_sizes
from ibkit.registry import LIKELIHOODS


@dataclass(frozen=True)
class ModelConfig:
    """What every kind shares: the data and code widths, the networks, the likelihood and the seed.

    Args:
        input_dim: D, width of the data.
        latent_dim: d, width of the code.
        hidden: encoder widths; () = linear.
        decoder_hidden: decoder widths; None mirrors ``hidden``.
        network: encoder and decoder: "mlp" (perceptrons of the widths above) or "conv" (stride-2 convolutions of
            ``channels`` on images of ``image_shape`` before the encoder's perceptron, transposed ones after the
            decoder's).
        image_shape: conv: (C, H, W) of one example; None: (1, s, s) when input_dim = s^2 (784 -> (1, 28, 28)).
        channels: conv: channels per convolution.
        likelihood: the p(x|z) family (``ibkit.registry.LIKELIHOODS``: "bernoulli", "gaussian", ...).
        scale: gaussian: a fixed decoder std; None: learned.
        seed: seed of the weight initialisation.

    Raises:
        ValueError: a field of the wrong type or out of its range (``ibkit.config.validate``), an ``image_shape``
            without ``network="conv"`` or that does not fit, or a ``scale`` without ``likelihood="gaussian"``.
    """

    input_dim: int = field(metadata={"low": 1})  # D, width of the data
    latent_dim: int = field(metadata={"low": 1, "id": "d"})  # d, width of the code
    hidden: tuple[int, ...] = field(default=(256, 256), metadata={"low": 1})  # encoder widths; () = linear
    decoder_hidden: tuple[int, ...] | None = field(default=None, metadata={"low": 1})  # None mirrors hidden
    # encoder and decoder: "mlp" (perceptrons of the widths above) or "conv" (stride-2 convolutions of ``channels``
    # on images of ``image_shape`` before the encoder's perceptron, transposed ones after the decoder's)
    network: str = field(default="mlp", metadata={"choices": ("mlp", "conv"), "id": "net"})
    # conv: (C, H, W) of one example; None: (1, s, s) when input_dim = s^2 (784 -> (1, 28, 28))
    image_shape: tuple[int, ...] | None = field(default=None, metadata={"low": 1})
    channels: tuple[int, ...] = field(default=(32, 64), metadata={"low": 1})  # conv: channels per convolution
    likelihood: str = field(default="bernoulli", metadata={"choices": LIKELIHOODS})  # p(x|z) family
    scale: float | None = field(default=None, metadata={"low": 0, "low_open": True})  # gaussian: fixed decoder std
    seed: int = field(default=0, metadata={"low": 0})  # seed of the weight initialisation

    def __post_init__(self):
        validate(self)
        if self.decoder_hidden is None:
            object.__setattr__(self, "decoder_hidden", tuple(reversed(self.hidden)))
        if self.network == "conv":
            object.__setattr__(self, "image_shape", check_image_shape(self.image_shape, self.input_dim, self.channels))
        elif self.image_shape is not None:
            raise ValueError(f"image_shape={self.image_shape!r} applies only to network='conv' (an MLP sees the "
                             "flat data); set network='conv' or drop image_shape")
        if self.scale is not None and self.likelihood != "gaussian":
            raise ValueError(f"scale={self.scale!r} applies only to likelihood='gaussian' (a fixed decoder std), not "
                             f"likelihood={self.likelihood!r}")


def check_image_shape(image_shape, input_dim: int, channels: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) a conv network sees: ``image_shape``, or (1, s, s) where ``input_dim`` = s^2; refused where it
    does not hold ``input_dim`` numbers or where ``channels``' stride-2 convolutions would halve it below 1x1.

    Args:
        image_shape: (C, H, W), or None for a square single-channel image.
        input_dim: D, the width of the flattened data.
        channels: the channels of the stride-2 convolutions.

    Returns:
        (C, H, W).

    Raises:
        ValueError: a shape that does not hold ``input_dim`` numbers, no convolution, or too many of them.
    """
    if image_shape is None:
        side = math.isqrt(input_dim)
        if side * side != input_dim:
            raise ValueError(f"network='conv' needs image_shape=(C, H, W): input_dim={input_dim} is not a square "
                             "single-channel image")
        image_shape = (1, side, side)
    if len(image_shape) != 3 or math.prod(image_shape) != input_dim:
        raise ValueError(f"image_shape={tuple(image_shape)!r} must be (C, H, W) with C * H * W = input_dim = "
                         f"{input_dim}")
    if not channels:
        raise ValueError("channels=() gives network='conv' no convolution; give at least one, e.g. (32, 64)")
    if min(conv_sizes(tuple(image_shape), tuple(channels))[-1][1:]) < 1:
        raise ValueError(f"channels={channels!r}: {len(channels)} stride-2 convolutions halve image_shape="
                         f"{tuple(image_shape)!r} below 1x1; use at most {int(math.log2(min(image_shape[1:])))}")
    return typing.cast(tuple[int, int, int], tuple(image_shape))


__all__ = ["ModelConfig", "check_image_shape"]
