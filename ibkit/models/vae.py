"""The variational autoencoder: posterior family q(z|x), prior N(0, I), loss distortion + beta * rate."""

from dataclasses import dataclass, field

from torch import Tensor
from torch.distributions import Distribution

from ibkit.models.base import StochasticAutoencoder
from ibkit.models.config import ModelConfig
from ibkit.models.posteriors import POSTERIORS
from ibkit.models.registry import register_model


@dataclass(frozen=True)
class VAEConfig(ModelConfig):
    # q(z|x) family: diagonal | full (Cholesky factor) | iaf (inverse autoregressive flow)
    posterior: str = field(default="diagonal", metadata={"choices": tuple(POSTERIORS)})
    flow_steps: int = field(default=2, metadata={"low": 1})  # iaf: number of autoregressive steps
    beta: float = field(default=1.0, metadata={"knob": True, "symbol": "β", "low": 0})  # weight of the rate


@register_model("vae", label="VAE", marker="o", colour=0)
class VAE(StochasticAutoencoder):
    """beta-VAE (Kingma & Welling 2014; Higgins et al. 2017): loss = -E_q log p(x|z) + beta KL(q(z|x) || p(z)).

    beta = 1 is the negative ELBO; Alemi et al. 2018 read it as a point D + beta R on the rate-distortion plane.
    """

    Config = VAEConfig
    config: VAEConfig
    beta: Tensor  # the knob's buffer: [] alone, [K, 1] in fit_many's stacked model
    # with q = p(z), a decoder at the marginal is the collapsed optimum, where high-beta runs stayed (MNIST
    # beta = 10.3: D + beta R = 206 nats there, 182 from the default start)
    STARTS_AT_MARGINAL = False

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.family = POSTERIORS[config.posterior](config.latent_dim, flow_steps=config.flow_steps)

    def encoder_width(self) -> int:
        return POSTERIORS[self.config.posterior].n_params(self.config.latent_dim)

    def posterior_from_params(self, h: Tensor) -> Distribution:
        return self.family(h)

    def prior(self) -> Distribution:
        """p(z) = N(0, I) in the form that has a closed-form KL against the posterior family."""
        return self.family.prior(self._prior_loc, self._prior_scale)

    def regularizer(self, z: Tensor, rate: Tensor) -> Tensor:
        return self.beta * rate
