"""Probe channels: measure the information a code carries through added Gaussian noise of known std."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ibkit.checks import check_code, check_number, check_posterior
from ibkit.distributions import UnsupportedPosterior, add_noise
from ibkit.estimators._common import model_device

# the optional parts of the protocol (ibkit.interface) a probe passes on from its model when the model has them
FORWARDED = frozenset({"log_likelihood", "decode", "input_dim", "check_data", "support"})


class Probe:
    """A protocol model made from ``model`` plus a Gaussian channel of std ``sigma`` on its code.

    Deterministic or sparse code (anything with ``encode`` and no ``posterior``): q(z|x) = N(encode(x), sigma^2 I).
    Model with a posterior: q(z|x) convolved with N(0, sigma^2 I) (``ibkit.distributions.add_noise``: a
    Gaussian's covariance gains sigma^2 I, the model's own channel with extra probe noise).
    Prior: the model's own ``prior()`` where it has one, else N(0, I_d) with d the code's width (read from the
    code itself), so the probe's rate E_x KL(N(f(x), sigma^2 I) || N(0, I)) is a well-defined upper bound on the
    information through the probe channel. ``log_likelihood``, ``decode``, ``input_dim``, ``check_data`` and
    ``support`` are the model's, where it has them (and absent where it does not). As sigma -> 0 the information
    of a deterministic code through the probe grows without bound (up to log N on N data points: Goldfeld et
    al. 2019).

    Args:
        model: a model with ``encode(x)`` (a deterministic code) or ``posterior(x)``.
        sigma: the probe noise's std, > 0.

    Raises:
        ValueError: a sigma <= 0, or a model with neither ``encode`` nor ``posterior``.
    """

    def __init__(self, model, sigma: float):
        check_number("sigma", sigma, low=0, low_open=True)
        if not (callable(getattr(model, "posterior", None)) or callable(getattr(model, "encode", None))):
            raise ValueError(
                f"probe needs a model with encode(x) (a deterministic code) or posterior(x); "
                f"got {type(model).__name__}, which has neither"
            )
        self.model = model
        self.sigma = float(sigma)
        self._width: int | None = None  # the code's width d, known once a code has been seen

    def __getattr__(self, name: str):
        model = self.__dict__.get("model")
        if name in FORWARDED and model is not None:
            return getattr(model, name)  # AttributeError where the model lacks it: the probe lacks it too
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def parameters(self):
        return getattr(self.model, "parameters", lambda: iter(()))()

    def buffers(self):
        return getattr(self.model, "buffers", lambda: iter(()))()

    def encode(self, x: Tensor) -> Tensor:
        """The channel's input: the code [N, d] (the posterior mean for stochastic models).

        Args:
            x: [N, D] data.

        Returns:
            [N, d] the mean of the probed q(z|x): the code, or the model's posterior mean.
        """
        return self.posterior(x).mean

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x) of the probed channel: batch_shape [N], event_shape [d].

        Args:
            x: [N, D] data.

        Returns:
            N(encode(x), sigma^2 I) for a deterministic code, else the model's q(z|x) convolved with N(0, sigma^2 I).

        Raises:
            UnsupportedPosterior: a posterior family ``ibkit.distributions.add_noise`` cannot add noise to.
        """
        name = type(self.model).__name__
        if not callable(getattr(self.model, "posterior", None)):
            code = self.model.encode(x)
            self._width = check_code(code, len(x), name)
            return Independent(Normal(code, torch.full_like(code, self.sigma), validate_args=False), 1,
                               validate_args=False)
        q = self.model.posterior(x)
        self._width = check_posterior(q, len(x), name)
        try:
            return add_noise(q, self.sigma)
        except UnsupportedPosterior as e:
            raise UnsupportedPosterior(f"probe(sigma={self.sigma:g}) cannot add its noise to {name}.posterior: "
                                       f"{e}") from None

    def prior(self) -> Distribution:
        """The model's prior, or N(0, I_d) with d the width of the code (its ``latent_dim`` before any code is seen).

        Returns:
            p(z), event_shape [d].

        Raises:
            ValueError: a model without a prior or ``latent_dim`` whose code has not been seen yet.
        """
        if callable(getattr(self.model, "prior", None)):
            return self.model.prior()
        d = self._width if self._width is not None else getattr(self.model, "latent_dim", None)
        if not isinstance(d, int):
            raise ValueError(f"the probe's prior N(0, I_d) takes d from the code of {type(self.model).__name__}, "
                             "and none has been seen yet: call posterior(x) first (every estimator does)")
        zeros = torch.zeros(d, device=model_device(self.model))
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)


def probe(model, sigma: float) -> Probe:
    """Wrap ``model`` in a Gaussian probe channel of std ``sigma`` (see ``Probe``).

    Args:
        model: a model with ``encode(x)`` (a deterministic code) or ``posterior(x)``.
        sigma: the probe noise's std, > 0.

    Returns:
        the ``Probe``, a protocol model that every estimator accepts.
    """
    return Probe(model, sigma)
