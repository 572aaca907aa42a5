"""Shared plumbing of the estimators: input checks, devices, seeding and chunking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from ibkit.checks import check_model_data, check_number
from ibkit.interface import is_stochastic
from ibkit.seeding import seeded

DEFAULT_CHUNK = 16384  # (sample, row) pairs per decoder pass: ~0.3 GB for a 784-512-512 decoder
MEMORY_BUDGET = 1 << 30  # bytes the working set of one iwae or mi_bounds call may take (memory_budget=None)


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
    return check_model_data(model, x).to(model_device(model))


@contextlib.contextmanager
def seeded_no_grad(seed: int, device: torch.device):
    """An estimator's block: no autograd, torch's RNG seeded to ``seed``, the caller's state restored after."""
    check_number("seed", seed, low=0, integer=True)
    with seeded(seed, device), torch.no_grad():
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


def budget_bytes(memory_budget: int | None) -> int:
    """The budget in bytes: ``memory_budget``, or ``MEMORY_BUDGET`` when None."""
    if memory_budget is None:
        return MEMORY_BUDGET
    check_number("memory_budget", memory_budget, low=1, integer=True)
    return int(memory_budget)


def too_large(call: str, needed: int, budget: int, what: str, remedy: str) -> ValueError:
    """The error of a request that cannot fit its memory budget even chunked, with the sizes."""
    return ValueError(f"{call} needs at least {_size(needed)} ({what}) but memory_budget is {_size(budget)}; "
                      f"{remedy}")


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"
