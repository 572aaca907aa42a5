"""The base autoencoder every variant derives from, overriding one hook.

``Autoencoder`` has a deterministic code z = f(x); ``StochasticAutoencoder`` a posterior q(z|x) and a
prior p(z) = N(0, I), and so follows the model protocol of ``ibkit.interface``. Both compute per-example
distortion -log p(x|z) and rate KL(q(z|x) || p(z)); a variant adds its ``regularizer``.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ibkit.config import knob_fields, required_fields
from ibkit.distributions import kl_or_monte_carlo, rsample_from
from ibkit.interface import ForwardOutput
from ibkit.models.config import ModelConfig
from ibkit.models.networks import decoder_network, encoder_network
from ibkit.registry import LIKELIHOODS
from ibkit.seeding import seeded


class Autoencoder(nn.Module):
    """Deterministic autoencoder: z = f(x), loss = -log p(x|z) + regularizer(z, rate).

    A kind's hyper-parameters marked ``knob`` in its ``Config`` (beta, noise, sparsity, ...) live in buffers of
    their names as well as in the config, so that ``fit_many`` can stack them across models like any weight.

    Args:
        config: the kind's ``Config`` (``ibkit.build_model`` and ``build`` make it from keyword fields).

    Raises:
        ValueError: a config of another class than the kind's ``Config``.
    """

    Config: type[ModelConfig] = ModelConfig  # each registered kind names its own config class
    KIND = ""  # the registered name, set by ``register_model``
    STARTS_AT_MARGINAL = True  # whether a sweep starts the decoder at the data's marginal (``start_at_marginal``)

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.Config):
            raise ValueError(f"{type(self).__name__} takes a {self.Config.__name__}; got {type(config).__name__}")
        self.config = config
        for name in knob_fields(config):  # a knob that is unset (None) is NaN
            value = getattr(config, name)
            self.register_buffer(name, torch.tensor(math.nan if value is None else float(value)), persistent=False)
        self.likelihood = LIKELIHOODS[config.likelihood](**({} if config.scale is None else {"scale": config.scale}))
        self.encoder = encoder_network(config, self.encoder_width())
        self.decoder = decoder_network(config, config.latent_dim)

    @classmethod
    def build(cls, input_dim: int, latent_dim: int, **fields) -> Autoencoder:
        """A model of this kind from the fields of its ``Config``, its weights drawn from the config's ``seed``
        without touching the global random state (``ibkit.build_model`` calls it through the registry).

        Args:
            input_dim: D, the width of the data.
            latent_dim: d, the width of the code.
            **fields: the other fields of ``cls.Config`` (hidden, likelihood, seed, the kind's knobs, ...).

        Returns:
            the untrained model.

        Raises:
            ValueError: a field the kind does not have (with those it has), or a required one missing.
        """
        known = [f.name for f in dataclasses.fields(cls.Config)]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            valid = [k for k in known if k not in ("input_dim", "latent_dim")]
            raise ValueError(f"unknown option(s) {unknown} for kind={cls.KIND!r}; its options: {valid}")
        missing = [k for k in required_fields(cls.Config) if k not in fields and k not in ("input_dim", "latent_dim")]
        if missing:
            raise ValueError(f"kind={cls.KIND!r} needs {', '.join(missing)} (e.g. {missing[0]}=0.1); none was given")
        config = cls.Config(input_dim=input_dim, latent_dim=latent_dim, **fields)
        with seeded(config.seed):
            return cls(config)

    @property
    def input_dim(self) -> int:
        """D, the width of the data."""
        return self.config.input_dim

    @property
    def latent_dim(self) -> int:
        """d, the width of the code."""
        return self.config.latent_dim

    @property
    def support(self):
        """The set the data must lie in (a ``torch.distributions.constraints`` object), the likelihood's."""
        return getattr(self.likelihood, "support", None)

    def check_data(self, x: Tensor, name: str = "x") -> None:
        """Refuse data x [N, D] outside the likelihood's support with a ValueError naming ``name``.

        Args:
            x: [N, D] data.
            name: what messages call x.

        Raises:
            ValueError: values outside the likelihood's support.
        """
        self.likelihood.check_data(x, name)

    def encoder_width(self) -> int:
        """Width of the encoder's output: the code itself here.

        Returns:
            the encoder's output width (d here; a stochastic kind's posterior parameters P).
        """
        return self.config.latent_dim

    def encode(self, x: Tensor) -> Tensor:
        """The deterministic code (or posterior mean) [N, d] of x [N, D].

        Args:
            x: [N, D] data.

        Returns:
            [N, d] the code.
        """
        return self.encoder(x)

    def sample_code(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The code the decoder sees, z [N, d], and the rate in groups [N, G] that sum to KL(q(z|x) || p(z)) (one
        group for most kinds; NaN: a deterministic code has no rate).

        Args:
            x: [N, D] data.
            eps: [1, N, d] standard normal noise for a stochastic code's sample; unused by a deterministic one.

        Returns:
            (z [N, d], the rate's groups [N, G]).
        """
        z = self.encode(x)
        return z, torch.full((*z.shape[:-1], 1), math.nan, device=z.device)

    def trained_rate(self, rate_terms: Tensor) -> Tensor:
        """The rate [N] the loss uses, from the rate's groups [N, G]: their sum here (a KL schedule's free bits
        clip it, ``ibkit.models.schedules``).

        Args:
            rate_terms: [N, G] the rate's groups (``sample_code``).

        Returns:
            [N] the rate the loss uses.
        """
        return rate_terms.sum(-1)

    def regularizer(self, z: Tensor, rate: Tensor) -> Tensor:
        """The variant's penalty [N] added to the distortion; the one hook variants override.

        Args:
            z: [N, d] the code the decoder sees.
            rate: [N] the trained rate (``trained_rate``).

        Returns:
            [N] the penalty: zero here.
        """
        return torch.zeros(z.shape[:-1], device=z.device)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) in nats for x [N, D] and z [..., N, d] (e.g. [S, N, d]); returns [..., N].

        Args:
            x: [N, D] data.
            z: [..., N, d] codes.

        Returns:
            [..., N] log p(x|z) in nats.
        """
        return self.likelihood.log_prob(x, self.decoder(z))

    def decode(self, z: Tensor) -> Tensor:
        """E[x|z], [..., N, D]: the likelihood's mean, for z [..., N, d].

        Args:
            z: [..., N, d] codes.

        Returns:
            [..., N, D] E[x|z] (the Bernoulli probabilities for binary data).
        """
        return self.likelihood.mean(self.decoder(z))

    def start_at_marginal(self, x: Tensor) -> None:
        """Set the decoder's output bias so that, before training, p(x|z) is each dimension's marginal over the
        rows of x [N, D] (Bernoulli: the logit of the mean pixel; Gaussian: the mean). The decoder then starts at
        the average image instead of chasing it, which otherwise pushes every code the same way: a tanh-bounded
        noisy AE's code saturated and stayed dead (MNIST, digits). ``run_grid`` calls it where ``STARTS_AT_MARGINAL``
        (not for a VAE).

        Args:
            x: [N, D] the training rows.
        """
        bias = typing.cast(Tensor, self.decoder[-1].bias)  # an nn.Linear's, or a conv decoder's PixelBias
        with torch.no_grad():
            bias.copy_(self.likelihood.marginal_params(x.to(bias.device)))

    def forward(self, x: Tensor, eps: Tensor | None = None) -> ForwardOutput:
        """Per-example distortion, rate and loss of x [N, D]. ``eps`` [1, N, d]: the standard normal noise of the
        code's sample (default: drawn from torch's global generator, as ``rsample`` does), for a caller that draws
        each model's noise from its own generator (``fit_many``).

        Args:
            x: [N, D] data.
            eps: [1, N, d] standard normal noise for the code's sample, or None.

        Returns:
            ``ForwardOutput``: ``distortion``, ``rate``, ``loss`` [N], ``z`` [N, d] and ``trained_rate`` [N].
        """
        z, rate_terms = self.sample_code(x, eps)
        distortion = -self.log_likelihood(x, z)
        rate, trained = rate_terms.sum(-1), self.trained_rate(rate_terms)
        return ForwardOutput(distortion=distortion, rate=rate, loss=distortion + self.regularizer(z, trained), z=z,
                             trained_rate=trained)


class StochasticAutoencoder(Autoencoder):
    """An autoencoder whose code is a sample of q(z|x); prior p(z) = N(0, I). Follows the model protocol.

    Args:
        config: the kind's ``Config``.
    """

    _prior_loc: Tensor  # [d] buffers of p(z)
    _prior_scale: Tensor

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.register_buffer("_prior_loc", torch.zeros(config.latent_dim), persistent=False)
        self.register_buffer("_prior_scale", torch.ones(config.latent_dim), persistent=False)

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x): batch_shape [N], event_shape [d].

        Args:
            x: [N, D] data.

        Returns:
            q(z|x), batch_shape [N], event_shape [d].
        """
        return self.posterior_from_params(self.posterior_params(x))

    def posterior_params(self, x: Tensor) -> Tensor:
        """The amortised variational parameters [N, P] of x [N, D]: the encoder's output.

        Args:
            x: [N, D] data.

        Returns:
            [N, P] the variational parameters.
        """
        return self.encoder(x)

    def posterior_from_params(self, h: Tensor) -> Distribution:
        """q(z|x) for the variational parameters h [N, P] (the hook a stochastic kind overrides).

        Args:
            h: [N, P] variational parameters (``posterior_params``).

        Returns:
            q(z|x), batch_shape [N], event_shape [d].
        """
        raise NotImplementedError

    def prior(self) -> Distribution:
        """p(z) = N(0, I_d), event_shape [d].

        Returns:
            p(z), event_shape [d].
        """
        return Independent(Normal(self._prior_loc, self._prior_scale, validate_args=False), 1, validate_args=False)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean E_q[z], [N, d].

        Args:
            x: [N, D] data.

        Returns:
            [N, d] E_q[z].
        """
        return self.posterior(x).mean

    def sample_code(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z ~ q(z|x) by reparameterisation [N, d] (of the given standard normal ``eps`` [1, N, d], if any), and
        KL(q(z|x) || p(z)) in groups [N, G] (``kl_terms``).

        Args:
            x: [N, D] data.
            eps: [1, N, d] standard normal noise to reparameterise, or None (drawn from torch's global generator).

        Returns:
            (z [N, d], the KL's groups [N, G]).
        """
        q = self.posterior(x)
        z = q.rsample((1,)) if eps is None else rsample_from(q, eps)  # [1, N, d]: the Monte Carlo KL reuses it
        return z[0], self.kl_terms(q, z)

    def kl_terms(self, q: Distribution, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) [N, 1] (closed form where torch has it, else Monte Carlo at the samples z [1, N, d]),
        one group; a kind that splits it (per dimension, per layer) overrides this.

        Args:
            q: q(z|x), batch_shape [N].
            z: [1, N, d] samples of q, for a Monte Carlo KL.

        Returns:
            [N, 1] the KL in nats.
        """
        return kl_or_monte_carlo(q, self.prior(), z).unsqueeze(-1)
