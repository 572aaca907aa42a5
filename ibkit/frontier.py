"""The rate-distortion frontier of data itself, from samples: bounds on Shannon's R(D) of the source under squared
error, to draw under the models on the rate-distortion plane.

Distortion is the squared error summed over the D dimensions of an example (as ``E.mse`` measures it); the slope
lambda is in nats per unit of it, so a point of slope lambda minimises R + lambda D. For a Gaussian source the
water level of reverse water-filling is theta = 1 / (2 lambda) per dimension (``ibkit.theory.gaussian_rd``).

Built so far: ``blahut_arimoto``, the upper bound on the empirical source's R(D) over a finite reproduction
alphabet (Blahut 1972; Arimoto 1972; Cover & Thomas 2006, sec. 10.8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ibkit.checks import check_number

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
    """

    lam: float
    rate: float
    distortion: float
    lagrangian: float
    iterations: int
    change: float
    support: int


def _rows_per_block(n: int, m: int, memory_budget: int | None) -> tuple[int, bool]:
    """Rows of x per [rows, M] block (two float64 blocks within half the budget), and whether the whole [N, M]
    cost matrix fits the other half as float32 (then it is computed once and kept)."""
    budget = MEMORY_BUDGET if memory_budget is None else memory_budget
    rows = budget // (2 * 2 * 8 * m)
    if rows < 1:
        raise ValueError(f"memory_budget={budget} bytes cannot hold one row of the [N, M] = [{n}, {m}] cost matrix "
                         f"({4 * 8 * m} bytes); raise it or use fewer reproduction points")
    return min(n, rows), 4 * n * m <= budget // 2


def _costs(block: Tensor, y: Tensor, y_sq: Tensor) -> Tensor:
    """||x - y||^2 [b, M] for the rows block [b, D] and the points y [M, D] (y_sq: their squared norms)."""
    return (block.pow(2).sum(-1, keepdim=True) + y_sq - 2 * block @ y.T).clamp_min_(0.0)


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
    mass 1/N) restricted to these reproduction points. It is not the true source's R(D): its rate is at most
    H(empirical source) = log N, however rich the source, and with the rows themselves as the alphabet a code can
    only name rows. In a few dimensions with N large the empirical source and its rows stand in well for the true
    source and alphabet; in many dimensions N samples cover neither, and the bound is loose (the rate saturates
    near log N long before the true R(D) does).

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
    y_sq = y.pow(2).sum(-1)
    starts = range(0, len(x), rows)
    kept = [_costs(x[i: i + rows], y, y_sq).float() for i in starts] if keep else None

    def blocks():
        return iter(kept) if kept is not None else (_costs(x[i: i + rows], y, y_sq) for i in starts)

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
                         iterations=iterations, change=change, support=support)


__all__ = ["BlahutArimoto", "blahut_arimoto", "MEMORY_BUDGET"]
