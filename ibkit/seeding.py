"""Local randomness: seed torch's global generator for one block and give the caller's state back afterwards."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Run a block with torch's global RNG seeded to ``seed`` (the CPU's, and the CUDA generator of ``device``
    when it is a GPU); the caller's random state is restored on exit, so ibkit never moves a user's seed."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # not torch.manual_seed: it also queues the seed for every lazily started backend (CUDA, XPU, MPS) with a
        # captured traceback each, 2 to 4 ms a call, and ibkit seeds a block hundreds of times in a sweep
        torch.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
