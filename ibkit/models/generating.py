"""Trainable VAEs on the generating decoder of a linear-Gaussian source (``ibkit.data.load("gaussian")``).

The decoder, its noise and the prior are the source's own (``ds.truth``), copied in and frozen; only the encoder
is fresh. Trained with ``fit(..., trainable="encoder")``, it measures what an inference family costs when the
generative model is held fixed: a learned decoder could rotate its latents until the exact posterior is diagonal.

    ds = ibkit.data.load("gaussian")
    m = generating_vae(ds, "full", hidden=(64,), seed=0)                  # one latent layer
    two = ibkit.data.load("gaussian", latent_dims=(3, 2))
    h = generating_hvae(two, "top_down", exact=True)                      # two, its encoder the exact posterior
"""

from __future__ import annotations

import math
import typing

import torch
from torch import Tensor, nn

from ibkit.data.gaussian import LinearGaussianChain, TwoLayerPosteriors
from ibkit.models import build_model
from ibkit.models.hvae import HierarchicalVAE
from ibkit.models.vae import VAE


def _chain(source, depth: int, builder: str) -> LinearGaussianChain:
    """The chain of ``source`` (a ``LinearGaussianChain`` or a dataset with ``truth``), checked to have ``depth``
    links."""
    chain = getattr(source, "truth", source)
    if not isinstance(chain, LinearGaussianChain):
        raise ValueError(f"{builder} needs a linear-Gaussian source: a LinearGaussianChain or a dataset of "
                         f"load('gaussian') (with .truth); got {type(source).__name__}")
    if chain.depth != depth:
        other = "generating_hvae" if depth == 1 else "generating_vae"
        raise ValueError(f"{builder} needs a source with {depth} latent layer{'s' * (depth > 1)}; this one has "
                         f"latent_dims={chain.latent_dims} (use {other})")
    return chain


def generating_vae(source, posterior: str, hidden: tuple[int, ...] = (64,), seed: int = 0,
                   beta: float = 1.0) -> VAE:
    """A VAE whose linear decoder, noise scale and prior are the generating ones of a one-layer source, frozen, with
    a fresh encoder.

    Args:
        source: a one-link ``LinearGaussianChain``, or a dataset of ``load("gaussian")`` (its ``truth``).
        posterior: the encoder's family ("diagonal", "full", "iaf", ...: ``ibkit.registry.POSTERIORS``).
        hidden: the encoder's hidden widths (() for a linear encoder).
        seed: draws the encoder's weights.
        beta: weighs the KL in the training loss; 1 is the negative ELBO.

    Returns:
        The VAE (kind "vae", decoder_hidden=(), likelihood "gaussian"); train it with ``fit(..., trainable="encoder")``.
    """
    chain = _chain(source, 1, "generating_vae")
    D, k = chain.W.shape
    model = build_model(VAE.KIND, D, k, hidden=tuple(hidden), decoder_hidden=(), likelihood="gaussian",
                        posterior=posterior, seed=seed, beta=beta)
    _set_generating_model(model, chain.W, chain.b, chain.noise)
    return typing.cast(VAE, model)


def generating_hvae(source, inference: str, seed: int = 0, beta: float = 1.0, exact: bool = False,
                    **fields) -> HierarchicalVAE:
    """A hierarchical VAE (``kind="hvae"``, linear networks) whose generative part is the generating one of a
    two-layer source, frozen: p(x | z1) = N(W z1 + b, s^2 I), p(z1 | z2) = N(A z2, s1^2 I), p(z2) = N(0, I).

    Every exact factor of the posterior is then a diagonal Gaussian with a linear mean (``layer_posteriors``), which
    the linear encoder can represent: trained, its per-layer rates approach I(X;Z2) (top layer) and I(X;Z1|Z2)
    top-down, and its ELBO log p(x).

    Args:
        source: a two-link ``LinearGaussianChain``, or a dataset of ``load("gaussian", latent_dims=(d1, d2))``.
        inference: "top_down" or "bottom_up", the encoder's factorisation.
        seed: draws the encoder's weights.
        beta: weighs the KL in the training loss.
        exact: set the encoder to the exact posterior (then ELBO = log p(x) for every x) instead of fresh weights.
        **fields: other hvae fields (e.g. free_bits).

    Returns:
        The hvae; train it with ``fit(..., trainable="encoder")``.
    """
    chain = _chain(source, 2, "generating_hvae")
    (d1, d2), D = chain.latent_dims, chain.input_dim
    model = build_model("hvae", D, d1 + d2, latent_dims=(d1, d2), inference=inference, hidden=(), layer_hidden=(),
                        decoder_hidden=(), likelihood="gaussian", seed=seed, beta=beta, **fields)
    _set_generating_model(model, chain.W, chain.b, chain.noise)
    prior = typing.cast(nn.Linear, model.get_submodule("priors.0.0"))  # z2 -> (loc, log variance) of z1
    with torch.no_grad():
        prior.weight.zero_()
        prior.weight[:d1] = chain.A
        prior.bias.zero_()
        prior.bias[d1:] = 2 * math.log(chain.layer_noise)
    model.get_submodule("priors").requires_grad_(False)
    if exact:
        _set_exact_encoder(model, chain.layer_posteriors(chain.b[None]), chain.b, inference)
    return typing.cast(HierarchicalVAE, model)


def _set_generating_model(model: nn.Module, W: Tensor, b: Tensor, noise: float) -> None:
    """Copy the generating model into a VAE built with a linear decoder and a Gaussian likelihood, then freeze both.

    model.decoder[0]:            nn.Linear(k, D), its only layer: weight <- W [D, k], bias <- b [D].
    model.likelihood.log_scale:  a scalar tensor: <- log(noise).
    """
    decoder, likelihood = model.get_submodule("decoder"), model.get_submodule("likelihood")
    linear, log_scale = model.get_submodule("decoder.0"), getattr(likelihood, "log_scale", None)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"the generating model needs a VAE whose decoder starts with nn.Linear; got "
                        f"{type(linear).__name__}")
    if not isinstance(log_scale, Tensor):
        raise TypeError(
            f"the generating model needs a Gaussian likelihood with a log_scale tensor; got {type(likelihood).__name__}"
        )
    with torch.no_grad():
        linear.weight.copy_(W)
        linear.bias.copy_(b)
        log_scale.fill_(math.log(noise))
    for part in (decoder, likelihood):
        part.requires_grad_(False)


def _set_exact_encoder(model: nn.Module, exact: TwoLayerPosteriors, b: Tensor, inference: str) -> None:
    """Set the linear encoder of a two-layer hvae (``generating_hvae``) to the exact posterior's factors: each head's
    loc rows to the factor's linear map of (x - b) (and of its parent layer), its log-variance rows to a constant."""

    def fill(head: nn.Linear, weight: Tensor, bias: Tensor, scale: Tensor) -> None:
        with torch.no_grad():
            d = len(scale)
            head.weight.zero_()
            head.weight[:d] = weight
            head.bias[:d] = bias
            head.bias[d:] = 2 * torch.log(scale)

    def head(name: str) -> nn.Linear:
        return typing.cast(nn.Linear, model.get_submodule(f"encoder.heads.{name}"))

    if inference == "top_down":  # heads[1]: q(z2 | x); heads[0]: q(z1 | x, z2), input [x, z2]
        fill(head("1"), exact.K, -exact.K @ b, exact.z2_scale)
        fill(head("0"), torch.cat([exact.P, exact.R], 1), -exact.P @ b, exact.z1_given_z2_scale)
    else:  # heads[0]: q(z1 | x); heads[1]: q(z2 | z1), each a one-layer MLP
        fill(head("0.0"), exact.G, -exact.G @ b, exact.z1_scale)
        fill(head("1.0"), exact.M, torch.zeros(len(exact.M)), exact.z2_given_z1_scale)
