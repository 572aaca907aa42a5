"""Model kinds, one file each, found through the registry: deterministic (``ae``), sparse (``sparse_ae``),
fixed-noise (``noisy_ae``), variational (``vae``) and hierarchical variational (``hvae``) autoencoders, each with
its own typed config; a deterministic code whose decoder reads periodic features (``periodic_ae``) and the
constructed cheating code (``interleaved_ae``, made by ``interleave``).

    m = build_model(kind="vae", input_dim=64, latent_dim=8, beta=4.0)   # fields of VAEConfig
    @register_model("my_kind")                                          # a kind of your own: docs/extending.md
"""

from __future__ import annotations

from ibkit.models.ae import AEConfig, DeterministicAE
from ibkit.models.base import Autoencoder, StochasticAutoencoder
from ibkit.models.checkpoint import load_checkpoint, save_checkpoint
from ibkit.models.config import ModelConfig
from ibkit.models.hvae import HierarchicalVAE, HVAEConfig
from ibkit.models.interleaved import InterleavedAE, InterleavedAEConfig, interleave
from ibkit.models.noisy_ae import NoisyAE, NoisyAEConfig
from ibkit.models.periodic_ae import PeriodicAE, PeriodicAEConfig
from ibkit.models.sparse_ae import SparseAE, SparseAEConfig
from ibkit.models.vae import VAE, VAEConfig
from ibkit.registry import MODELS, register_model


def build_model(kind: str, input_dim: int, latent_dim: int, **fields) -> Autoencoder:
    """Build a model of the registered ``kind`` from the fields of its config (``MODELS[kind].Config``), e.g.
    ``build_model("vae", 64, 8, beta=4.0, posterior="full")``.

    Args:
        kind: a registered model kind (``ibkit.registry.MODELS``: ae, sparse_ae, noisy_ae, vae, hvae, ...).
        input_dim: D, the width of the data.
        latent_dim: d, the width of the code.
        **fields: the kind's other config fields. Shared: hidden=(256, 256), decoder_hidden, network, channels,
            likelihood="bernoulli", scale, seed=0. A field the kind does not have is refused with those it has.

    Returns:
        the untrained model, its weights drawn from ``seed`` without touching the global random state.
    """
    return MODELS[kind].build(input_dim, latent_dim, **fields)


__all__ = [
    "Autoencoder",
    "StochasticAutoencoder",
    "ModelConfig",
    "AEConfig",
    "SparseAEConfig",
    "NoisyAEConfig",
    "VAEConfig",
    "HVAEConfig",
    "DeterministicAE",
    "SparseAE",
    "NoisyAE",
    "VAE",
    "HierarchicalVAE",
    "PeriodicAEConfig",
    "PeriodicAE",
    "InterleavedAEConfig",
    "InterleavedAE",
    "interleave",
    "register_model",
    "MODELS",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
]
