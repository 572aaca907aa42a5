"""Model kinds, one file each, found through the registry: deterministic (``ae``), sparse (``sparse_ae``),
fixed-noise (``noisy_ae``), variational (``vae``) and hierarchical variational (``hvae``) autoencoders, each with
its own typed config.

    m = build_model(kind="vae", input_dim=64, latent_dim=8, beta=4.0)   # fields of VAEConfig
    @register_model("my_kind")                                          # a kind of your own: see the README
"""

from __future__ import annotations

import dataclasses

from ibkit.models.ae import AEConfig, DeterministicAE
from ibkit.models.base import Autoencoder, StochasticAutoencoder
from ibkit.models.checkpoint import load_checkpoint, save_checkpoint
from ibkit.models.config import ModelConfig, knob_fields, required_fields
from ibkit.models.hvae import HierarchicalVAE, HVAEConfig
from ibkit.models.noisy_ae import NoisyAE, NoisyAEConfig
from ibkit.models.registry import (
    KindStyle,
    all_knobs,
    config_fields,
    kind_style,
    knob_help,
    knob_names,
    knob_symbol,
    model_class,
    register_model,
    registered_kinds,
)
from ibkit.models.sparse_ae import SparseAE, SparseAEConfig
from ibkit.models.vae import VAE, VAEConfig
from ibkit.seeding import seeded


def build_model(kind: str, input_dim: int, latent_dim: int, **fields) -> Autoencoder:
    """Build a model of the registered ``kind`` from the fields of its config (``model_class(kind).Config``), e.g.
    ``build_model("vae", 64, 8, beta=4.0, posterior="full")``. Shared fields: hidden=(256, 256), decoder_hidden,
    likelihood="bernoulli", scale, seed=0. A field the kind does not have is refused with the list of those it has.
    The weights are drawn from ``seed`` without touching the global random state."""
    cls = model_class(kind)
    known = [f.name for f in dataclasses.fields(cls.Config)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        valid = [k for k in known if k not in ("input_dim", "latent_dim")]
        raise ValueError(f"unknown option(s) {unknown} for kind={kind!r}; its options: {valid}")
    missing = [k for k in required_fields(cls.Config) if k not in fields and k not in ("input_dim", "latent_dim")]
    if missing:
        raise ValueError(f"kind={kind!r} needs {', '.join(missing)} (e.g. {missing[0]}=0.1); none was given")
    config = cls.Config(input_dim=input_dim, latent_dim=latent_dim, **fields)
    with seeded(config.seed):
        return cls(config)


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
    "KindStyle",
    "register_model",
    "registered_kinds",
    "model_class",
    "kind_style",
    "knob_names",
    "knob_fields",
    "all_knobs",
    "config_fields",
    "knob_symbol",
    "knob_help",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
]
