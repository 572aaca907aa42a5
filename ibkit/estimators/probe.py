"""Probe channels: measure the information a code carries through added Gaussian noise of known std."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from ibkit.checks import check_number
from ibkit.interface import is_stochastic


class Probe:
    """A protocol model made from ``model`` plus a Gaussian channel of std ``sigma`` on its code.

    Deterministic or sparse code (anything with ``encode``): q(z|x) = N(encode(x), sigma^2 I), prior N(0, I).
    Stochastic model with a Gaussian posterior: q(z|x) convolved with N(0, sigma^2 I), i.e. the covariance
    gains sigma^2 I (the model's own channel with extra probe noise); prior the model's own. The decoder's
    ``log_likelihood`` is the model's. As sigma -> 0 the information of a deterministic code through the probe
    grows without bound (up to log N on N data points: Goldfeld et al. 2019).
    """

    def __init__(self, model, sigma: float):
        check_number("sigma", sigma, low=0, low_open=True)
        if not (is_stochastic(model) or callable(getattr(model, "encode", None))):
            raise ValueError(
                f"probe needs a model with encode(x) (a deterministic code) or posterior(x); "
                f"got {type(model).__name__}, which has neither"
            )
        self.model = model
        self.sigma = float(sigma)

    # what the estimators' checks and device lookup read from a model
    @property
    def config(self):
        return getattr(self.model, "config", None)

    @property
    def likelihood(self):
        return getattr(self.model, "likelihood", None)

    def parameters(self):
        return getattr(self.model, "parameters", lambda: iter(()))()

    def buffers(self):
        return getattr(self.model, "buffers", lambda: iter(()))()

    def encode(self, x: Tensor) -> Tensor:
        """The channel's input: the code [N, d] (the posterior mean for stochastic models)."""
        return self.posterior(x).mean

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x) of the probed channel: batch_shape [N], event_shape [d]."""
        if not is_stochastic(self.model):
            code = self.model.encode(x)
            return Independent(Normal(code, torch.full_like(code, self.sigma), validate_args=False), 1,
                               validate_args=False)
        q = self.model.posterior(x)
        if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
            scale = (q.base_dist.scale.pow(2) + self.sigma**2).sqrt()
            return Independent(Normal(q.base_dist.loc, scale, validate_args=False), 1, validate_args=False)
        if isinstance(q, MultivariateNormal):
            eye = torch.eye(q.event_shape[0], dtype=q.loc.dtype, device=q.loc.device)
            return MultivariateNormal(q.loc, covariance_matrix=q.covariance_matrix + self.sigma**2 * eye)
        raise ValueError(
            f"probe adds noise to Gaussian posteriors only (diagonal Normal or MultivariateNormal); "
            f"{type(self.model).__name__}.posterior returned {type(q).__name__}"
        )

    def prior(self) -> Distribution:
        """The model's prior, or N(0, I_d) for a deterministic code (d read from the model's latent_dim)."""
        if is_stochastic(self.model):
            return self.model.prior()
        d = getattr(self.model, "latent_dim", None) or getattr(self.config, "latent_dim", None)
        if d is None:
            raise ValueError(f"{type(self.model).__name__} has no latent_dim attribute; give it one to probe its rate")
        device = next(iter(self.parameters()), torch.zeros(())).device
        zeros = torch.zeros(d, device=device)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """The model's decoder: log p(x|z) for z [S, N, d] -> [S, N]."""
        return self.model.log_likelihood(x, z)


def probe(model, sigma: float) -> Probe:
    """Wrap ``model`` in a Gaussian probe channel of std ``sigma`` (see ``Probe``)."""
    return Probe(model, sigma)
