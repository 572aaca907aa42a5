"""pythae models (pythae 0.1.2, ``pip install ibkit[pythae]``) in the model protocol: ``wrap(model)``.

pythae's VAE family shares one shape: the encoder returns ``embedding`` (the posterior mean) and ``log_covariance``
(its log variance) of a diagonal Gaussian q(z|x), the decoder returns ``reconstruction``, and the prior is N(0, I)
(VAMP: a mixture of the posteriors of learned pseudo-inputs). Its likelihood is the model's own reconstruction
convention, summed over the pixels, as pythae's ``get_nll`` scores it:

    "bce": log p(x|z) = -BCE(reconstruction, x), the reconstruction being Bernoulli probabilities (torch clamps
           each log at -100, and so does this);
    "mse": log p(x|z) = -1/2 ||x - reconstruction||^2 - D/2 log 2 pi, a unit-variance Gaussian.

pythae's AE family (AE, RAE_L2, RAE_GP, WAE_MMD) has a deterministic code: it is wrapped as ``posterior="none"``.

Two traits of pythae to mind when comparing: ``get_nll`` returns log p(x) (a log-likelihood, despite its name), and
with ``n_samples`` at most ``batch_size`` it silently draws ``batch_size`` samples (``get_nll(x, n_samples=1000,
batch_size=100)`` draws 1,000).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal, constraints

from ibkit.adapters.modules import WrappedModel
from ibkit.adapters.modules import wrap as wrap_modules
from ibkit.models.likelihoods import Likelihood
from ibkit.registry import LIKELIHOODS

GAUSSIAN_FAMILY = ("VAE", "BetaVAE", "DisentangledBetaVAE", "BetaTCVAE", "FactorVAE", "IWAE", "MIWAE", "PIWAE",
                   "CIWAE", "INFOVAE_MMD", "Adversarial_AE", "VAMP")
DETERMINISTIC = ("AE", "RAE_L2", "RAE_GP", "WAE_MMD")
NOT_GAUSSIAN = {"VAE_IAF": "an IAF posterior", "VAE_LinNF": "a normalising-flow posterior",
                "HVAE": "a Hamiltonian posterior", "RHVAE": "a Riemannian Hamiltonian posterior",
                "SVAE": "a von Mises-Fisher posterior", "PoincareVAE": "a wrapped normal on the Poincare ball",
                "MSSSIM_VAE": "an MS-SSIM loss, not a likelihood", "VAEGAN": "a discriminator loss, not a likelihood",
                "VQVAE": "a quantised code"}


class BCEOfProbabilities(Likelihood):
    """pythae's "bce": independent Bernoulli pixels with the decoder's probabilities p (not logits),
    log p(x|z) = sum_j x_j log p_j + (1 - x_j) log(1 - p_j), each log clamped at -100 (``F.binary_cross_entropy``)."""

    support = constraints.unit_interval

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return -F.binary_cross_entropy(params, x.expand_as(params), reduction="none").sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return params

    def check_data(self, x: Tensor, name: str = "x") -> None:
        LIKELIHOODS["bernoulli"]().check_data(x, name)


class GaussianCode(nn.Module):
    """pythae's encoder as one tensor: [embedding, log_covariance] [N, 2d] (the diagonal family's loc and log
    variance), or the embedding alone [N, d] for a deterministic code."""

    def __init__(self, encoder: nn.Module, with_variance: bool):
        super().__init__()
        self.encoder, self.with_variance = encoder, with_variance

    def forward(self, x: Tensor) -> Tensor:
        out = self.encoder(x)
        return torch.cat([out.embedding, out.log_covariance], -1) if self.with_variance else out.embedding


class Reconstruction(nn.Module):
    """pythae's decoder as a module from codes [B, d] to its ``reconstruction`` [B, *input_dim]."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder(z)["reconstruction"]


class VampPrior(nn.Module):
    """VAMP's prior (Tomczak & Welling 2018): p(z) = 1/C sum_c q(z | u_c), the posteriors of its C learned
    pseudo-inputs u_c = pseudo_inputs(e_c), as pythae's ``_log_p_z`` computes it. event_shape [d]."""

    idle_input: Tensor  # [C, C], the identity the pseudo-inputs are read from

    def __init__(self, model: Any):
        super().__init__()
        self.encoder: nn.Module = model.encoder
        self.pseudo_inputs: nn.Module = model.pseudo_inputs
        self.input_dim = tuple(model.model_config.input_dim)
        self.register_buffer("idle_input", model.idle_input.clone(), persistent=False)

    def forward(self) -> Distribution:
        u = self.pseudo_inputs(self.idle_input).reshape(-1, *self.input_dim)
        out = self.encoder(u)
        components = Independent(Normal(out.embedding, torch.exp(0.5 * out.log_covariance)), 1)
        weights = Categorical(logits=torch.zeros(len(u), device=u.device))
        return MixtureSameFamily(weights, components)


def wrap(model) -> WrappedModel:
    """A pythae model (``pythae.models``, e.g. VAE, BetaVAE, IWAE, VAMP; module docstring) as an ibkit model that
    every estimator measures and ``ibkit.fit`` trains (the negative ELBO, on pythae's own parameters).

    Args:
        model: a pythae model (``pythae.models.BaseAE``) of the diagonal Gaussian family or a deterministic code,
            with ``reconstruction_loss`` "bce" or "mse".

    Returns:
        the ``WrappedModel`` around the model's own encoder and decoder (deterministic for the codes without a
            posterior; with the VampPrior for VAMP).

    Raises:
        ValueError: no pythae installed, a model that is not pythae's or of a family ibkit does not cover, or
            another reconstruction loss.
    """
    try:
        from pythae.models import BaseAE
    except ImportError:
        raise ValueError("ibkit.adapters.pythae needs pythae; install the extra: pip install 'ibkit[pythae]'") from None
    if not isinstance(model, BaseAE):
        raise ValueError(f"model is a {type(model).__name__}, not a pythae model (pythae.models.BaseAE)")
    name = type(model).__name__
    if name in NOT_GAUSSIAN:
        raise ValueError(f"pythae's {name} has {NOT_GAUSSIAN[name]}; ibkit.adapters.pythae covers the diagonal "
                         f"Gaussian family ({', '.join(GAUSSIAN_FAMILY)}) and the deterministic codes "
                         f"({', '.join(DETERMINISTIC)}); wrap others with ibkit.wrap and a posterior callable")
    loss = getattr(model.model_config, "reconstruction_loss", "mse")
    if loss not in ("bce", "mse"):
        raise ValueError(f"{name}'s reconstruction_loss={loss!r} is not a likelihood ibkit knows (bce, mse)")
    likelihood = BCEOfProbabilities() if loss == "bce" else LIKELIHOODS["gaussian"](scale=1.0)
    deterministic = name in DETERMINISTIC or not isinstance(model, _vae_class())
    shape = tuple(model.model_config.input_dim)
    return wrap_modules(GaussianCode(model.encoder, not deterministic), Reconstruction(model.decoder),
                        likelihood=likelihood, posterior="none" if deterministic else "diagonal",
                        prior=VampPrior(model) if name == "VAMP" else None, input_shape=shape)


def _vae_class() -> type:
    from pythae.models import VAE

    return VAE


__all__ = ["wrap", "BCEOfProbabilities", "GaussianCode", "Reconstruction", "VampPrior"]
