"""How many latent dimensions a model uses."""

from __future__ import annotations

import torch

from ibkit.checks import check_number
from ibkit.distributions import covariance
from ibkit.estimators._common import DEFAULT_CHUNK, has_posterior, prepare, row_chunks, seeded_no_grad


def code_means(model, x, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The posterior means E_q[z|x], [N, d], for a protocol model, or the code encode(x) for a deterministic one.

    Args:
        model: a protocol model with ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        chunk_size: rows per posterior (or encode) call.

    Returns:
        [N, d] the means (or codes), on the model's device.
    """
    x = prepare(model, x, "code_means", posterior=False, prior=False, likelihood=False)
    with seeded_no_grad(0, x.device):
        get = (lambda xs: model.posterior(xs).mean) if has_posterior(model) else model.encode
        return torch.cat([get(x[s]) for s in row_chunks(len(x), chunk_size)])


def code_covariance(model, x, *, seed: int = 0, n_samples: int = 64, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Cov[Z], [d, d] float64, of the code over the rows of x, the empirical distribution of X.

    A deterministic code: the covariance of encode(x). A posterior: the law of total covariance,
    Cov_x E_q[z|x] + E_x Cov_q(z|x), closed form for Gaussian q and from ``n_samples`` draws per row otherwise
    (``ibkit.distributions.covariance``). Denominators are N (the empirical distribution, not an estimate of a
    population's covariance), so ``ibkit.theory.covariance_capacity`` of it bounds what the code sends through a
    Gaussian channel on these rows exactly.

    Args:
        model: a protocol model with ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        seed: seeds the draws of a non-Gaussian q; the caller's global random state is left untouched.
        n_samples: draws per row for a non-Gaussian q's covariance, >= 2.
        chunk_size: rows per posterior (or encode) call.

    Returns:
        [d, d] Cov[Z], float64, on the CPU.
    """
    check_number("n_samples", n_samples, low=2, integer=True)
    if not has_posterior(model):
        return _covariance_of_rows(code_means(model, x, chunk_size))
    x = prepare(model, x, "code_covariance", prior=False, likelihood=False)
    means, within = [], 0.0
    with seeded_no_grad(seed, x.device):
        for s in row_chunks(len(x), chunk_size):  # one encoder pass: each chunk's means and covariances
            q = model.posterior(x[s])
            means.append(q.mean)
            within = within + covariance(q, q.sample((n_samples,))).sum(0).cpu()
    return _covariance_of_rows(torch.cat(means)) + within / len(x)


def _covariance_of_rows(rows: torch.Tensor) -> torch.Tensor:
    """The covariance [d, d] (float64, CPU) of the rows [N, d], denominator N."""
    centred = rows.double() - rows.double().mean(0)
    return (centred.T @ centred / len(rows)).cpu()


def active_units(model, x, threshold: float = 0.01) -> int:
    """The number of latent dimensions u with Var_x E_q[z_u|x] > threshold (Burda et al. 2016, sec. 5.2).

    Args:
        model: a protocol model with ``posterior(x)`` or ``encode(x)`` (then the code's variance counts).
        x: [N, D] data (a tensor or numpy array) in the model's support.
        threshold: the variance over the rows above which a dimension is active, >= 0.

    Returns:
        the count of active dimensions.
    """
    check_number("threshold", threshold, low=0)
    means = code_means(model, x)
    return int((means.var(dim=0, unbiased=False) > threshold).sum())


def decoder_folds(model, x, *, grid: int = 4096, chunk_size: int = DEFAULT_CHUNK) -> dict[str, float]:
    """How many times a one-unit code's decoder folds the code line over the data: decode ``grid`` evenly spaced
    codes over the range of the codes of x (min to max), find each decoded point's nearest row of x (Euclidean),
    and count the runs of grid points that share a nearest row (``segments``) and the distinct rows visited
    (``distinct``). A decoder that follows one smooth curve through the data visits each row along it once, so
    segments ~ distinct; one that wraps the line around the data many times (something like modulo) visits rows
    again and again, so segments > distinct.

    Args:
        model: a model with a one-dimensional deterministic code (``encode``) and ``decode``.
        x: [N, D] data, e.g. the training split.
        grid: how many codes along the line.
        chunk_size: grid points per distance block.

    Returns:
        {"segments", "distinct", "grid"}.

    Raises:
        ValueError: a code of more than one dimension, or a model without ``encode`` and ``decode``.
    """
    check_number("grid", grid, low=2, integer=True)
    if not callable(getattr(model, "encode", None)) or not callable(getattr(model, "decode", None)):
        raise ValueError(f"decoder_folds needs encode(x) and decode(z); {type(model).__name__} lacks one")
    x = prepare(model, x, "decoder_folds", posterior=False, prior=False, likelihood=False)
    with seeded_no_grad(0, x.device):
        codes = code_means(model, x)
        if codes.shape[-1] != 1:
            raise ValueError(f"decoder_folds reads a one-unit code; this model's has {codes.shape[-1]} units")
        line = torch.linspace(codes.min().item(), codes.max().item(), grid, dtype=codes.dtype, device=x.device)
        nearest = torch.cat([torch.cdist(model.decode(line[s, None]).float(), x.float()).argmin(-1)
                             for s in row_chunks(grid, chunk_size)])
    segments = 1 + int((nearest[1:] != nearest[:-1]).sum())
    return {"segments": float(segments), "distinct": float(len(torch.unique(nearest))), "grid": float(grid)}
