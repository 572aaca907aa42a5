"""Shared plumbing of the estimators: input checks, devices, seeding and chunking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from ibkit.checks import check_data, check_number
from ibkit.interface import is_stochastic

DEFAULT_CHUNK = 16384  # (sample, row) pairs per decoder pass: ~0.3 GB for a 784-512-512 decoder


def model_device(model) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model without any)."""
    for t in (*getattr(model, "parameters", lambda: ())(), *getattr(model, "buffers", lambda: ())()):
        return t.device
    return torch.device("cpu")


def prepare(model, x, *, need_posterior: bool = True) -> Tensor:
    """Validate x [N, D] for ``model`` and move it to the model's device."""
    if need_posterior and not is_stochastic(model):
        raise ValueError(
            f"{type(model).__name__} has no posterior q(z|x) (it is a deterministic code); "
            "wrap it in a probe channel: ibkit.estimators.probe(model, sigma)"
        )
    config = getattr(model, "config", None)
    x = check_data(x, "x", width=getattr(config, "input_dim", None))
    likelihood = getattr(model, "likelihood", None)
    if likelihood is not None and hasattr(likelihood, "check_data"):
        likelihood.check_data(x, "x")
    return x.to(model_device(model))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Run a block with the global RNG seeded to ``seed`` and restore the caller's state afterwards."""
    check_number("seed", seed, low=0, integer=True)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        yield


def row_chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of range(n) of at most ``size`` rows."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def plan_chunks(n_samples: int, chunk_size: int) -> tuple[int, int]:
    """(samples per pass, rows per pass) so that one pass decodes at most ``chunk_size`` (sample, row) pairs."""
    check_number("chunk_size", chunk_size, low=1, integer=True)
    samples = min(n_samples, chunk_size)
    return samples, max(1, chunk_size // samples)


def reduce(values: Tensor, per_example: bool) -> float | Tensor:
    """The mean over examples as a float, or the per-example values [N] on the CPU."""
    return values.cpu() if per_example else values.mean().item()


