"""Checkpoints: a model's kind, config and weights in one weights-only torch file, loaded through the registry."""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from ibkit.atomic import atomic_open
from ibkit.models.registry import config_fields, model_class

# 3: an IAF step is divided by its starting gate (it starts as the identity); in format 2 it was not.
# 2: a full-covariance VAE's L = diag(exp(v / 2)) (I + B); in format 1 it was diag(exp(v)) + B.
FORMAT = 3


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Write the model's kind, config and weights to ``path`` atomically (temp file, then rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"kind": model.KIND, "config": dataclasses.asdict(model.config), "state_dict": state,  # type: ignore
            "format": getattr(model, "checkpoint_format", FORMAT)}
    with atomic_open(path, binary=True) as f:
        torch.save(blob, f)


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by ``save_checkpoint`` through the registry, on the CPU (a checkpoint written on a GPU
    loads on a machine without one). Loads tensors only (``weights_only=True``), never pickled code. A kind that is
    not registered is a ValueError naming it (register it, e.g. by importing the module that defines it)."""
    from ibkit.models import build_model

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
        kind = blob["kind"] if "kind" in blob else config.pop("kind")  # before the registry: the kind in the config
    except (KeyError, TypeError) as e:
        raise _not_ours(path, e) from None
    cls = model_class(kind)  # an unregistered kind: a ValueError naming it
    if "kind" not in blob:  # a file from before per-kind configs: every kind's fields in one config
        own = {f.name for f in dataclasses.fields(cls.Config)}
        config = {k: v for k, v in config.items() if k in own or k not in config_fields()}
    try:
        model = build_model(kind, **config)
        read_format = getattr(model, "read_checkpoint_format", None)
        if callable(read_format):  # weights of an older format keep their meaning
            read_format(blob.get("format", 1))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # tensors, but not an ibkit model's
        raise _not_ours(path, e) from None
    return model


def _not_ours(path, error: Exception) -> ValueError:
    return ValueError(f"cannot load checkpoint {path}: not an ibkit checkpoint ({error.__class__.__name__}: "
                      f"{str(error).splitlines()[0][:200] if str(error) else ''})")


__all__ = ["save_checkpoint", "load_checkpoint"]
