"""CompressAI's learned image codecs (compressai 1.2.8, ``pip install ibkit[compressai]``) in the model protocol:
``wrap(net, *, lmbda=None)``.

A codec of the Ballé family is a variational autoencoder whose posterior is a unit box (Ballé et al. 2018,
"Variational image compression with a scale hyperprior", section 2): the analysis transform gives y = g_a(x), and
training adds uniform noise, y~ = y + u, u ~ U(-1/2, 1/2), which is a draw of

    q(y~ | x) = prod_i U(y~_i; y_i - 1/2, y_i + 1/2)        (log q = 0 inside the box).

The prior is the entropy model's density convolved with that box, which is what CompressAI's forward pass returns as
``likelihoods``: the factorised ``EntropyBottleneck``, p(y~_i) = c(y~_i + 1/2) - c(y~_i - 1/2) with c its learned
cumulative; for hyperprior models a second layer z = h_a(y) (``bmshj2018_hyperprior``: h_a(|y|)) with its own box and
the factorised prior, and y~ | z~ from ``GaussianConditional``: N(mu, s^2) convolved with the box, (s, mu) = h_s(z~)
(mu = 0 for the scale-only model). So the rate KL(q || p) = E_q[-log p(y~, z~)] is CompressAI's bpp term in nats per
image, and the adapter is hierarchical: layer 1 is y (nearest the data), layer 2 is z, ``E.per_layer`` splits the
rate between them. Both likelihoods are floored at CompressAI's ``likelihood_bound`` (1e-9), as its forward pass
does, so the numbers are CompressAI's own.

The likelihood is the Gaussian that the rate-distortion loss L = lambda 255^2 MSE + bpp implies: per image, L H W
ln 2 = KL + ln 2 lambda 255^2 / C sum_j (x_j - x^_j)^2, which is the negative ELBO (up to a constant) of

    p(x | y~) = N(x; g_s(y~), sigma^2 I),   sigma^2 = C / (2 ln 2 lambda 255^2)        (x in [0, 1], C channels),

so sigma = 0.136 at quality 1 (lambda = 0.0018) and 0.0136 at quality 8 (0.18). ``LAMBDAS`` holds CompressAI's
per-quality values for the MSE models. Without lambda the model has no log p(x|z): rate, MSE and PSNR only.

``compressed_bits(x)`` puts beside the rate the two numbers codec papers report: the ideal bits of the *rounded*
latent under the same entropy model (CompressAI's evaluation-mode likelihoods) and the real bits of
``net.compress(x)`` (after ``net.update()``), per image.

Covered: ``FactorizedPrior`` (``bmshj2018_factorized``, also its ReLU variant), ``ScaleHyperprior``
(``bmshj2018_hyperprior``) and ``MeanScaleHyperprior`` (``mbt2018_mean``). The autoregressive context models
(``mbt2018``, ``cheng2020_*``) are refused by name: CompressAI's forward pass draws the context's noise and the
likelihood's noise separately, so no one posterior matches its numbers.
"""

from __future__ import annotations

import math
import typing

import pandas as pd
import torch
from torch import Tensor
from torch.distributions import Distribution, Uniform, constraints

from ibkit.adapters.images import IMAGES_PER_CALL, ImageLatentModel
from ibkit.checks import check_number

LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}  # MSE models
ARCHITECTURES = ("bmshj2018_factorized", "bmshj2018_factorized_relu", "bmshj2018_hyperprior", "mbt2018_mean")
COVERED = {"FactorizedPrior": "factorized", "FactorizedPriorReLU": "factorized", "ScaleHyperprior": "scale",
           "MeanScaleHyperprior": "mean_scale"}
_NO_SAMPLE_SHAPE = torch.Size()


def sigma_of(lmbda: float, channels: int = 3) -> float:
    """The likelihood's standard deviation on [0, 1] pixels that CompressAI's loss lambda 255^2 MSE + bpp implies:
    sigma = sqrt(C / (2 ln 2 lambda 255^2)) (module docstring).

    Args:
        lmbda: the rate-distortion trade-off lambda (> 0).
        channels: C, the image's channels (MSE is their mean).

    Returns:
        sigma.
    """
    check_number("lmbda", lmbda, low=0, low_open=True)
    return math.sqrt(channels / (2 * math.log(2) * lmbda * 255 ** 2))


class CompressAIModel(ImageLatentModel):
    """A CompressAI codec as a latent-variable model (module docstring). Made by ``wrap``.

    Shapes: x [N, C H W] in [0, 1]; z [..., N, d] = (y~, z~) flattened, d_1 = M (H/16) (W/16) (and d_2 = N_z (H/64)
    (W/64) for hyperprior models).

    Args:
        net: the CompressAI model (used as it is; ``compressed_bits`` calls its ``update()``).
        kind: "factorized", "scale" or "mean_scale".
        lmbda: lambda of its loss, or None (no likelihood).
        image_shape: (C, H, W), or None (square RGB images read from the data).
    """

    def __init__(self, net, kind: str, *, lmbda: float | None, image_shape):
        super().__init__(image_shape=image_shape, sigma=None if lmbda is None else sigma_of(lmbda))
        self.net, self.kind, self.lmbda = net, kind, lmbda

    def latent_shapes_for(self, image_shape):
        _, h, w = image_shape
        multiple = 16 if self.kind == "factorized" else 64  # the transforms' strides: 2^4, and 2^6 to the hyper-latent
        if h % multiple or w % multiple:
            raise ValueError(f"images of shape {tuple(image_shape)}: a {self.kind} codec needs image sides that are "
                             f"multiples of {multiple} (its analysis transforms halve them {int(math.log2(multiple))} "
                             "times); crop or resize them (ibkit analyse --size)")
        y = (self.net.g_a[-1].out_channels, h // 16, w // 16)
        if self.kind == "factorized":
            return [y]
        return [y, (self.net.h_a[-1].out_channels, h // 64, w // 64)]

    def centres(self, x: Tensor) -> Tensor:
        """The boxes' centres [N, d]: y = g_a(x), and z = h_a(y) for hyperprior models, flattened."""
        y = self.net.g_a(self.images(x))
        parts = [y] if self.kind == "factorized" else [y, self.net.h_a(y.abs() if self.kind == "scale" else y)]
        return torch.cat([p.flatten(1) for p in parts], -1)

    def posterior(self, x: Tensor) -> BoxPosterior:
        """q(z|x): the unit box around the centres, batch_shape [N], event_shape [d].

        Args:
            x: [N, D] images in [0, 1].

        Returns:
            the ``BoxPosterior``.
        """
        return BoxPosterior(self, self.centres(x))

    def encode(self, x: Tensor) -> Tensor:
        """The box centres [N, d] (the posterior mean)."""
        return self.centres(x)

    def prior(self) -> CodecPrior:
        """p(z): the entropy model's density convolved with the box, event_shape [d] of the current image shape."""
        return CodecPrior(self)

    def unit_log_prior(self, z: Tensor) -> Tensor:
        """log p of each latent element [..., d] at z [..., d]: log p(y~_i | z~) then log p(z~_i) (hyperprior), or
        log p(y~_i) (factorised), with CompressAI's likelihood floor; ``IMAGES_PER_CALL`` codes at a time.

        Args:
            z: [..., d] codes.

        Returns:
            [..., d] the log-likelihood of each element in nats.
        """
        flat = z.reshape(-1, z.shape[-1])
        out = [self._unit_log_prior(flat[i: i + IMAGES_PER_CALL]) for i in range(0, len(flat), IMAGES_PER_CALL)]
        return torch.cat(out).reshape(z.shape)

    def _unit_log_prior(self, z: Tensor) -> Tensor:
        maps = self.maps(z)
        if self.kind == "factorized":
            return _factorized_log_prob(self.net.entropy_bottleneck, maps[0]).flatten(1)
        y, hyper = maps
        params = self.net.h_s(hyper)
        scales, means = params.chunk(2, 1) if self.kind == "mean_scale" else (params, None)
        conditional = self.net.gaussian_conditional
        lik = conditional._likelihood(y, scales, means)
        if conditional.use_likelihood_bound:
            lik = conditional.likelihood_lower_bound(lik)
        return torch.cat([lik.log().flatten(1),
                          _factorized_log_prob(self.net.entropy_bottleneck, hyper).flatten(1)], -1)

    def decode_images(self, z: Tensor) -> Tensor:
        return self.net.g_s(self.maps(z)[0])

    def compressed_bits(self, x: Tensor, *, n_samples: int = 64, seed: int = 0) -> pd.DataFrame:
        """Per image: the rate (ibkit's KL, the noisy latent's expected code length), the ideal bits of the rounded
        latent under the same entropy model (CompressAI's evaluation-mode likelihoods: what "likelihood bpp" means
        in codec papers) and the real bits of ``net.compress`` (after ``net.update()``, which builds the coder's
        tables where missing), each also in bits per pixel. CompressAI issue #236 is the gap between the last two.

        Args:
            x: [N, D] images in [0, 1].
            n_samples: box draws per image for the rate (``E.rate``).
            seed: seeds them.

        Returns:
            a DataFrame, one row per image: ``image``, ``pixels``, ``rate_bits``, ``rate_bits_se``, ``ideal_bits``,
                ``real_bits`` and the three ``*_bpp``.
        """
        from ibkit import estimators as E

        rate = E.rate(self, x, n_samples=n_samples, seed=seed, per_example=True) / math.log(2)
        rate_se = E.rate_standard_error(self, x, n_samples=n_samples, seed=seed, per_example=True) / math.log(2)
        images = self.images(x.to(next(self.net.parameters()).device))
        was_training = self.net.training
        self.net.eval()
        try:
            self.net.update()
            with torch.no_grad():
                likelihoods = self.net(images)["likelihoods"]
                ideal = sum(-lik.log2().flatten(1).sum(-1) for lik in likelihoods.values())
                strings = self.net.compress(images)["strings"]
        finally:
            self.net.train(was_training)
        real = [8 * sum(len(s[n]) for s in strings) for n in range(len(x))]
        pixels = images.shape[-1] * images.shape[-2]
        table = pd.DataFrame(dict(image=range(len(x)), pixels=pixels, rate_bits=torch.as_tensor(rate).tolist(),
                                  rate_bits_se=torch.as_tensor(rate_se).tolist(),
                                  ideal_bits=typing.cast(Tensor, ideal).cpu().tolist(), real_bits=real))
        for name in ("rate", "ideal", "real"):
            table[f"{name}_bpp"] = table[f"{name}_bits"] / pixels
        return table


class BoxPosterior(Distribution):
    """q(z|x) of a codec: independent unit boxes around the centres c [N, d], U(c - 1/2, c + 1/2) per element;
    batch_shape [N], event_shape [d]. log q = 0 inside the box (-inf outside), so the KL against the codec's prior is
    E_q[-log p(z)], and ``unit_kl`` splits it per element. Every layer's box depends on x alone (the hyper-latent
    z = h_a(y) is a function of the centre y, not of the draw), so ``layer(k, ...)`` has no random parents."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: CompressAIModel, centres: Tensor):
        self.model, self.centres = model, centres
        super().__init__(centres.shape[:-1], centres.shape[-1:], validate_args=False)

    def rsample(self, sample_shape=_NO_SAMPLE_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        return self.centres + torch.rand(shape, dtype=self.centres.dtype, device=self.centres.device) - 0.5

    def sample(self, sample_shape=_NO_SAMPLE_SHAPE) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        inside = ((value - self.centres).abs() <= 0.5).all(-1)
        return torch.where(inside, 0.0, -math.inf).to(value.dtype)

    def entropy(self) -> Tensor:
        return self.centres.new_zeros(self.batch_shape)

    @property
    def mean(self) -> Tensor:
        return self.centres

    def unit_kl(self, value: Tensor) -> Tensor:
        """Each element's term -log p at the draw ``value`` [..., N, d] (log q = 0): their sum is an unbiased
        estimate of KL(q || p), their sum over a layer that layer's conditional KL."""
        return -self.model.unit_log_prior(value)

    def kl_samples(self, p: Distribution, z: Tensor) -> Tensor:
        """One unbiased estimate of KL(q || p) per draw z [S, N, d]: -log p(z) (log q(z) = 0 on the box)."""
        return self.unit_kl(z).sum(-1) if isinstance(p, CodecPrior) and p.model is self.model else -p.log_prob(z)

    def layer(self, k: int, z) -> Uniform:
        """The box of layer index k (k = 0 is y), elementwise [N, d_k]; it has no random parents."""
        centres = self.model.layers(self.centres)[k]
        return Uniform(centres - 0.5, centres + 0.5, validate_args=False)

    def layer_means(self, n_samples: int = 0, seed: int = 0) -> Tensor:
        """E_q[z] [N, d]: the centres (exact; the arguments are the hierarchical posteriors' and unused)."""
        return self.centres


class CodecPrior(Distribution):
    """p(z) of a codec: the entropy model's density convolved with the unit box (``CompressAIModel.unit_log_prior``
    summed); batch_shape [], event_shape [d]. Not sampled: the codec's densities have no sampler."""

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, model: CompressAIModel):
        self.model = model
        super().__init__(torch.Size(), torch.Size([sum(model.latent_dims)]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.model.unit_log_prior(value).sum(-1)


def _factorized_log_prob(bottleneck, maps: Tensor) -> Tensor:
    """log p of each element of the feature maps [B, c, h, w] under CompressAI's ``EntropyBottleneck`` (its density
    convolved with the unit box, floored as its forward pass floors it): [B, c, h, w]."""
    b, c = maps.shape[:2]
    values = maps.transpose(0, 1).reshape(c, 1, -1)  # the layout its forward pass gives _likelihood: [C, 1, B h w]
    lik = bottleneck._likelihood(values)[0]
    if bottleneck.use_likelihood_bound:
        lik = bottleneck.likelihood_lower_bound(lik)
    return lik.log().reshape(c, b, *maps.shape[2:]).transpose(0, 1)


def wrap(net, *, lmbda: float | None = None, quality: int | None = None,
         image_shape: tuple[int, int, int] | None = None) -> CompressAIModel:
    """A CompressAI codec as an ibkit model that every estimator measures (module docstring).

    Args:
        net: a CompressAI model of a covered class (``compressai.zoo.bmshj2018_factorized(quality, pretrained=...)``,
            ``bmshj2018_hyperprior``, ``mbt2018_mean``).
        lmbda: lambda of the loss it was trained with: the likelihood's sigma follows (``sigma_of``); None: the
            MSE table's value at ``quality`` where given, else no likelihood (rate, MSE and PSNR only).
        quality: the zoo's quality level 1..8, for lambda's default (``LAMBDAS``, CompressAI's MSE models).
        image_shape: (C, H, W) with H and W multiples of 64, or None: square RGB images read from the data.

    Returns:
        the ``CompressAIModel``; the net is used as it is, not copied.

    Raises:
        ValueError: no compressai installed, a net of a class not covered, lambda <= 0, or an unknown quality.
    """
    CompressionModel = _compressai().models.CompressionModel
    name = type(net).__name__
    if not isinstance(net, CompressionModel):
        raise ValueError(f"net is a {name}, not a CompressAI model (compressai.models.CompressionModel)")
    if name not in COVERED:
        raise ValueError(f"CompressAI's {name} is not covered: ibkit.adapters.compressai takes "
                         f"{', '.join(COVERED)} (the zoo's {', '.join(ARCHITECTURES)}); the autoregressive context "
                         "models draw their context and their likelihood with separate noise")
    if quality is not None:
        _check_quality(quality)
        lmbda = LAMBDAS[quality] if lmbda is None else lmbda
    return CompressAIModel(net, COVERED[name], lmbda=lmbda, image_shape=image_shape)


def load(architecture: str, quality: int, *, pretrained: bool = False) -> CompressAIModel:
    """``compressai.zoo.ARCHITECTURE(quality, metric="mse", pretrained=...)`` wrapped with its quality's lambda: what
    ``ibkit analyse --compressai ARCHITECTURE:QUALITY [--pretrained]`` measures. Random weights (seeded by the
    caller's torch RNG) unless ``pretrained``, which downloads CompressAI's weights on first use.

    Args:
        architecture: one of ``ARCHITECTURES``.
        quality: 1..8.
        pretrained: load CompressAI's trained weights.

    Returns:
        the wrapped codec.

    Raises:
        ValueError: an unknown architecture or quality, or no compressai installed.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r}; ibkit.adapters.compressai covers {', '.join(ARCHITECTURES)}")
    _check_quality(quality)
    net = getattr(_compressai().zoo, architecture)(quality=quality, metric="mse", pretrained=pretrained)
    return wrap(net, quality=quality)


def _compressai():
    """The compressai package (with its models and zoo), or a ValueError saying how to install it."""
    try:
        import compressai.models
        import compressai.zoo
    except ImportError:
        raise ValueError("ibkit.adapters.compressai needs compressai; install the extra: pip install "
                         "'ibkit[compressai]'") from None
    return compressai


def _check_quality(quality) -> None:
    if quality not in LAMBDAS:
        raise ValueError(f"quality={quality!r}; CompressAI's MSE models have qualities {min(LAMBDAS)}..{max(LAMBDAS)}")


__all__ = ["wrap", "load", "sigma_of", "CompressAIModel", "BoxPosterior", "CodecPrior", "LAMBDAS", "ARCHITECTURES"]
