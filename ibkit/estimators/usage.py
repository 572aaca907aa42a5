"""How many latent dimensions a model uses."""

from __future__ import annotations

import torch

from ibkit.checks import check_number
from ibkit.estimators._common import DEFAULT_CHUNK, has_posterior, prepare, row_chunks, seeded_no_grad


def code_means(model, x, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """E_q[z|x] [N, d] for a protocol model, or the code encode(x) for a deterministic one."""
    x = prepare(model, x, "code_means", posterior=False, prior=False, likelihood=False)
    with seeded_no_grad(0, x.device):
        get = (lambda xs: model.posterior(xs).mean) if has_posterior(model) else model.encode
        return torch.cat([get(x[s]) for s in row_chunks(len(x), chunk_size)])


def active_units(model, x, threshold: float = 0.01) -> int:
    """The number of latent dimensions u with Var_x E_q[z_u|x] > threshold (Burda et al. 2016, sec. 5.2)."""
    check_number("threshold", threshold, low=0)
    means = code_means(model, x)
    return int((means.var(dim=0, unbiased=False) > threshold).sum())
