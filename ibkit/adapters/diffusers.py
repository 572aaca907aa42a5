"""diffusers' ``AutoencoderKL`` (diffusers 0.42.1, ``pip install ibkit[diffusers]``), Stable Diffusion's first stage,
in the model protocol: ``wrap(vae, *, likelihood, scaled=False)``.

The posterior is ``vae.encode(2 x - 1).latent_dist``, a diagonal Gaussian over the latent [N, c, H/f, W/f]
(c = 4 and f = 8 for Stable Diffusion), flattened to [N, d]: q(z|x) = N(mean, exp(logvar)). diffusers clamps logvar
to [-30, 20] before anything else reads it; ``clamped_fraction(x)`` says how many of the latent's log variances the
clamp moved (where it binds, the posterior measured is the clamped one, as diffusers samples and scores it).

The prior is N(0, I), on the latent as it is (``scaled=False``: diffusers' own ``latent_dist.kl()``) or on the latent
times ``vae.config.scaling_factor`` s (``scaled=True``: the latent the diffusion model is trained on, Rombach et al.
2022, section 4.3.2). The second is N(0, s^-2 I) on the unscaled latent, so its rate is
1/2 sum_i [s^2 (mu_i^2 + sigma_i^2) - 1 - log(s^2 sigma_i^2)].

The likelihood is an explicit choice, as the VAE was trained with an L1 / perceptual / GAN loss and a KL weight of
about 1e-6, not a likelihood: ``likelihood=sigma`` makes it the Gaussian N(decode(z), sigma^2 I) on diffusers'
[-1, 1] pixels, which on ibkit's [0, 1] pixels is N((decode(z) + 1) / 2, (sigma / 2)^2 I) (the densities differ by
the Jacobian 2^D); ``likelihood=None`` measures the distortion as MSE and PSNR only.

Per latent channel and position: ``ibkit.adapters.latents`` (``channel_rates``, ``rate_map``) reads
``latent_shapes``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from ibkit.adapters.images import ImageLatentModel

LOGVAR_CLAMP = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamps logvar to this range


class LatentDiffusionVAE(ImageLatentModel):
    """A diffusers ``AutoencoderKL`` as a latent-variable model (module docstring). Made by ``wrap``.

    Shapes: x [N, 3 H W] in [0, 1]; z [..., N, d], d = c (H/f) (W/f) with f = 2^(len(block_out_channels) - 1).

    Args:
        vae: the ``AutoencoderKL`` (used as it is).
        sigma: the likelihood's standard deviation on [-1, 1] pixels, or None.
        scaled: the prior N(0, I) on the latent times ``scaling_factor`` (else on the latent as it is).
        image_shape: (C, H, W), or None: square images of the VAE's ``in_channels`` read from the data.
    """

    def __init__(self, vae, *, sigma: float | None, scaled: bool, image_shape):
        super().__init__(image_shape=image_shape, sigma=None if sigma is None else sigma / 2,
                         channels=vae.config.in_channels)
        self.vae, self.scaled = vae, scaled
        self.scale = float(vae.config.scaling_factor) if scaled else 1.0
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def latent_shapes_for(self, image_shape):
        _, h, w = image_shape
        return [(self.vae.config.latent_channels, h // self.factor, w // self.factor)]

    def latent_dist(self, x: Tensor):
        """diffusers' own ``latent_dist`` of x [N, D] in [0, 1] (the VAE sees 2 x - 1)."""
        return self.vae.encode(2 * self.images(x) - 1).latent_dist

    def posterior_params(self, x: Tensor) -> Tensor:
        """h [N, 2d]: the (scaled) latent's mean and log variance, flattened; logvar as diffusers clamps it.

        Args:
            x: [N, D] images in [0, 1].

        Returns:
            [N, 2d].
        """
        dist = self.latent_dist(x)
        return torch.cat([dist.mean.flatten(1) * self.scale, dist.logvar.flatten(1) + 2 * math.log(self.scale)], -1)

    def posterior_from_params(self, h: Tensor) -> Independent:
        """q(z|x) = N(mean, exp(logvar)) from h [N, 2d]: batch_shape [N], event_shape [d]."""
        mean, logvar = h.chunk(2, -1)
        return Independent(Normal(mean, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)

    def posterior(self, x: Tensor) -> Independent:
        """q(z|x): batch_shape [N], event_shape [d].

        Args:
            x: [N, D] images in [0, 1].

        Returns:
            the diagonal Gaussian.
        """
        return self.posterior_from_params(self.posterior_params(x))

    def prior(self) -> Independent:
        """p(z) = N(0, I_d) on the (scaled) latent of the current image shape."""
        d = sum(self.latent_dims)
        zeros = torch.zeros(d, device=self.vae.device, dtype=self.vae.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean [N, d]."""
        return self.posterior_params(x).chunk(2, -1)[0]

    def decode_images(self, z: Tensor) -> Tensor:
        return (self.vae.decode(self.maps(z)[0] / self.scale).sample + 1) / 2

    def clamped_fraction(self, x: Tensor) -> float:
        """The share of the latent's log variances that diffusers' clamp to [-30, 20] moved, over the rows of x.

        Args:
            x: [N, D] images in [0, 1].

        Returns:
            a fraction in [0, 1]; 0 where the clamp does not bind.
        """
        with torch.no_grad():
            raw = self.latent_dist(x).parameters.chunk(2, dim=1)[1]
        return float(((raw < LOGVAR_CLAMP[0]) | (raw > LOGVAR_CLAMP[1])).double().mean())


def wrap(vae, *, likelihood: float | None, scaled: bool = False,
         image_shape: tuple[int, int, int] | None = None) -> LatentDiffusionVAE:
    """A diffusers ``AutoencoderKL`` as an ibkit model that every estimator measures (module docstring).

    Args:
        vae: an ``AutoencoderKL`` (``AutoencoderKL.from_pretrained(...)`` or a small one made from a config).
        likelihood: sigma of the Gaussian on [-1, 1] pixels (> 0), or None for distortion only: required, since
            the VAE was not trained as a likelihood and the choice sets every number that reads log p(x|z).
        scaled: the prior N(0, I) on the latent times ``vae.config.scaling_factor``.
        image_shape: (C, H, W) with H and W multiples of the VAE's downsampling factor, or None: square images read
            from the data.

    Returns:
        the ``LatentDiffusionVAE``; the VAE is used as it is, not copied.

    Raises:
        ValueError: no diffusers installed, a vae that is no ``AutoencoderKL``, or sigma <= 0.
    """
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ValueError("ibkit.adapters.diffusers needs diffusers; install the extra: pip install "
                         "'ibkit[diffusers]'") from None
    if not isinstance(vae, AutoencoderKL):
        raise ValueError(f"vae is a {type(vae).__name__}, not a diffusers AutoencoderKL")
    if likelihood is not None and (isinstance(likelihood, bool) or not isinstance(likelihood, (int, float))
                                   or not likelihood > 0):
        raise ValueError(f"likelihood={likelihood!r} must be sigma > 0 of the Gaussian on [-1, 1] pixels (e.g. 0.1), "
                         "or None for distortion only")
    return LatentDiffusionVAE(vae, sigma=None if likelihood is None else float(likelihood), scaled=bool(scaled),
                              image_shape=image_shape)


__all__ = ["wrap", "LatentDiffusionVAE", "LOGVAR_CLAMP"]
