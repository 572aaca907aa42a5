"""Checkpoints: a model's kind, config and weights in one weights-only torch file, loaded through the registry.

A file records the format its weights are in. An older format is brought to the current one where it loads, before
``load_state_dict`` (timm's ``checkpoint_filter_fn``), so that no model or family knows any format but the current
one (``upgrade_state_dict``):

    3  (current) an IAF step is divided by its starting gate sigma_0 = sigmoid(forget bias), so it starts as the
       identity: z' = (sigma z + (1 - sigma) m) / sigma_0.
    2  IAF steps undivided, z' = sigma z + (1 - sigma) m. Upgraded exactly, by rescaling weights (``_divide_iaf``).
    1  (no "format" key) a full-covariance family's L = diag(exp(v)) + B, B strictly lower triangular; since format 2
       L = diag(exp(v / 2)) (I + B'). No weights give the same L: matching the diagonal needs v' = 2v, and then
       B' = diag(exp(-v)) B, which is not affine in the encoder's features. Such a family loads as
       ``FullGaussianFormat1`` (format 1's L from the same weights), and a model holding one saves as format 1.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MultivariateNormal

from ibkit.atomic import atomic_open
from ibkit.config import config_fields
from ibkit.models.iaf import START_GATE
from ibkit.models.posteriors import IAF, FullGaussian
from ibkit.registry import MODELS

if typing.TYPE_CHECKING:
    from ibkit.models.base import Autoencoder

FORMAT = 3  # the format save_checkpoint writes (the module docstring lists the older ones)


class FullGaussianFormat1(FullGaussian):
    """The full-covariance family as checkpoints of format 1 were trained: q = N(mu, L L^T) with

        L = diag(exp(v)) + B,   B strictly lower triangular (absolute entries),

    from the same encoder output [mu, v, entries of B] as ``FullGaussian``. No weights of today's family give this
    L (see the module docstring), so ``load_checkpoint`` puts this module in place of a format-1 file's family, and
    ``save_checkpoint`` writes a model holding one as format 1."""

    def forward(self, h: Tensor) -> Distribution:
        d = self.latent_dim
        mu, logvar, below = h.split([d, d, d * (d - 1) // 2], dim=-1)
        b = (below @ self._place.to(h.dtype)).unflatten(-1, (d, d))
        return MultivariateNormal(mu, scale_tril=b + torch.diag_embed(torch.exp(logvar)), validate_args=False)


def written_format(model: nn.Module) -> int:
    """The format ``model``'s weights are in: the current one, or 1 for a model holding a ``FullGaussianFormat1``."""
    return 1 if any(isinstance(m, FullGaussianFormat1) for m in model.modules()) else FORMAT


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Write the model's kind, config, weights and their format to ``path`` atomically (temp file, then rename).

    Args:
        model: a registered kind's model (with ``KIND`` and ``config``); its weights are saved from the CPU.
        path: the file to write.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"kind": model.KIND, "config": dataclasses.asdict(model.config), "state_dict": state,  # type: ignore
            "format": written_format(model)}
    with atomic_open(path, binary=True) as f:
        torch.save(blob, f)


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by ``save_checkpoint`` through the registry, on the CPU (a checkpoint written on a GPU
    loads on a machine without one). Loads tensors only (``weights_only=True``), never pickled code; weights of an
    older format are brought to the current one first (``upgrade_state_dict``). A kind that is not registered is a
    ValueError naming it (register it, e.g. by importing the module that defines it).

    Args:
        path: a file written by ``save_checkpoint``.

    Returns:
        the model, on the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a file that is no ibkit weights-only checkpoint, or of a kind that is not registered.
    """
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
    cls: type[Autoencoder] = MODELS[kind]  # an unregistered kind: a ValueError naming it
    if "kind" not in blob:  # a file from before per-kind configs: every kind's fields in one config
        own = {f.name for f in dataclasses.fields(cls.Config)}
        config = {k: v for k, v in config.items() if k in own or k not in config_fields()}
    try:
        model = build_model(kind, **config)
        model.load_state_dict(upgrade_state_dict(blob["state_dict"], model, blob.get("format", 1)))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # tensors, but not an ibkit model's
        raise _not_ours(path, e) from None
    return model


def upgrade_state_dict(state_dict: dict[str, Tensor], model: nn.Module, version: int) -> dict[str, Tensor]:
    """Weights saved in checkpoint format ``version``, brought to the current format for ``model`` (freshly built
    from the checkpoint's config): each upgrade from ``version`` on, in order. An upgrade returns new tensors where
    it changes any (the given dict is left as it is); one with no exact map of weights replaces a module of ``model``
    in place instead.

    Args:
        state_dict: the saved weights, names to tensors.
        model: the model they are for, as built from the checkpoint's config.
        version: the file's format (1 for a file without one).

    Returns:
        The weights for ``model.load_state_dict``.
    """
    for target, upgrade in _UPGRADES:
        if version < target:
            state_dict = upgrade(state_dict, model)
    return state_dict


def _full_covariance_format_1(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Format 1 -> 2: a full-covariance family becomes ``FullGaussianFormat1`` (no exact map of its weights)."""
    family = getattr(model, "family", None)
    if isinstance(family, FullGaussian) and not isinstance(family, FullGaussianFormat1):
        model.family = FullGaussianFormat1(family.latent_dim)
    return state_dict


def _divide_iaf(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Format 2 -> 3: the IAF's undivided steps U_t, rewritten as divided steps D_t with the same q(z|x), exactly.

    An undivided step is sigma_0 times the divided step of the same weights: U_t(z) = sigma_0 D_t(z). Write the
    flow's t-th iterate as z_t = c_t w_t with c_t = sigma_0^(t - T) (T steps, so c_T = 1 and w_T = z_T). Then

        w_t = z_t / c_t = (sigma / sigma_0) w_{t-1} + (1 - sigma) (m / c_{t-1}) / sigma_0,

    with [m, s] = MADE(c_{t-1} w_{t-1}, h) and sigma = sigmoid(s + forget bias): a divided step of w_{t-1} whose
    ``made_in`` weight is multiplied by c_{t-1} and whose m rows of ``made_out`` (weight and bias) are divided by
    c_{t-1}; the context weights and the s rows stay. The base sample becomes w_0 = z_0 / c_0 = sigma_0^T z_0: the
    loc rows of the encoder's head (weight and bias) are multiplied by sigma_0^T, and 2 T log sigma_0 is added to
    the log-variance bias. q(z_T | x) is the same distribution (its samples at a given noise and its density agree
    to rounding); the base q_0 it is built on is another, so the IAF's one-draw KL estimates (base KL plus the
    flow's correction, ``IAFDistribution.kl_samples``) scatter differently around the same mean.
    """
    family = getattr(model, "family", None)
    if not isinstance(family, IAF):
        return state_dict
    names = {id(module): name for name, module in model.named_modules()}
    encoder = typing.cast(nn.Sequential, model.encoder)  # its last layer: the head [loc, log variance, context]
    head, steps = names[id(encoder[-1])], names[id(family.steps)]
    d, n_steps = family.latent_dim, len(family.steps)
    out = dict(state_dict)

    def rescale(key: str, rows: slice, scale: float = 1.0, shift: float = 0.0) -> None:
        value = out[key].double()
        value[rows] = value[rows] * scale + shift
        out[key] = value.to(state_dict[key].dtype)

    log_gate = math.log(START_GATE)
    rescale(f"{head}.weight", slice(0, d), START_GATE**n_steps)
    rescale(f"{head}.bias", slice(0, d), START_GATE**n_steps)
    rescale(f"{head}.bias", slice(d, 2 * d), shift=2 * n_steps * log_gate)
    for t in range(n_steps):
        c = math.exp((t - n_steps) * log_gate)  # c_{t-1} of step t + 1 (counted from 1): its input's scale
        rescale(f"{steps}.{t}.made_in.weight", slice(None), c)
        rescale(f"{steps}.{t}.made_out.weight", slice(0, d), 1 / c)
        rescale(f"{steps}.{t}.made_out.bias", slice(0, d), 1 / c)
    return out


# (the format an upgrade produces, the upgrade), in order
_UPGRADES: list[tuple[int, Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]]] = [
    (2, _full_covariance_format_1),
    (3, _divide_iaf),
]


def _not_ours(path, error: Exception) -> ValueError:
    return ValueError(f"cannot load checkpoint {path}: not an ibkit checkpoint ({error.__class__.__name__}: "
                      f"{str(error).splitlines()[0][:200] if str(error) else ''})")


__all__ = ["FORMAT", "FullGaussianFormat1", "save_checkpoint", "load_checkpoint", "upgrade_state_dict",
           "written_format"]
