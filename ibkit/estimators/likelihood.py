"""Rate, distortion, ELBO and the importance-weighted bound on log p(x). All in nats, pure, chunked.

Every function takes a protocol model (``ibkit.interface``: ``posterior``, ``prior``, ``log_likelihood``;
``distortion`` and ``mse`` also take a deterministic code with ``encode``; ``mse`` needs ``decode``) and data
x [N, D]; it returns the mean over the N examples as a float, or the per-example values [N] with
``per_example=True``. Randomness comes from ``seed`` alone; the caller's global random state is left untouched.
``chunk_size`` bounds the (sample, row) pairs decoded at once, so memory does not grow with N or the number of
samples. Those whose decoder passes grow with a number of samples the caller picks (``distortion``, ``mse``,
``elbo``, ``iwae``) show their progress and refuse, up front, work estimated at more than an hour on this machine
unless ``allow_long=True`` (``ibkit.estimators._common.decoder_progress``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from ibkit.checks import check_number
from ibkit.distributions import kl_samples
from ibkit.estimators._common import (
    DEFAULT_CHUNK,
    budget_bytes,
    decoder_progress,
    has_posterior,
    plan_chunks,
    prepare,
    reduce,
    row_chunks,
    seeded_no_grad,
    too_large,
    unit_count,
)
from ibkit.progress import Progress


def rate(model, x, *, n_samples: int = 64, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
         per_example: bool = False) -> float | Tensor:
    """R = E_x KL(q(z|x) || p(z)), an upper bound on I(X;Z) (Alemi et al. 2018, "Fixing a Broken ELBO").

    Closed form where torch registers the KL; otherwise Monte Carlo with ``n_samples`` draws per example
    (``rate_standard_error`` with the same arguments gives its standard error).

    Args:
        model: a protocol model (``ibkit.interface``) with ``posterior(x)`` and ``prior()``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        n_samples: draws of z per example for a Monte Carlo KL; unused where the KL is closed form.
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: at most this many (sample, row) pairs per pass.
        per_example: return each row's KL instead of the mean.

    Returns:
        the rate in nats (a float), or [N] per example on the CPU with ``per_example=True``.

    Raises:
        ValueError: a model without ``posterior`` or ``prior``, or x that does not fit the model.
    """
    return reduce(_kl_rows(model, x, n_samples=n_samples, seed=seed, chunk_size=chunk_size)[0], per_example)


def rate_standard_error(model, x, *, n_samples: int = 64, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
                        per_example: bool = False) -> float | Tensor:
    """The Monte Carlo standard error of ``rate`` called with the same arguments (the same draws of z).

    0 where the KL is closed form. Otherwise the data are fixed and only z is random: with s_n^2 the sample
    variance of the one-draw KL estimates for row n (``ibkit.distributions.kl_samples``) over its S = ``n_samples``
    draws, the error of the mean rate
    is sqrt(sum_n s_n^2 / S) / N, and of row n's KL estimate s_n / sqrt(S) (``per_example=True``). NaN for S = 1.

    Args:
        model: a protocol model (``ibkit.interface``) with ``posterior(x)`` and ``prior()``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        n_samples: S, draws of z per example, as given to ``rate``.
        seed: seeds the draws, as given to ``rate``.
        chunk_size: at most this many (sample, row) pairs per pass.
        per_example: return each row's standard error instead of that of the mean.

    Returns:
        the standard error in nats (a float), or [N] per example on the CPU with ``per_example=True``.
    """
    variances = _kl_rows(model, x, n_samples=n_samples, seed=seed, chunk_size=chunk_size)[1]  # of each row's estimate
    if per_example:
        return variances.sqrt().cpu()
    return (variances.sum().sqrt() / len(variances)).item()


def _kl_rows(model, x, *, n_samples: int, seed: int, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Per row: the estimate of KL(q(z|x_n) || p(z)) [N] and that estimate's Monte Carlo variance [N]."""
    x = prepare(model, x, "rate", likelihood=False)
    check_number("n_samples", n_samples, low=1, integer=True)
    _, rows = plan_chunks(n_samples, chunk_size)
    estimates, variances = [], []
    with seeded_no_grad(seed, x.device):
        prior = model.prior()
        for s in row_chunks(len(x), rows):
            q = model.posterior(x[s])
            try:
                kl, variance = kl_divergence(q, prior), None
            except NotImplementedError:
                terms = kl_samples(q, prior, n_samples=n_samples)  # [S, n]
                kl = terms.mean(0)
                variance = terms.var(0) / n_samples if n_samples > 1 else torch.full_like(kl, math.nan)
            estimates.append(kl)
            variances.append(torch.zeros_like(kl) if variance is None else variance)
    return torch.cat(estimates), torch.cat(variances)


def distortion(model, x, n_samples: int = 1, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
               per_example: bool = False, allow_long: bool = False) -> float | Tensor:
    """D = -E_x E_{q(z|x)} log p(x|z), with ``n_samples`` draws of z per example (N n_samples decoder passes;
    refused up front where they would take more than an hour, unless ``allow_long``).

    For a deterministic code (a model with ``encode`` and no posterior) z = encode(x) and D = -E_x log p(x|f(x)).

    Args:
        model: a protocol model with ``log_likelihood(x, z)`` and ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        n_samples: draws of z per example (one pass for a deterministic code).
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: at most this many (sample, row) pairs per decoder pass.
        per_example: return each row's distortion instead of the mean.
        allow_long: run work estimated to take more than an hour instead of refusing it.

    Returns:
        the distortion in nats (a float), or [N] per example on the CPU with ``per_example=True``.

    Raises:
        ValueError: a model without the methods it needs, x that does not fit the model, or work estimated at
            more than an hour without ``allow_long``.
    """
    x = prepare(model, x, "distortion", posterior=False, prior=False)
    return _expected_over_codes(model, x, model.log_likelihood, sign=-1.0, n_samples=n_samples, seed=seed,
                                chunk_size=chunk_size, per_example=per_example, call="distortion",
                                allow_long=allow_long)


def mse(model, x, n_samples: int = 1, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
        per_example: bool = False, allow_long: bool = False) -> float | Tensor:
    """Squared-error distortion E_x E_{q(z|x)} ||x - E[x|z]||^2 (summed over the D dimensions, per example), the
    distortion of Shannon's rate-distortion function under squared error (``ibkit.theory.gaussian_rd``); E[x|z]
    is the model's ``decode(z)`` [..., N, D], the likelihood's mean (the Bernoulli probabilities for binary data).
    Deterministic codes, and ``allow_long``, as in ``distortion``.

    Args:
        model: a protocol model with ``decode(z)`` and ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        n_samples: draws of z per example (one pass for a deterministic code).
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: at most this many (sample, row) pairs per decoder pass.
        per_example: return each row's squared error instead of the mean.
        allow_long: run work estimated to take more than an hour instead of refusing it.

    Returns:
        the squared error (a float), or [N] per example on the CPU with ``per_example=True``.

    Raises:
        ValueError: a model without ``decode`` (or whose ``decode(z)`` returns the wrong shape), x that does not
            fit the model, or work estimated at more than an hour without ``allow_long``.
    """
    if not callable(getattr(model, "decode", None)):
        raise ValueError(f"mse needs the decoder's mean E[x|z]: {type(model).__name__} has no decode(z); add a "
                         "method decode(z) -> E[x|z] [..., N, D] for z [..., N, d] (ibkit.interface.HasDecode)")
    x = prepare(model, x, "mse", posterior=False, prior=False, likelihood=False)

    def negative_squared_error(xs: Tensor, z: Tensor) -> Tensor:
        mean = model.decode(z)
        if not isinstance(mean, Tensor) or mean.shape != z.shape[:-1] + xs.shape[-1:]:
            got = list(mean.shape) if isinstance(mean, Tensor) else type(mean).__name__
            raise ValueError(f"{type(model).__name__}.decode(z) returned {got} for z {list(z.shape)}; expected "
                             f"{[*z.shape[:-1], xs.shape[-1]]}, E[x|z] for each sample and row")
        return -(xs - mean).pow(2).sum(-1)

    return _expected_over_codes(model, x, negative_squared_error, sign=-1.0, n_samples=n_samples, seed=seed,
                                chunk_size=chunk_size, per_example=per_example, call="mse", allow_long=allow_long)


def _expected_over_codes(model, x: Tensor, score, *, sign: float, n_samples: int, seed: int, chunk_size: int,
                         per_example: bool, call: str, allow_long: bool) -> float | Tensor:
    """sign * E_q score(x, z) per example for checked x [N, D] (score: x [n, D], z [S, n, d] -> [S, n]); z =
    encode(x) for a code without a posterior. ``call`` names it in progress lines and refusals."""
    check_number("n_samples", n_samples, low=1, integer=True)
    stochastic = has_posterior(model)
    samples, rows = plan_chunks(n_samples if stochastic else 1, chunk_size)
    out = []
    work = f"{call} with n_samples={n_samples} on {len(x)} rows"
    with seeded_no_grad(seed, x.device), decoder_progress(call, len(x) * (n_samples if stochastic else 1), x.device,
                                                          work=work, knobs="n_samples", allow_long=allow_long) as bar:
        for s in row_chunks(len(x), rows):
            xs = x[s]
            if not stochastic:
                out.append(sign * score(xs, model.encode(xs).unsqueeze(0))[0])
                bar.update(len(xs))
                continue
            out.append(sign * expected_log_likelihood_rows(model, model.posterior(xs), xs, n_samples=n_samples,
                                                           samples=samples, score=score, progress=bar))
    return reduce(torch.cat(out), per_example)


def expected_log_likelihood_rows(model, q, x: Tensor, *, n_samples: int, samples: int, score=None,
                                 progress: Progress | None = None) -> Tensor:
    """mean_s log p(x|z_s), z_s ~ q, per row [n] for the proposal q (batch [n]), ``samples`` draws at a time
    (or the mean of another ``score(x, z)`` of the samples); each chunk's pairs counted on ``progress``."""
    score = score or model.log_likelihood
    total = torch.zeros(len(x), device=x.device)
    for j in range(0, n_samples, samples):
        size = min(samples, n_samples - j)
        total += score(x, q.sample((size,))).sum(0)  # z [S, n, d]
        if progress is not None:
            progress.update(size * len(x))
    return total / n_samples


def elbo(model, x, n_samples: int = 1, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
         per_example: bool = False, allow_long: bool = False) -> float | Tensor:
    """ELBO = -(D + R) = E_q log p(x|z) - KL(q(z|x) || p(z)) <= log p(x) (Kingma & Welling 2014); ``allow_long`` as
    in ``distortion``.

    Args:
        model: a protocol model (``ibkit.interface``): ``posterior``, ``prior``, ``log_likelihood``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        n_samples: draws of z per example for the distortion term (the rate's own Monte Carlo, where it has no
            closed form, uses ``rate``'s default).
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: at most this many (sample, row) pairs per decoder pass.
        per_example: return each row's ELBO instead of the mean.
        allow_long: run work estimated to take more than an hour instead of refusing it.

    Returns:
        the ELBO in nats (a float), or [N] per example on the CPU with ``per_example=True``.
    """
    d = distortion(model, x, n_samples, seed=seed, chunk_size=chunk_size, per_example=True, allow_long=allow_long)
    r = rate(model, x, seed=seed, chunk_size=chunk_size, per_example=True)
    return reduce(-(torch.as_tensor(d) + torch.as_tensor(r)), per_example)


def iwae(model, x, k: int, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
         per_example: bool = False, memory_budget: int | None = None, allow_long: bool = False) -> float | Tensor:
    """The importance-weighted bound (Burda et al. 2016, eq. 8):

        L_k = E_x E_{z_1..z_k ~ q(z|x)} log (1/k) sum_i p(x, z_i) / q(z_i|x)

    a lower bound on log p(x) that rises with k (L_1 = ELBO) and reaches log p(x) as k -> infinity, or at
    k = 1 when q is the exact posterior. Log-sum-exp throughout; the k samples are drawn in chunks and
    combined with a running log-sum-exp, so memory is set by ``chunk_size``, not by k; a pass holds fewer pairs
    where ``chunk_size`` of them would exceed ``memory_budget`` bytes (default ``MEMORY_BUDGET``), and where even
    one (sample, row) pair does not fit it fails at once with the sizes.

    Time: k N decoder passes for x [N, D]. Their progress shows (a bar on a terminal, a line on the "ibkit" log
    every 30 s), and the first chunks are timed: where the passes would take more than an hour at the measured
    rate, the call fails there with a ValueError naming the estimate, unless ``allow_long=True``.

    Args:
        model: a protocol model (``ibkit.interface``): ``posterior``, ``prior``, ``log_likelihood``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        k: importance samples per row.
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: at most this many (sample, row) pairs per decoder pass.
        per_example: return each row's bound instead of the mean.
        memory_budget: bytes one pass may take (None: ``MEMORY_BUDGET``, 1 GiB).
        allow_long: run work estimated to take more than an hour instead of refusing it.

    Returns:
        mean_x log (1/k sum_i p(x, z_i)/q(z_i|x)) in nats, or [N] per example on the CPU with
            ``per_example=True``.

    Raises:
        ValueError: a model without the protocol's methods, x that does not fit the model, one (sample, row) pair
            larger than ``memory_budget``, or work estimated at more than an hour without ``allow_long``.
    """
    x = prepare(model, x, "iwae")
    check_number("k", k, low=1, integer=True)
    budget, per_pair = budget_bytes(memory_budget), _pair_bytes(model, x)
    if per_pair > budget:
        raise too_large("iwae", per_pair, budget, what="one (sample, row) pair through the decoder",
                        remedy="raise memory_budget")
    samples, rows = plan_chunks(k, min(chunk_size, budget // per_pair))
    out = []
    with seeded_no_grad(seed, x.device), decoder_progress("iwae", k * len(x), x.device,
                                                          work=f"iwae with k={k} on {len(x)} rows", knobs="k",
                                                          allow_long=allow_long) as progress:
        prior = model.prior()
        for s in row_chunks(len(x), rows):
            out.append(importance_weighted_rows(model, prior, model.posterior(x[s]), x[s], k=k, samples=samples,
                                                progress=progress))
    return reduce(torch.cat(out), per_example)


def _pair_bytes(model, x: Tensor) -> int:
    """Bytes one (sample, row) pair takes in a decoder pass: float32 x, its log-likelihood terms and every layer's
    activations (the widths of the model's linear layers and its convolutional feature maps, ``unit_count``; 4 D
    where they are unknown), and the code's terms."""
    widths = unit_count(model)
    d = model.posterior(x[:1]).event_shape.numel()
    return 4 * (2 * x.shape[-1] + (widths or 4 * x.shape[-1]) + 8 * d)


def importance_weighted_rows(model, prior, q, x: Tensor, *, k: int, samples: int,
                             progress: Progress | None = None) -> Tensor:
    """log (1/k) sum_i p(x, z_i) / q(z_i|x) per row [n] for the proposal q (batch [n]), drawing ``samples`` of the
    k at a time and combining them with a running log-sum-exp; each chunk's pairs counted on ``progress``."""
    acc = torch.full((len(x),), -math.inf, device=x.device)
    for j in range(0, k, samples):
        z = q.sample((min(samples, k - j),))  # [S, n, d]
        log_w = model.log_likelihood(x, z) + prior.log_prob(z) - q.log_prob(z)  # [S, n]
        acc = torch.logaddexp(acc, torch.logsumexp(log_w, dim=0))
        if progress is not None:
            progress.update(log_w.numel())
    return acc - math.log(k)
