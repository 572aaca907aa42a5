"""The rate-distortion frontier of data itself, from samples: bounds on Shannon's R(D) of the source under squared
error, to draw under the models on the rate-distortion plane.

Distortion is the squared error summed over the D dimensions of an example (as ``E.mse`` measures it); the slope
lambda is in nats per unit of it, so a point of slope lambda minimises R + lambda D. For a Gaussian source the
water level of reverse water-filling is theta = 1 / (2 lambda) per dimension (``ibkit.theory.gaussian_rd``).

- ``blahut_arimoto``: the upper bound on the empirical source's R(D) over a finite reproduction alphabet (Blahut
  1972; Arimoto 1972; Cover & Thomas 2006, sec. 10.8).
- ``upper``: the same functional over reproduction particles that move (Wasserstein gradient descent, Yang et al.
  2023), an upper bound on the true source's R(D) when scored on held-out rows.
- ``lower``: the sandwich lower bound of Yang & Mandt (ICLR 2022), lines R(D) >= intercept - lambda D.
- ``estimate``: all of them in one tidy table, on the fitted and on held-out rows; ``frontier_at``: the band they
  give at any distortion, with trained models as achievable points too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ibkit.checks import check_choice, check_number
from ibkit.progress import Progress

MEMORY_BUDGET = 1 << 30  # bytes the [rows, M] blocks of one iteration may take (memory_budget=None)


@dataclass
class BlahutArimoto:
    """What ``blahut_arimoto`` reached at one slope.

    Attributes:
        lam: the slope lambda, nats per unit of summed squared error.
        rate: I(X; Y) in nats of the channel Q(y|x) it found, at most log N.
        distortion: E ||x - y||^2, summed over dimensions.
        lagrangian: rate + lam * distortion, the objective it minimised.
        iterations: the iterations it ran.
        change: the last iteration's decrease of the Lagrangian (the convergence reached).
        support: the reproduction points with marginal mass above 1e-12.
        log_marginal: log q(y) [M] float64, the reproduction distribution it ends with (scored on held-out rows by
            ``estimate``).
    """

    lam: float
    rate: float
    distortion: float
    lagrangian: float
    iterations: int
    change: float
    support: int
    log_marginal: Tensor = field(repr=False)


def _rows_per_block(n: int, m: int, memory_budget: int | None) -> tuple[int, bool]:
    """Rows of x per [rows, M] block (two float64 blocks within half the budget), and whether the whole [N, M]
    cost matrix fits the other half as float32 (then it is computed once and kept)."""
    budget = MEMORY_BUDGET if memory_budget is None else memory_budget
    rows = budget // (2 * 2 * 8 * m)
    if rows < 1:
        raise ValueError(f"memory_budget={budget} bytes cannot hold one row of the [N, M] = [{n}, {m}] cost matrix "
                         f"({4 * 8 * m} bytes); raise it or use fewer reproduction points")
    return min(n, rows), 4 * n * m <= budget // 2


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||^2 [P, K] for a [P, D] and b [K, D]."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0.0)


def _pass(blocks, log_q: Tensor, lam: float, want_distortion: bool) -> tuple[Tensor, float, float]:
    """One pass over the row blocks (each yields its costs [b, M]) with the marginal log q [M]: the updated
    marginal's log [M], mean_x log Z(x) and, if asked, the distortion E_Q ||x - y||^2, where
    Q(y|x) = q(y) e^(-lam ||x - y||^2) / Z(x)."""
    mass = torch.zeros_like(log_q)
    log_z_sum, distortion, n = 0.0, 0.0, 0
    for cost in blocks:
        weights = torch.add(log_q, cost, alpha=-lam)  # log q(y) - lam d(x, y), [b, M] float64
        top = weights.amax(1, keepdim=True)
        weights.sub_(top).exp_()  # Q(y|x) Z(x) e^-top
        total = weights.sum(1)  # [b]
        mass += (1 / total) @ weights
        log_z_sum += (total.log() + top[:, 0]).sum().item()
        if want_distortion:
            distortion += ((weights * cost).sum(1) / total).sum().item()
        n += len(cost)
    return (mass / n).log(), log_z_sum / n, distortion / n


def blahut_arimoto(x, lam: float, *, reproduction=None, max_iter: int = 2000, tol: float = 1e-7,
                   memory_budget: int | None = None) -> BlahutArimoto:
    """Blahut-Arimoto on the empirical source of the rows x: the channel Q(y|x) to the reproduction points that
    minimises I(X; Y) + lam E||x - y||^2, alternating Q(y|x) ∝ q(y) exp(-lam ||x - y||^2) and
    q(y) = mean_x Q(y|x), in the log domain, the [N, M] costs in row blocks within ``memory_budget``.

    The point it returns is achievable, so it bounds from above the R(D) of the empirical source (the N rows, each of
    mass 1/N) restricted to these reproduction points. It is not the true source's R(D), in two ways that pull
    apart. Its rate is at most H(empirical source) = log N however rich the source, and N samples of a source of
    many dimensions are all far apart, so the empirical source's R(D) lies below the true one at small D (a 20-D
    Gaussian, 4,000 rows, lam = 2: 6.1 nats at D = 0.80 where the true R is 8.8): on its own rows it is no bound on
    the true source. And with the rows themselves as the alphabet a code can only name rows, each a noisy point
    that carries every small direction's full variance: scored on held-out rows (``estimate`` does so with the
    reproduction distribution ``log_marginal``), an upper bound on the true source, it is loose (the same source:
    9-15% above R(D), where the moving particles of ``upper`` are within 5%). In a few dimensions with N large the
    rows stand in well for both the source and the alphabet (a 2-D Gaussian from 10,000 rows: within 2%).

    Args:
        x: [N, D] rows (float).
        lam: the slope lambda > 0, nats per unit of summed squared error.
        reproduction: [M, D] reproduction points; None: the rows themselves.
        max_iter: the most iterations.
        tol: stop once an iteration lowers the Lagrangian by less than this (nats).
        memory_budget: bytes it may take (None: 1 GiB). Half holds the [N, M] costs as float32 where they fit (N = M
            = 10,000: 400 MB, computed once); the other half two float64 blocks of rows at a time.

    Returns:
        the ``BlahutArimoto`` point: rate, distortion, Lagrangian, iterations, the last change and the support.

    Raises:
        ValueError: lam <= 0, rows of another width than the points, or a budget below one row.
    """
    check_number("lam", lam, low=0, low_open=True)
    check_number("max_iter", max_iter, low=1, integer=True)
    check_number("tol", tol, low=0)
    x = torch.as_tensor(x, dtype=torch.float64)
    y = x if reproduction is None else torch.as_tensor(reproduction, dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"x {list(x.shape)} and reproduction {list(y.shape)} must be [N, D] and [M, D] rows of one "
                         f"width, N, M >= 1")
    rows, keep = _rows_per_block(len(x), len(y), memory_budget)
    starts = range(0, len(x), rows)
    kept = [_sq_dists(x[i: i + rows], y).float() for i in starts] if keep else None

    def blocks():
        return iter(kept) if kept is not None else (_sq_dists(x[i: i + rows], y) for i in starts)

    log_q = torch.full((len(y),), -math.log(len(y)), dtype=torch.float64)
    lagrangian, change, iterations = math.inf, math.inf, 0
    while iterations < max_iter and change >= tol:
        new_log_q, mean_log_z, _ = _pass(blocks(), log_q, lam, want_distortion=False)
        iterations += 1
        change, lagrangian = lagrangian + mean_log_z, -mean_log_z  # R + lam D of the channel this pass used
        log_q = new_log_q
    _, mean_log_z, distortion = _pass(blocks(), log_q, lam, want_distortion=True)  # the point of the final q
    lagrangian = -mean_log_z
    rate = lagrangian - lam * distortion  # with q the marginal of Q up to tol: I(X; Y), else above it
    support = int((log_q > math.log(1e-12)).sum())
    return BlahutArimoto(lam=float(lam), rate=max(rate, 0.0), distortion=distortion, lagrangian=lagrangian,
                         iterations=iterations, change=change, support=support, log_marginal=log_q)


@dataclass
class UpperBound:
    """An achievable point of the channel Q(y|x) ∝ w(y) exp(-lam ||x - y||^2) to weighted reproduction particles,
    scored on the rows of one split: rate = mean_x KL(Q(.|x) || w) >= I(X; Y) >= R(distortion).

    On rows the particles were not fitted to (split "test") both means are unbiased estimates for the true source,
    so the point bounds its R(D) from above up to their intervals; on the fitted rows ("train") it bounds the
    empirical source's.

    Attributes:
        lam: the slope lambda, nats per unit of summed squared error.
        method: how the particles were fitted ("wgd").
        split: "train" (the rows fitted on) or "test" (held-out rows).
        rate, rate_low, rate_high: the rate in nats and its 95% interval over the rows.
        distortion, distortion_low, distortion_high: E ||x - y||^2, summed over dimensions, and its interval.
        particles: the reproduction particles.
        steps: the gradient steps taken.
    """

    lam: float
    method: str
    split: str
    rate: float
    rate_low: float
    rate_high: float
    distortion: float
    distortion_low: float
    distortion_high: float
    particles: int
    steps: int


def _rows(name: str, value, width: int | None = None) -> Tensor:
    """``value`` as a float32 tensor [N, D] of finite numbers, refusing anything else with a ValueError."""
    try:
        rows = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value).to(torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a tensor or array of shape [N, D]; got {type(value).__name__}") from None
    if rows.ndim != 2 or not rows.shape[0] or not rows.shape[1]:
        raise ValueError(f"{name} must have shape [N, D] with N, D >= 1; got shape {list(rows.shape)}")
    if width is not None and rows.shape[1] != width:
        raise ValueError(f"{name} has width {rows.shape[1]} but x has width {width}; pass rows of the same source")
    if not torch.isfinite(rows).all():
        raise ValueError(f"{name} contains NaN or inf; clean the data first")
    return rows


def _lambdas(lambdas) -> list[float]:
    """One slope or a sequence of them, each > 0."""
    values = [lambdas] if np.ndim(lambdas) == 0 else list(lambdas)
    if not values:
        raise ValueError("lambdas=[] must hold at least one slope > 0")
    for lam in values:
        check_number("lambdas", lam, low=0, low_open=True)
    return [float(lam) for lam in values]


def _channel(x: Tensor, y: Tensor, log_w: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """The logits log w(y) - lam ||x - y||^2 [b, M] of Q(y|x) and the costs [b, M], for rows x [b, D] and
    particles y [M, D] of log weights log_w [M]."""
    cost = _sq_dists(x, y)
    return log_w - lam * cost, cost


def _scored(x: Tensor, y: Tensor, log_w: Tensor, lam: float, rows: int = 4096) -> tuple[Tensor, Tensor]:
    """Per row of x [N, D]: KL(Q(.|x) || w) = -log Z(x) - lam d(x) and d(x) = E_Q ||x - y||^2, both [N] float64
    (row blocks of ``rows``)."""
    rates, distortions = [], []
    for block in x.split(rows):
        logits, cost = _channel(block, y, log_w, lam)
        d = (logits.softmax(1) * cost).sum(1).double()
        rates.append(-logits.logsumexp(1).double() - lam * d)
        distortions.append(d)
    return torch.cat(rates).clamp_min(0.0), torch.cat(distortions)  # a KL is >= 0: clamp float32 rounding


def _interval(values: Tensor) -> tuple[float, float, float]:
    """The mean of per-row values [N] and its 95% normal interval (1.96 standard errors; one row: no width)."""
    mean = values.mean().item()
    half = 1.96 * values.std().item() / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


def _wgd(x: Tensor, lam: float, *, particles: int, steps: int, batch: int, lr: float,
         generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Particles y [M, D] and log weights [M] that minimise the Blahut-Arimoto functional
    F(w, y) = E_x[-log sum_j w_j exp(-lam ||x - y_j||^2)] = min over Q of rate + lam distortion (Yang et al. 2023).

    Each step moves the particles down F's gradient on a minibatch of b rows, by Adam (the Wasserstein gradient up
    to a per-particle scale); with P = Q(j|x_i) [b, M] the gradient is in closed form,
    dF/dy_j = (2 lam / b) sum_i P_ij (y_j - x_i), so one softmax serves it and the weights, which move a tenth of
    the way to the minibatch's Blahut-Arimoto update w_j <- mean_i P_ij (the hybrid of their sec. 4)."""
    y = x[torch.randperm(len(x), generator=generator)[:particles]].clone()  # start at rows: where the mass is
    y.requires_grad_(True)
    log_w = torch.full((len(y),), -math.log(len(y)))
    optimiser = torch.optim.Adam([y], lr=lr)
    for _ in range(steps):
        rows = x[torch.randint(len(x), (batch,), generator=generator)]
        with torch.no_grad():
            logits, _ = _channel(rows, y, log_w, lam)
            posterior = logits.softmax(1)  # [b, M]
            mass = posterior.sum(0)  # [M]
            y.grad = (2 * lam / batch) * (mass[:, None] * y - posterior.T @ rows)
            log_w = (0.9 * log_w.exp() + 0.1 * mass / batch).log()
        optimiser.step()
    return y.detach(), log_w


UPPER_METHODS = {"wgd": _wgd}  # method -> fit(x, lam, *, particles, steps, batch, lr, generator) -> (y, log w)


def upper(x, lambdas, method: str = "wgd", *, held_out=None, particles: int = 1024, steps: int = 400,
          batch: int = 1000, lr: float = 0.05, seed: int = 0) -> list[UpperBound]:
    """Upper bounds on R(D) from the Blahut-Arimoto functional over a continuous reproduction alphabet: particles
    fitted on the rows x at each slope, then scored on x and on ``held_out`` (``UpperBound``).

    ``method="wgd"``: Wasserstein gradient descent on weighted particles (Yang et al. 2023, "Estimating the
    rate-distortion function by Wasserstein gradient descent"). Unlike ``blahut_arimoto``, whose alphabet is the
    rows themselves, the particles move to where a reproduction serves many rows (towards the source's principal
    directions, off the noise), so in high dimensions it is far tighter: on a 20-dimensional Gaussian whose
    samples lie far apart, the rows are poor reproductions of one another, and Blahut-Arimoto's marginal over them,
    scored on held-out rows, is 9-15% above R(D) where the particles are within 5% (``estimate`` scores both).
    Its rate is at most the largest -log w_j (log M for equal weights: the reach of M particles), and the bound
    is an estimate: the held-out point is unbiased for the true source up to its interval (a finite sample of rows
    can also overfit the particles: scored on the fitted rows the rate is higher at a lower distortion).

    Args:
        x: [N, D] rows to fit the particles to.
        lambdas: a slope or slopes > 0, nats per unit of summed squared error.
        method: "wgd" (``UPPER_METHODS``).
        held_out: [M, D] rows to score on as well (split "test"); None: the fitted rows only.
        particles: reproduction particles (at most N; they start at random rows).
        steps: gradient steps (Adam) on minibatches.
        batch: rows per minibatch (drawn with replacement).
        lr: Adam's step size, in the units of x.
        seed: draws the starting rows and the minibatches.

    Returns:
        one ``UpperBound`` per slope and split, the slopes in the order given, "train" before "test".

    Raises:
        ValueError: an unknown method, rows that are not [N, D] (or held-out rows of another width), a slope <= 0.
    """
    check_choice("method", method, UPPER_METHODS)
    x = _rows("x", x)
    scored = {"train": x} | ({} if held_out is None else {"test": _rows("held_out", held_out, x.shape[1])})
    for name, value in (("particles", particles), ("steps", steps), ("batch", batch)):
        check_number(name, value, low=1, integer=True)
    check_number("lr", lr, low=0, low_open=True)
    generator = torch.Generator().manual_seed(seed)
    bounds = []
    for lam in _lambdas(lambdas):
        y, log_w = UPPER_METHODS[method](x, lam, particles=min(particles, len(x)), steps=steps, batch=batch, lr=lr,
                                         generator=generator)
        for split, rows in scored.items():
            rate, distortion = _scored(rows, y, log_w, lam)
            bounds.append(UpperBound(lam, method, split, *_interval(rate), *_interval(distortion),
                                     particles=len(y), steps=steps))
    return bounds


_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
# Student's t 0.975 quantiles for 1..30 degrees of freedom; 1.96 beyond
FLOOR_QUANTILE = 0.01  # log u is floored at this quantile of its values on the training rows (see ``lower``)


@dataclass
class Sandwich:
    """One lower bound line R(D) >= intercept - lam * D (Yang & Mandt 2022), evaluated on one split.

    Attributes:
        lam: the slope lambda, nats per unit of summed squared error.
        split: "train" (the rows u was fitted on: optimistic) or "test" (held-out rows: unbiased).
        intercept: ell(u) in nats, the mean of the per-batch estimates: R_L(D) + lam D.
        intercept_low: the lower end of its 95% interval (mean - t * standard error over the batches).
        intercept_high: the upper end.
        log_alpha: the log of the linearisation point alpha, fixed on training rows before the evaluation.
        k: rows per batch of C_k.
        batches: the batches the estimate averages.
    """

    lam: float
    split: str
    intercept: float
    intercept_low: float
    intercept_high: float
    log_alpha: float
    k: int
    batches: int

    def rate_at(self, distortion: float) -> float:
        """The bound at summed squared error ``distortion``: max(intercept - lam * distortion, 0) nats."""
        return max(self.intercept - self.lam * distortion, 0.0)


@dataclass(frozen=True)
class _Search:
    """How the sup over y of one slope lam is sought: mean shift from ``starts`` starts, at most ``ascent_steps``
    iterations each, the random starts drawn from ``generator``."""

    lam: float
    starts: int
    ascent_steps: int
    generator: torch.Generator


def _argsup(xb: Tensor, log_u: Tensor, search: _Search, every_row: bool = False) -> Tensor:
    """The y [D] that maximises log sum_i exp(-lam ||x_i - y||^2 - log u(x_i)) over the batch xb [k, D] (log_u [k]).

    Multi-start mean shift: its gradient in y is 2 lam (ybar_w - y), ybar_w the softmax-weighted mean of the rows,
    so the ascent step 1/(2 lam) is y <- ybar_w, which never lowers the objective (Carreira-Perpinan 2007). Starts:
    a pool of rows is scored at y = row (every row, or the 4 * starts heaviest rows, largest 1/u, and 4 * starts
    random rows); half the starts are the best of the pool, the rest random members of it. The best end is returned.
    """
    lam, starts, gen = search.lam, search.starts * (4 if every_row else 1), search.generator
    with torch.no_grad():
        k = len(xb)
        if every_row:
            pool = torch.arange(k)
        else:  # the 4 * starts heaviest rows (largest 1/u) and 4 * starts random rows
            heavy = (-log_u).topk(min(k, 4 * starts)).indices
            pool = torch.cat([heavy, torch.randperm(k, generator=gen)[: 4 * starts]]).unique()
        at_rows = torch.cat([torch.logsumexp(-lam * _sq_dists(xb[rows], xb) - log_u, dim=1)  # objective at y = row
                             for rows in pool.split(1024)])
        first = pool[at_rows.topk(min(len(pool), (starts + 1) // 2)).indices]
        others = pool[~torch.isin(pool, first)]
        y = xb[torch.cat([first, others[torch.randperm(len(others), generator=gen)[: starts - len(first)]]])]
        value = torch.full((len(y),), -math.inf)
        for _ in range(search.ascent_steps):
            logits = -lam * _sq_dists(y, xb) - log_u  # [S, k]
            new_value = torch.logsumexp(logits, dim=1)
            if (new_value - value).max() < 1e-6:
                break
            y, value = torch.softmax(logits, dim=1) @ xb, new_value
        value = torch.logsumexp(-lam * _sq_dists(y, xb) - log_u, dim=1)  # [S]
        return y[value.argmax()]


def _log_ck(xb: Tensor, log_u: Tensor, y: Tensor, lam: float) -> Tensor:
    """log C_k = log (1/k) sum_i exp(-lam ||x_i - y||^2) / u(x_i) at the maximiser y [D] (differentiable in log_u)."""
    return torch.logsumexp(-lam * _sq_dists(y[None], xb)[0] - log_u, dim=0) - math.log(len(xb))


def _sup_log_ck(xb: Tensor, log_u: Tensor, search: _Search) -> Tensor:
    """log C_k of the batch xb [k, D] with log u(xb) = log_u [k], as evaluated (not trained): every row scored as a
    start, 4 * starts mean-shift starts."""
    return _log_ck(xb, log_u, _argsup(xb, log_u, search, every_row=True), search.lam)


def _batches(n: int, k: int, gen: torch.Generator) -> list[Tensor]:
    """n // k disjoint random index batches of k rows."""
    order = torch.randperm(n, generator=gen)
    return [order[i * k: (i + 1) * k] for i in range(n // k)]


def lower(x, lambdas: float | Sequence[float], *, held_out=None, k: int = 1024, steps: int = 1000,
          hidden: tuple[int, ...] = (64, 64), starts: int = 16, ascent_steps: int = 50, lr: float = 1e-3,
          seed: int = 0) -> list[Sandwich]:
    """Lower bound lines on the source's R(D), one per slope (Yang & Mandt 2022, eqs. 6-8 and Algorithm 1).

    For any u(x) > 0 and lam >= 0, R(D) >= ell(u) - lam D, with rho(x, y) = ||x - y||^2 summed over dimensions,

        ell(u) = E[-log u(X)] - E[C_k] / alpha - log alpha + 1,
        C_k = sup_y (1/k) sum_{i<=k} exp(-lam rho(x_i, y)) / u(x_i)   over k i.i.d. rows,

    since E[C_k] >= sup_y E[exp(-lam rho(X, y)) / u(X)] and log c <= c / alpha + log alpha - 1 for alpha > 0.
    log u is an MLP (input standardised by x's mean and scale) trained by Adam on batches of k rows of x to maximise
    -mean log u - C_k / alpha, alpha a running mean of C_k (as in the paper); then floored at the
    ``FLOOR_QUANTILE`` quantile of its values on x (any u > 0 is allowed: the floor keeps a held-out row in a tail
    the training rows left empty from a huge weight 1/u). alpha is then fixed to the mean C_k over up to 8 batches of
    x, and ell is the mean over the disjoint k-row batches of a split of xi = -mean_batch log u - C_k / alpha -
    log alpha + 1: unbiased on held-out rows, which neither u nor alpha has seen, optimistic on x itself. The sup over
    y is a multi-start mean shift (``_argsup``; in evaluation every row of a batch is scored as a start and 4 * starts
    starts run). A missed global sup underestimates C_k and makes the bound optimistic, so use enough ``starts``.
    All in the log domain (C_k / alpha = exp(log C_k - log alpha)).

    Every per-batch xi is at most log k (C_k >= (1/k) max_i 1/u(x_i) >= exp(mean_batch -log u) / k), so ell <= log k
    whatever the source. Informative for sources of low intrinsic dimension, where a batch of k rows covers the
    neighbourhood of the sup (2-D Gaussian, lam 1.5, k 4096: ell 2.10-2.14 against the true 2.235). Nearly trivial
    at high intrinsic dimension such as MNIST pixels: C_k is dominated by the single nearest row, ell saturates
    toward log k as lam grows (k 1000: lam 1 gives 6.8 nats, so R_L(D) = max(ell - lam D, 0) is 0 beyond D ~ 7;
    lam 0.1 gives 4.8, so 2.8 nats at D = 20), far below the true R(D) at every D of interest. The bound is
    reported even then, never a made-up tighter one.

    Args:
        x: [N, D] training rows (numpy or tensor, any real dtype; computed in float32), N >= 4.
        lambdas: a slope > 0 or a sequence of them, nats per unit of summed squared error.
        held_out: [M, D] rows of the same source, M >= 4, for the unbiased "test" estimate; or None.
        k: rows per batch of C_k, >= 2; clipped per split to half its rows, so that there are >= 2 batches.
        steps: Adam steps fitting log u, >= 0 (0: the untrained network, still a valid, loose bound).
        hidden: hidden widths of the MLP (softplus activations).
        starts: mean-shift starts per batch for the sup over y in training (4 * starts in evaluation).
        ascent_steps: the most mean-shift iterations per start (it stops once no start gains 1e-6 nats).
        lr: Adam's learning rate.
        seed: seeds the network, the batches and the random starts (the global RNG state is left as it was).

    Returns:
        one ``Sandwich`` per (slope, split): slopes in the given order, "train" before "test".

    Raises:
        ValueError: a slope <= 0 or no slope, k < 2, steps < 0, starts, ascent_steps or a hidden width < 1, lr <= 0,
            x or held_out not [N, D] finite numbers, held_out of another width than x, or a split of < 4 rows.
    """
    lams = _lambdas(lambdas)
    for name, value, low in (("k", k, 2), ("steps", steps, 0), ("starts", starts, 1), ("ascent_steps", ascent_steps, 1),
                             ("seed", seed, 0)):
        check_number(name, value, low=low, integer=True)
    check_number("lr", lr, low=0, low_open=True)
    if not isinstance(hidden, (tuple, list)) or not all(isinstance(h, (int, np.integer)) and h >= 1 for h in hidden):
        raise ValueError(f"hidden={hidden!r} must be a tuple of widths >= 1, e.g. (64, 64)")
    x = _rows("x", x)
    splits = [("train", x)] + ([("test", _rows("held_out", held_out, x.shape[1]))] if held_out is not None else [])
    for name, rows in splits:
        if len(rows) < 4:
            raise ValueError(f"{'x' if name == 'train' else 'held_out'} has {len(rows)} rows; the interval needs "
                             f">= 2 batches of >= 2 rows, so pass at least 4")
    results = []
    for lam in lams:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            search = _Search(lam, starts, ascent_steps, torch.Generator().manual_seed(seed))
            kx = min(k, len(x) // 2)
            net = _fit(x, kx, search, steps=steps, hidden=hidden, lr=lr)
            with torch.no_grad():  # alpha: the mean C_k over up to 8 batches of training rows, fixed from here on
                log_cks = torch.stack([_sup_log_ck(x[b], net(x[b]), search)
                                       for b in _batches(len(x), kx, search.generator)[:8]])
                log_alpha = float(torch.logsumexp(log_cks, 0) - math.log(len(log_cks)))
                for split, rows in splits:
                    results.append(_evaluate(net, rows, search, k=min(k, len(rows) // 2), split=split,
                                             log_alpha=log_alpha))
    return results


def _fit(x: Tensor, k: int, search: _Search, *, steps: int, hidden: tuple[int, ...], lr: float, beta: float = 0.9):
    """The log u function [n, D] -> [n]: an MLP trained ``steps`` Adam steps on batches of k rows of x [N, D] to
    maximise the linearised objective -mean log u - C_k / alpha, log alpha a running mean of C_k (weight ``beta`` on
    the past, as in Yang & Mandt's Algorithm 1), then floored at its ``FLOOR_QUANTILE`` quantile over x."""
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-3 * float(x.std()) + 1e-12)
    widths = (x.shape[1], *hidden)
    layers = [m for a, b in zip(widths[:-1], widths[1:], strict=True) for m in (nn.Linear(a, b), nn.Softplus())]
    mlp = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
    opt = torch.optim.Adam(mlp.parameters(), lr=lr)
    log_alpha = None
    for _ in range(steps):
        xb = x[torch.randperm(len(x), generator=search.generator)[:k]]
        log_u = mlp((xb - mean) / scale)[:, 0]
        log_ck = _log_ck(xb, log_u, _argsup(xb, log_u.detach(), search), search.lam)  # y fixed
        log_alpha = float(log_ck.detach()) if log_alpha is None else log_alpha
        loss = log_u.mean() + torch.exp((log_ck - log_alpha).clamp_max(10.0))  # clamped: one wild batch
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(mlp.parameters(), 10.0)
        opt.step()
        log_alpha = float(np.logaddexp(log_alpha + math.log(beta), float(log_ck.detach()) + math.log(1 - beta)))
    with torch.no_grad():
        floor = float(torch.quantile(mlp((x - mean) / scale)[:, 0], FLOOR_QUANTILE))
    return lambda rows: mlp((rows - mean) / scale)[:, 0].clamp_min(floor)


def _evaluate(net, rows: Tensor, search: _Search, *, k: int, split: str, log_alpha: float) -> Sandwich:
    """The intercept on one split: the mean and 95% interval of xi over its disjoint k-row batches."""
    xis = []
    for b in _batches(len(rows), k, search.generator):
        log_u = net(rows[b])
        excess = float(_sup_log_ck(rows[b], log_u, search)) - log_alpha
        xis.append(-float(log_u.mean()) - (math.exp(excess) if excess < 700 else math.inf) - log_alpha + 1)
    xi = np.array(xis)
    mean = float(xi.mean())  # -inf (a trivial bound, never a capped one) if some C_k / alpha overflowed
    t = _T975[len(xi) - 2] if len(xi) <= 31 else 1.96
    half = t * float(xi.std(ddof=1)) / math.sqrt(len(xi)) if math.isfinite(mean) else 0.0
    return Sandwich(lam=search.lam, split=split, intercept=mean, intercept_low=mean - half, intercept_high=mean + half,
                    log_alpha=log_alpha, k=k, batches=len(xi))


COLUMNS = ("lambda", "method", "side", "split", "rate", "rate_low", "rate_high", "distortion", "distortion_low",
           "distortion_high", "intercept", "intercept_low", "intercept_high", "rows", "note")
METHODS = ("constant", "blahut_arimoto", "wgd", "sandwich")  # what ``estimate`` runs, upper bounds first


def _constant_rows(x: Tensor, scored: dict[str, Tensor]) -> list[dict]:
    """Rate 0 at D = E ||x - mean||^2 (every row reproduced by the fitted rows' mean): achievable on every split."""
    mean = x.mean(0)
    rows = []
    for split, split_rows in scored.items():
        d, low, high = _interval((split_rows - mean).double().pow(2).sum(1))
        rows.append(dict(method="constant", side="upper", split=split, rate=0.0, rate_low=0.0, rate_high=0.0,
                         distortion=d, distortion_low=low, distortion_high=high, intercept=math.nan,
                         intercept_low=math.nan, intercept_high=math.nan, rows=len(split_rows),
                         note="every row reproduced by the training rows' mean"))
    return rows


def estimate(x, lambdas, methods=METHODS, *, held_out=None, options: dict[str, dict] | None = None):
    """The frontier's bounds in one tidy table: each method at each slope, on the fitted rows ("train") and, where
    the method allows, on ``held_out`` ("test").

    - "constant": rate 0 at the rows' variance (every row reproduced by their mean); no slope.
    - "blahut_arimoto": the empirical source of x over the rows themselves (train only: its channel is defined on
      them); rate <= log N.
    - "wgd": ``upper``; "train" and "test".
    - "sandwich": ``lower``, a lower bound line R >= intercept - lam D; "train" (optimistic: u was fitted there)
      and "test". Its row's distortion is that of the tightest upper point at the same slope and split (where the
      line nearly touches R(D)) and its rate the line there, max(intercept - lam D, 0); without an upper point at
      that slope, NaN.

    Upper rows give rate and distortion with their 95% intervals over rows and intercept = rate + lam distortion;
    lower rows give the intercept with its interval over batches. ``frontier_at`` turns the table into bounds at
    any distortion.

    Args:
        x: [N, D] rows (the training split).
        lambdas: a slope or slopes > 0, nats per unit of summed squared error.
        methods: any of ``METHODS``.
        held_out: [M, D] held-out rows of the same source; None: train rows only.
        options: method -> keyword arguments of its function (``{"blahut_arimoto": {"max_iter": 100},
            "wgd": {"steps": 200}}``).

    Returns:
        a DataFrame with ``COLUMNS``, one row per method, slope and split.

    Raises:
        ValueError: an unknown method, an option for a method not run, or the functions' own refusals.
    """
    import pandas as pd

    methods = tuple(methods)
    for method in methods:
        check_choice("methods", method, METHODS)
    options = dict(options or {})
    for method in options:
        check_choice("options", method, methods)
    x = _rows("x", x)
    scored = {"train": x} | ({} if held_out is None else {"test": _rows("held_out", held_out, x.shape[1])})
    lambdas = _lambdas(lambdas)
    rows = _constant_rows(x, scored) if "constant" in methods else []
    sloped = [m for m in METHODS[1:] if m in methods]
    with Progress("frontier", len(lambdas) * len(sloped), "slopes x methods") as progress:
        for lam in lambdas:  # upper methods first: a lower line's row reads the upper points of its slope
            for method in sloped:
                rows += _METHOD_ROWS[method](x, lam, scored, options=options.get(method, {}), earlier=rows)
                progress.update(1)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _blahut_arimoto_rows(x: Tensor, lam: float, scored: dict[str, Tensor], *, options: dict, **_) -> list[dict]:
    """Blahut-Arimoto on the rows; where there are held-out rows, its marginal over the rows scored on them."""
    point = blahut_arimoto(x, lam, **options)
    run = f"{point.iterations} iterations, last change {point.change:.1e}"
    exact = dict(rate=(point.rate,) * 3, distortion=(point.distortion,) * 3)  # the empirical source's: no sampling
    rows = [_upper_row(lam, "blahut_arimoto", "train", **exact, rows=len(x),
                       note=f"rate <= log N = {math.log(len(x)):.2f}; {run}")]
    if "test" in scored:
        rate, distortion = _scored(scored["test"], x, point.log_marginal.float(), lam)
        rows.append(_upper_row(lam, "blahut_arimoto", "test", rate=_interval(rate), distortion=_interval(distortion),
                               rows=len(scored["test"]), note=f"the rows as reproductions, weighted by its marginal; "
                               f"{run}"))
    return rows


def _wgd_rows(x: Tensor, lam: float, scored: dict[str, Tensor], *, options: dict, **_) -> list[dict]:
    return [_upper_row(b.lam, "wgd", b.split, rate=(b.rate, b.rate_low, b.rate_high),
                       distortion=(b.distortion, b.distortion_low, b.distortion_high), rows=len(scored[b.split]),
                       note=f"{b.particles} particles, {b.steps} steps")
            for b in upper(x, lam, "wgd", held_out=scored.get("test"), **options)]


def _sandwich_rows(x: Tensor, lam: float, scored: dict[str, Tensor], *, options: dict,
                   earlier: list[dict]) -> list[dict]:
    import pandas as pd

    table = pd.DataFrame(earlier, columns=list(COLUMNS))
    return [_sandwich_row(line, table, len(scored[line.split]))
            for line in lower(x, lam, held_out=scored.get("test"), **options)]


_METHOD_ROWS = {"blahut_arimoto": _blahut_arimoto_rows, "wgd": _wgd_rows, "sandwich": _sandwich_rows}


def _upper_row(lam: float, method: str, split: str, *, rate: tuple, distortion: tuple, rows: int, note: str) -> dict:
    """An upper point's row: (mean, low, high) of its rate and distortion over ``rows`` rows scored."""
    fitted = "; scored on the rows fitted to: a bound on their empirical source" if split == "train" else ""
    return dict(**{"lambda": lam}, method=method, side="upper", split=split, rate=rate[0], rate_low=rate[1],
                rate_high=rate[2], distortion=distortion[0], distortion_low=distortion[1],
                distortion_high=distortion[2], intercept=rate[0] + lam * distortion[0], intercept_low=math.nan,
                intercept_high=math.nan, rows=rows, note=note + fitted)


def _sandwich_row(line: Sandwich, table, rows: int) -> dict:
    """A lower bound line's row: its intercept, and the line at the tightest upper point of its slope and split."""
    same = table[(table["lambda"] == line.lam) & (table["split"] == line.split) & (table["side"] == "upper")]
    d = same.loc[same["intercept"].idxmin(), "distortion"] if len(same) else math.nan
    at = [max(v - line.lam * d, 0.0) for v in (line.intercept, line.intercept_low, line.intercept_high)]
    trivial = "; trivial: 0 at this distortion" if at[2] <= 0 else ""
    optimistic = "; scored on the rows u was fitted to: optimistic" if line.split == "train" else ""
    return dict(**{"lambda": line.lam}, method="sandwich", side="lower", split=line.split, rate=at[0],
                rate_low=at[1], rate_high=at[2], distortion=d, distortion_low=d, distortion_high=d,
                intercept=line.intercept, intercept_low=line.intercept_low, intercept_high=line.intercept_high,
                rows=rows, note=f"k = {line.k}, {line.batches} batches{optimistic}{trivial}")


def frontier_at(table, distortion, *, split: str = "test", achieved=()) -> tuple:
    """Bounds on R(D) at each distortion from an ``estimate`` table: (lower, upper), nats, arrays like
    ``distortion``.

    upper: every upper point of ``split`` and every ``achieved`` (distortion, rate) pair (trained models are
    achievable points too) is achievable, and so is any mixture of two (time-sharing), and a point of lower
    distortion serves any higher one: the least rate over the points at or below D and the chords between two
    points that straddle it. Beyond the reach of every point (below the least distortion), infinite.

    lower: the highest sandwich line of ``split`` at D, each at the low end of its intercept's interval,
    max_lam (intercept_low - lam D), at least 0 and at most ``upper``: a line above an achievable point is wrong
    there (its estimate's noise, or a missed sup over y), so it is cut to the point, and the band is never inverted.

    Args:
        table: an ``estimate`` table.
        distortion: distortions (a number or an array), summed squared error.
        split: the table's split ("train" or "test").
        achieved: more achievable points, pairs (distortion, rate), e.g. the models of a sweep on that split.

    Returns:
        (lower, upper): numpy arrays of the distortion's shape.
    """
    d = np.asarray(distortion, dtype=float)
    rows = table[table["split"] == split]
    ups = rows[rows["side"] == "upper"]
    points = np.array([*zip(ups["distortion"], ups["rate"], strict=True), *achieved], dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points).all(1)]
    upper_bound = np.full(d.shape, np.inf)
    if len(points):
        pd_, pr = points[:, 0], points[:, 1]
        flat = d[..., None]
        single = np.where(pd_ <= flat, pr, np.inf).min(-1)  # a point at or below D
        i, j = np.nonzero(pd_[:, None] < pd_[None, :])  # chords from a lower-distortion point i to j
        t = (flat - pd_[i]) / (pd_[j] - pd_[i])
        chord = np.where((t >= 0) & (t <= 1), pr[i] + t * (pr[j] - pr[i]), np.inf)
        upper_bound = np.minimum(single, chord.min(-1) if len(i) else np.inf)
    lines = rows[rows["side"] == "lower"]
    lower_bound = np.zeros(d.shape)
    for lam, low in zip(lines["lambda"], lines["intercept_low"], strict=True):
        lower_bound = np.maximum(lower_bound, low - lam * d)
    return np.minimum(lower_bound, upper_bound), upper_bound


__all__ = ["BlahutArimoto", "blahut_arimoto", "MEMORY_BUDGET", "UpperBound", "upper", "UPPER_METHODS", "Sandwich",
           "lower", "estimate", "frontier_at", "COLUMNS", "METHODS"]
