"""The networks every encoder and decoder is made of: multilayer perceptrons, and for images (``network="conv"``)
stride-2 convolutions in front of the encoder's perceptron and transposed ones after the decoder's.

Every network maps [..., in] to [..., out] with any leading dimensions (the estimators' [S, N, d] samples of z,
``fit_many``'s [K, B, D] stacks): the convolutions fold the leading dimensions into one batch axis and unfold
them after, and the data stay flat [..., D] outside (an image is unflattened to (C, H, W) only inside).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """in_dim -> hidden[0] -> ... -> out_dim with ReLU between layers; ``hidden=()`` is one linear map.

    Maps [..., in_dim] to [..., out_dim] (any leading dimensions, e.g. [S, N, d] samples of z).
    """
    sizes = (in_dim, *hidden, out_dim)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ImageConvs(nn.Module):
    """A stack of convolutions on images held flat: [..., C*H*W] -> [..., C'*H'*W'], where ``in_shape`` = (C, H, W)
    and ``convs`` maps [B, C, H, W] to [B, C', H', W'] (the leading dimensions are folded into B and back)."""

    def __init__(self, in_shape: tuple[int, int, int], convs: nn.Sequential):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.convs = convs
        sizes = []  # one zero image through the layers, once: every convolution's output size and the last shape
        with torch.no_grad():
            h = torch.zeros(1, *self.in_shape)
            for layer in convs:
                h = layer(h)
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                    sizes.append(h[0].numel())
        self.out_shape, self._activations = tuple(h.shape[1:]), sum(sizes)

    @property
    def in_features(self) -> int:
        """C*H*W, the width of the flat input."""
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        """C'*H'*W', the width of the flat output."""
        return math.prod(self.out_shape)

    def activations(self) -> int:
        """Floats of activations per example, every convolution's output summed (for the memory estimates)."""
        return self._activations

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        return self.convs(x.reshape(-1, *self.in_shape)).reshape(*lead, self.out_features)


class PixelBias(nn.Module):
    """A learned bias per output dimension [D], added last: a decoder's output bias that convolutions (one bias
    per channel) lack, so that ``start_at_marginal`` can start p(x|z) at each pixel's marginal."""

    def __init__(self, width: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


def conv_sizes(image_shape: tuple[int, int, int], channels: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """The (C, H, W) after each stride-2 convolution (kernel 4, padding 1: H -> floor(H / 2)), the image first."""
    shapes = [tuple(image_shape)]
    for c in channels:
        _, h, w = shapes[-1]
        shapes.append((c, (h - 2) // 2 + 1, (w - 2) // 2 + 1))
    return shapes  # type: ignore[return-value]


def conv_features(image_shape: tuple[int, int, int], channels: tuple[int, ...]) -> ImageConvs:
    """DCGAN-like encoder features (Radford et al. 2016, without batch norm, which would tie each example's loss
    to its minibatch): per entry of ``channels`` a 4x4 convolution of stride 2 and a ReLU. [..., D] -> [..., F]."""
    shapes = conv_sizes(image_shape, channels)
    layers: list[nn.Module] = []
    for (c_in, _, _), (c_out, _, _) in zip(shapes[:-1], shapes[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
    return ImageConvs(image_shape, nn.Sequential(*layers))


def conv_image(image_shape: tuple[int, int, int], channels: tuple[int, ...]) -> ImageConvs:
    """The mirror of ``conv_features``: transposed 4x4 convolutions of stride 2 (output padding where an odd size
    was halved) with ReLUs between, from the last features (C', H', W') back to ``image_shape``; the last one has
    no bias (``PixelBias`` follows). [..., F] -> [..., D]."""
    shapes = conv_sizes(image_shape, channels)[::-1]
    layers: list[nn.Module] = []
    for i, ((c_in, h_in, w_in), (c_out, h, w)) in enumerate(zip(shapes[:-1], shapes[1:], strict=True)):
        last = i == len(shapes) - 2
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not last,
                                         output_padding=(h - 2 * h_in, w - 2 * w_in)))
        if not last:
            layers.append(nn.ReLU())
    return ImageConvs(shapes[0], nn.Sequential(*layers))


def encoder_network(config, out_dim: int, hidden: tuple[int, ...] | None = None) -> nn.Sequential:
    """x [..., D] -> [..., out_dim]: the perceptron of widths ``hidden`` (default ``config.hidden``), behind
    ``conv_features`` where ``config.network`` is "conv". The last module is the output ``nn.Linear`` (a posterior
    family widens it)."""
    features, width = image_features(config)
    return nn.Sequential(*features, *mlp(width, tuple(config.hidden if hidden is None else hidden), out_dim))


def image_features(config) -> tuple[nn.Sequential, int]:
    """The convolutional features of x [..., D] (``conv_features``, a ReLU after each convolution) for
    ``network="conv"``, empty (the identity) for an MLP; and their width F (D for an MLP)."""
    if config.network != "conv":
        return nn.Sequential(), config.input_dim
    convs = conv_features(config.image_shape, config.channels)
    return nn.Sequential(convs), convs.out_features


def decoder_network(config, in_dim: int) -> nn.Sequential:
    """z [..., in_dim] -> the likelihood's parameters [..., D]: the perceptron of ``config.decoder_hidden``, then for
    ``network="conv"`` a ReLU, ``conv_image`` and a ``PixelBias``. The last module has the output ``bias`` [D]."""
    hidden = tuple(config.decoder_hidden or ())
    if config.network != "conv":
        return mlp(in_dim, hidden, config.input_dim)
    image = conv_image(config.image_shape, config.channels)
    return nn.Sequential(*mlp(in_dim, hidden, image.in_features), nn.ReLU(), image, PixelBias(config.input_dim))


__all__ = ["mlp", "ImageConvs", "PixelBias", "conv_sizes", "conv_features", "conv_image", "encoder_network",
           "decoder_network", "image_features"]
