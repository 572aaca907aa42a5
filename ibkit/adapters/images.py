"""What the image adapters share (``ibkit.adapters.compressai``, ``ibkit.adapters.diffusers``): images flattened
at the boundary, latents that are feature maps, decoder calls a few images at a time, and a Gaussian likelihood of
fixed sigma on [0, 1] pixels.

Shapes: x [N, D] with D = C H W, pixels in [0, 1] (``ibkit.data.load("images", ...)``); the latent z [..., N, d] is
the concatenation of the flattened feature maps of its layers, layer l of shape (c_l, h_l, w_l), z_1 nearest the
data (``latent_shapes``, ``latent_dims``). Both kinds of network are fully convolutional, so the feature maps' sizes
follow the image's: an adapter made without ``image_shape`` reads a square image of C channels from the width D of
the data it is given (posterior, decode, log_likelihood), and keeps the last such shape for ``prior()``.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor, nn
from torch.distributions import constraints

from ibkit.checks import check_number
from ibkit.models.likelihoods import GaussianLikelihood

IMAGES_PER_CALL = 8  # images per decoder (and prior network) call: bounds the feature maps held at once


class ImageLatentModel(nn.Module):
    """The base of an adapter around an image autoencoder whose code is a stack of feature maps.

    A subclass gives ``latent_shapes_for(image_shape)`` (the feature maps' shapes) and ``decode_images(z)`` (codes
    [B, d] to the likelihood's mean [B, C, H, W] on [0, 1] pixels); this class gives the protocol's data side:
    ``decode``, ``log_likelihood`` (the Gaussian of fixed ``sigma``, or none), ``layers`` and the shapes.

    Args:
        image_shape: (C, H, W) of every image, or None: square images of ``channels`` channels, their side read from
            the data's width at each call.
        sigma: the likelihood's standard deviation on [0, 1] pixels, or None: no log p(x|z) (distortion, as MSE and
            PSNR, only; the estimators that need p(x|z) refuse the model and say so).
        channels: C of a square image whose shape is read from the data.
    """

    support = constraints.unit_interval  # pixels in [0, 1]

    def __init__(self, *, image_shape: tuple[int, ...] | None, sigma: float | None, channels: int = 3):
        super().__init__()
        if image_shape is not None:
            image_shape = tuple(image_shape)
            if len(image_shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in image_shape):
                raise ValueError(f"image_shape={image_shape!r} must be (C, H, W), three positive ints, e.g. "
                                 "(3, 64, 64)")
        self.fixed_shape, self.channels = image_shape, channels
        self._latest: tuple[int, ...] | None = image_shape
        if sigma is None:  # distortion only: the protocol's log_likelihood is absent (as ``posterior`` is for codes)
            self.log_likelihood = None  # type: ignore[method-assign, assignment]
            self.likelihood = None
        else:
            check_number("sigma", sigma, low=0, low_open=True)
            self.likelihood = GaussianLikelihood(scale=float(sigma))

    # shapes

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W): the given shape, else that of the last data seen.

        Raises:
            ValueError: no shape given and no data seen yet.
        """
        if self._latest is None:
            raise ValueError(f"{type(self).__name__} has no image shape yet: give image_shape=(C, H, W) to wrap, or "
                             "call posterior(x) first (a square image is read from the width of x)")
        return self._latest

    def shape_for(self, width: int) -> tuple[int, ...]:
        """The image shape (C, H, W) of data of ``width`` D = C H W (and it becomes the model's current shape).

        Args:
            width: D, the width of the flattened data.

        Returns:
            (C, H, W).

        Raises:
            ValueError: data of another width than the given image_shape, or (without one) not a square image of
                ``channels`` channels.
        """
        if self.fixed_shape is not None:
            if math.prod(self.fixed_shape) != width:
                raise ValueError(f"x has {width} values per row, but the model was wrapped for images of shape "
                                 f"{self.fixed_shape} ({math.prod(self.fixed_shape)} values)")
            return self.fixed_shape
        side = math.isqrt(width // self.channels)
        if side * side * self.channels != width:
            raise ValueError(f"x has {width} values per row, which is no square image of {self.channels} channels; "
                             "give image_shape=(C, H, W) to wrap")
        self._latest = (self.channels, side, side)
        return self._latest

    def images(self, x: Tensor) -> Tensor:
        """x [N, D] as images [N, C, H, W] (``shape_for``)."""
        return x.reshape(len(x), *self.shape_for(x.shape[-1]))

    def latent_shapes_for(self, image_shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """The feature maps' shapes [(c_1, h_1, w_1), ...] for images of ``image_shape``, z_1 nearest the data."""
        raise NotImplementedError

    @property
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """[(c_l, h_l, w_l)] of the current image shape, z_1 nearest the data."""
        return self.latent_shapes_for(self.image_shape)

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """(d_1, ..., d_L), d_l = c_l h_l w_l."""
        return tuple(math.prod(s) for s in self.latent_shapes)

    def layers(self, z: Tensor) -> list[Tensor]:
        """z [..., d] split into its layers [z_1 [..., d_1], ...]."""
        return list(z.split(self.latent_dims, dim=-1))

    def maps(self, z: Tensor) -> list[Tensor]:
        """Codes z [B, d] as the layers' feature maps [[B, c_l, h_l, w_l], ...]."""
        return [t.reshape(len(z), *shape) for t, shape in zip(self.layers(z), self.latent_shapes, strict=True)]

    # the data side

    def check_data(self, x: Tensor, name: str = "x") -> None:
        """Refuse pixels outside [0, 1] and rows that are no image of the model's shape."""
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise ValueError(f"{name} has values in [{low:.4g}, {high:.4g}]; {type(self).__name__} takes pixels in "
                             "[0, 1] (divide 8-bit images by 255; ibkit.data.load('images', ...) does)")
        self.shape_for(x.shape[-1])

    def decode_images(self, z: Tensor) -> Tensor:
        """Codes [B, d] to the likelihood's mean [B, C, H, W] on [0, 1] pixels (the subclass's decoder)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """E[x|z] [..., N, D] for codes z [..., N, d], decoded ``IMAGES_PER_CALL`` at a time.

        Args:
            z: [..., N, d] codes.

        Returns:
            [..., N, D] the reconstructions on [0, 1] pixels (not clamped).
        """
        flat = z.reshape(-1, z.shape[-1])
        out = torch.cat([self.decode_images(flat[i: i + IMAGES_PER_CALL]).reshape(len(flat[i: i + IMAGES_PER_CALL]),
                                                                                  -1)
                         for i in range(0, len(flat), IMAGES_PER_CALL)])
        return out.reshape(*z.shape[:-1], out.shape[-1])

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) = sum_j log N(x_j; mean_j(z), sigma^2) for x [N, D] and z [..., N, d]: [..., N]. Decoded
        ``IMAGES_PER_CALL`` codes at a time and reduced at once, so no [..., N, D] tensor is held.

        Args:
            x: [N, D] data.
            z: [..., N, d] codes.

        Returns:
            [..., N] log p(x|z) in nats.
        """
        assert self.likelihood is not None
        flat, n = z.reshape(-1, z.shape[-1]), len(x)
        out = []
        for i in range(0, len(flat), IMAGES_PER_CALL):
            rows = torch.arange(i, min(i + IMAGES_PER_CALL, len(flat)), device=x.device) % n  # z's rows are [..., N]
            mean = self.decode_images(flat[i: i + IMAGES_PER_CALL]).reshape(len(rows), -1)
            out.append(self.likelihood.log_prob(x[rows], mean))
        return torch.cat(out).reshape(z.shape[:-1])

    @property
    def sigma(self) -> float:
        """The likelihood's standard deviation on [0, 1] pixels (NaN without a likelihood)."""
        return math.nan if self.likelihood is None else float(self.likelihood.log_scale.exp())


def unit_rates(model: ImageLatentModel, x, *, n_samples: int = 16, seed: int = 0) -> list[Tensor]:
    """Each latent element's KL per image, as the layers' feature maps: [[N, c_l, h_l, w_l], ...] in nats
    (``E.kl_per_dim(per_example=True)``: closed form for a diagonal Gaussian, else ``n_samples`` draws per image).

    Args:
        model: an image adapter (``latent_shapes``).
        x: [N, D] images in [0, 1].
        n_samples: draws per image where the KL is Monte Carlo.
        seed: seeds them.

    Returns:
        one tensor per layer, z_1 first.
    """
    from ibkit import estimators as E

    per_unit = E.kl_per_dim(model, x, per_example=True, n_samples=n_samples, seed=seed)
    return model.maps(per_unit)


def channel_rates(model: ImageLatentModel, x, *, threshold: float = 0.1, n_samples: int = 16,
                  seed: int = 0) -> pd.DataFrame:
    """Where the rate goes among the latent's channels: one row per layer and channel, its rate (the KL of its
    feature map, summed over positions, mean over the images) with the standard error over the images, and whether
    it is active (rate above ``threshold`` nats per image). The rows' rates sum to ``E.rate``.

    Args:
        model: an image adapter (``latent_shapes``).
        x: [N, D] images in [0, 1].
        threshold: nats per image above which a channel counts as active.
        n_samples: draws per image where the KL is Monte Carlo.
        seed: seeds them.

    Returns:
        a DataFrame: ``layer`` (1 nearest the data), ``channel``, ``rate``, ``rate_se``, ``active``.
    """
    check_number("threshold", threshold, low=0)
    tables = []
    for layer, maps in enumerate(unit_rates(model, x, n_samples=n_samples, seed=seed), start=1):
        per_image = maps.double().flatten(2).sum(-1)  # [N, c]
        se = per_image.std(0) / math.sqrt(len(per_image)) if len(per_image) > 1 else torch.full_like(per_image[0],
                                                                                                      math.nan)
        rate = per_image.mean(0)
        tables.append(pd.DataFrame(dict(layer=layer, channel=range(len(rate)), rate=rate.tolist(), rate_se=se.tolist(),
                                        active=(rate > threshold).tolist())))
    return pd.concat(tables, ignore_index=True)


def rate_map(model: ImageLatentModel, x, *, layer: int = 1, n_samples: int = 16, seed: int = 0) -> Tensor:
    """Nats per latent position of each image: layer ``layer``'s KL summed over its channels, [N, h, w] (a figure
    lays it over the image, ``ibkit.plots.rate_map_figure``).

    Args:
        model: an image adapter (``latent_shapes``).
        x: [N, D] images in [0, 1].
        layer: 1 (nearest the data) .. L.
        n_samples: draws per image where the KL is Monte Carlo.
        seed: seeds them.

    Returns:
        [N, h_l, w_l] in nats.
    """
    maps = unit_rates(model, x, n_samples=n_samples, seed=seed)
    check_number("layer", layer, low=1, high=len(maps), integer=True)
    return maps[layer - 1].sum(1)


__all__ = ["ImageLatentModel", "IMAGES_PER_CALL", "unit_rates", "channel_rates", "rate_map"]
