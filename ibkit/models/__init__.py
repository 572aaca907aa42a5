"""Autoencoders: deterministic, sparse, fixed-noise and variational; built from one ``ModelConfig``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

import torch

from ibkit.models.ae import DeterministicAE
from ibkit.models.base import Autoencoder, StochasticAutoencoder
from ibkit.models.config import KINDS, ModelConfig
from ibkit.models.noisy_ae import NoisyAE
from ibkit.models.sparse_ae import SparseAE
from ibkit.models.vae import VAE
from ibkit.seeding import seeded

MODEL_CLASSES: dict[str, type[Autoencoder]] = {
    "ae": DeterministicAE,
    "sparse_ae": SparseAE,
    "noisy_ae": NoisyAE,
    "vae": VAE,
}
assert set(MODEL_CLASSES) == set(KINDS)


def build_model(kind: str, input_dim: int, latent_dim: int, **options) -> Autoencoder:
    """Build an autoencoder of ``kind`` (ae | sparse_ae | noisy_ae | vae); options are ``ModelConfig`` fields:
    hidden=(256, 256), likelihood="bernoulli", posterior="diagonal", beta=1.0, noise=None, sparsity=0.0,
    code_bound="auto" (tanh for noisy_ae), seed=0. The weights are drawn from ``seed`` without touching
    the global random state."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        valid = sorted(known - {"kind", "input_dim", "latent_dim"})
        raise ValueError(f"unknown model option(s) {unknown}; valid options: {valid}")
    config = ModelConfig(kind=kind, input_dim=input_dim, latent_dim=latent_dim, **options)
    return model_from_config(config)


def model_from_config(config: ModelConfig) -> Autoencoder:
    with seeded(config.seed):
        return MODEL_CLASSES[config.kind](config)


def save_checkpoint(model: Autoencoder, path: str | os.PathLike) -> None:
    """Write the model's config and weights to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"config": asdict(model.config), "state_dict": state}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> Autoencoder:
    """Rebuild a model saved by ``save_checkpoint``; loads tensors only (``weights_only=True``), never pickled code."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except Exception as e:  # an unpickling refusal, a truncated file
        raise ValueError(
            f"cannot load checkpoint {path}: not an ibkit weights-only checkpoint ({e.__class__.__name__})"
        ) from None
    try:
        config = dict(blob["config"])
        config["hidden"] = tuple(config["hidden"])
        if config.get("decoder_hidden") is not None:  # () is a linear decoder; None (older files) mirrors hidden
            config["decoder_hidden"] = tuple(config["decoder_hidden"])
        model = model_from_config(ModelConfig(**config))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # tensors, but not an ibkit model's
        raise ValueError(f"cannot load checkpoint {path}: not an ibkit checkpoint ({e.__class__.__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None
    return model


__all__ = [
    "Autoencoder",
    "StochasticAutoencoder",
    "DeterministicAE",
    "SparseAE",
    "NoisyAE",
    "VAE",
    "ModelConfig",
    "MODEL_CLASSES",
    "build_model",
    "model_from_config",
    "save_checkpoint",
    "load_checkpoint",
]
