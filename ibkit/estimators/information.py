"""Bounds on the mutual information I(X;Z) that crosses the latent channel, per-dimension KL, label information.

All in nats, pure (randomness from ``seed``), chunked: the N x N matrix of log q(z_i|x_j) is never held whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from ibkit.checks import check_number, distribution_name
from ibkit.distributions import diagonal_normal
from ibkit.estimators._common import (
    DEFAULT_CHUNK,
    budget_bytes,
    has_posterior,
    has_prior,
    prepare,
    row_chunks,
    seeded_no_grad,
    too_large,
)
from ibkit.estimators.likelihood import distortion, rate
from ibkit.estimators.probe import Probe, probe
from ibkit.estimators.usage import code_covariance
from ibkit.interface import is_stochastic
from ibkit.theory import covariance_capacity

if TYPE_CHECKING:
    import pandas as pd

PAIR_BUDGET = 1 << 22  # entries of one [rows, N] block of log q(z_i|x_j): 32 MB in float64
CANCELLATION = 1e-3  # nats: the most rounding the expanded quadratic form may carry before the direct sum is used


class PosteriorColumns:
    """q(z|x_j) for all N points, computed once, and log q(z_i|x_j) for a block of rows i against every j.

    fast=True and a diagonal Gaussian q (``ibkit.distributions.diagonal_normal`` decides): it expands
    sum_k (z_ik - m_jk)^2 / s_jk^2 into matrix products, so a block costs O(r N d) in BLAS and is written into a
    reused buffer; float64 keeps the cancellation harmless even for probe noise of 1e-4. Where it would not (its
    rounding, 2^-52 (|z| + |m|)^2 / s^2, passes ``CANCELLATION`` nats: a probe of 1e-12 on codes near 1), the
    block sums the squared differences themselves, one dimension at a time. Otherwise it keeps column blocks of
    ``torch.distributions`` objects and calls the readable reference ``log_prob`` broadcast over them (the fast
    path is tested against it).
    """

    def __init__(self, model, x: Tensor, rows_per_block: int, fast: bool = True, chunk_size: int = DEFAULT_CHUNK):
        self.diagonal = fast and diagonal_normal(model.posterior(x[:1])) is not None
        if self.diagonal:
            parts = [diagonal_normal(model.posterior(x[c])) for c in row_chunks(len(x), chunk_size)]
            loc = torch.cat([loc for loc, _ in parts]).double()  # [N, d]
            prec = torch.cat([scale for _, scale in parts]).double().pow(-2)  # [N, d], 1 / s^2
            # log N(z; m, s^2) = -1/2 [z^2 . p - 2 z . m p + m^2 . p] + 1/2 sum log p - d/2 log 2 pi
            self.prec_t = prec.T.contiguous()  # [d, N]
            self.loc_t = loc.T.contiguous()  # [d, N]
            self.loc_prec_t = (loc * prec).T.contiguous()  # [d, N]
            self.mean_term = (loc.pow(2) * prec).sum(-1)  # [N], m^2 . p
            self.log_norm = 0.5 * prec.log().sum(-1) - 0.5 * loc.shape[1] * math.log(2 * math.pi)  # [N]
            self.buffer = torch.empty(rows_per_block, len(x), dtype=torch.float64, device=x.device)
        else:
            d = max(1, math.prod(model.posterior(x[:1]).event_shape))
            cols = max(1, PAIR_BUDGET // (rows_per_block * d))  # [rows, cols, d] temporaries in log_prob
            self.blocks = [model.posterior(x[c]) for c in row_chunks(len(x), cols)]

    def log_q(self, z: Tensor) -> Tensor:
        """log q(z_i|x_j) for z [r, d] and every j: [r, N] float64 (a view of a reused buffer on the fast path)."""
        if not self.diagonal:
            return torch.cat([q.log_prob(z.unsqueeze(1)).double() for q in self.blocks], dim=1)
        z = z.double()
        out = self.buffer[: len(z)]
        reach = z.abs().max() + self.loc_t.abs().max()
        if (reach**2 * self.prec_t.max()).item() * 2.0**-52 > CANCELLATION:
            out.zero_()
            for k in range(z.shape[1]):  # the squared differences themselves: no cancellation
                diff = z[:, k, None] - self.loc_t[k]
                out.addcmul_(diff * diff, self.prec_t[k].expand_as(diff))
        else:
            torch.mm(z.pow(2), self.prec_t, out=out)
            out.addmm_(z, self.loc_prec_t, alpha=-2)
            out.add_(self.mean_term).clamp_min_(0)  # the quadratic form is >= 0; rounding must not flip its sign
        return out.mul_(-0.5).add_(self.log_norm)


def _logsumexp_rows(block: Tensor, scratch: Tensor) -> Tensor:
    """log sum_j exp(block_ij) [r] for block [r, N], using ``scratch`` (same shape) instead of new temporaries."""
    top = block.amax(1, keepdim=True)
    top.masked_fill_(~torch.isfinite(top), 0.0)
    torch.sub(block, top, out=scratch).exp_()
    return scratch.sum(1).log_() + top[:, 0]


def mi_bounds(model, x, *, seed: int = 0, entropy: float | None = None, fast: bool = True,
              chunk_size: int = DEFAULT_CHUNK, memory_budget: int | None = None) -> dict:
    """Bounds on I(X;Z) over the N points of x, with z_i ~ q(z|x_i) (one draw each):

    infonce = mean_i [log q(z_i|x_i) - log mean_j q(z_i|x_j)]         (lower bound, <= log N; van den Oord
              et al. 2018, Poole et al. 2019 eq. 12; exactly I(index; Z) under the empirical distribution)
    loo     = mean_i [log q(z_i|x_i) - log mean_{j != i} q(z_i|x_j)]  (leave-one-out upper bound, Poole eq. 13)
    rate    = E_x KL(q(z|x) || p(z))                                  (upper bound: the VAE's price); NaN for a
              model without ``prior()``, with the reason in ``rate_note`` (that key is there only then)
    entropy_minus_distortion = h(X) - D                              (lower bound, Alemi et al. 2018; only
              when the data's ``entropy`` h(X) is given)
    log_n   = log N, the ceiling of infonce.
    capacity = 1/2 log det(I + Cov[Z] / sigma^2)                       (upper bound; only for a probe channel
              ``probe(model, sigma)``: the Gaussian channel's capacity under the code's measured covariance over
              these rows, ``ibkit.theory.covariance_capacity``; it holds for any X, where the leave-one-out bound
              of a deterministic code grows like 1 / sigma^2)

    Also ``infonce_se`` and ``loo_se``: standard errors of the means over i. The [N, N] matrix is built
    in blocks of rows: memory is O(N * rows), never O(N^2). The blocks shrink to fit ``memory_budget`` bytes
    (default ``MEMORY_BUDGET``); where even one row does not fit, it fails at once with the sizes.

    Args:
        model: a protocol model with ``posterior(x)``; ``prior()`` for the rate and ``log_likelihood`` when
            ``entropy`` is given.
        x: [N, D] data (a tensor or numpy array) in the model's support, N >= 2.
        seed: seeds the draws of z; the caller's global random state is left untouched.
        entropy: the data's differential entropy h(X) in nats, where known; adds ``entropy_minus_distortion``.
        fast: expand log q(z_i|x_j) into matrix products for a diagonal Gaussian q (False: the reference
            ``log_prob`` path).
        chunk_size: rows per posterior call when drawing z and tabulating q(z|x_j).
        memory_budget: bytes the blocks may take (None: ``MEMORY_BUDGET``, 1 GiB).

    Returns:
        a dict of the keys above (``infonce``, ``infonce_se``, ``loo``, ``loo_se``, ``rate``, ``log_n``, and
            ``rate_note``, ``capacity``, ``entropy_minus_distortion`` where they apply), in nats.

    Raises:
        ValueError: fewer than 2 rows, a model without ``posterior``, x that does not fit the model, or tables
            that cannot fit ``memory_budget``.
    """
    x = prepare(model, x, "mi_bounds", prior=False, likelihood=entropy is not None)
    n = len(x)
    if n < 2:
        raise ValueError(f"x has {n} row; mi_bounds needs at least 2 data points (it compares z_i across them)")
    if entropy is not None:
        check_number("entropy", entropy)
    rows_per_block = _rows_per_block(n, model.posterior(x[:1]).event_shape.numel(), budget_bytes(memory_budget))
    with seeded_no_grad(seed, x.device):
        nce, loo = _contrastive_terms(model, x, rows_per_block, fast=fast, chunk_size=chunk_size)
    out: dict[str, float | str] = {
        "infonce": nce.mean().item(),
        "infonce_se": (nce.std() / math.sqrt(n)).item(),
        "loo": loo.mean().item(),
        "loo_se": (loo.std() / math.sqrt(n)).item(),
        "rate": float(rate(model, x, seed=seed)) if has_prior(model) else math.nan,
        "log_n": math.log(n),
    }
    if not has_prior(model):
        out["rate_note"] = (f"{type(model).__name__} has no prior(): the rate E_x KL(q(z|x) || p(z)) needs p(z); "
                            "infonce and loo need only q(z|x)")
    if isinstance(model, Probe):
        out["capacity"] = covariance_capacity(code_covariance(model.model, x, seed=seed, chunk_size=chunk_size),
                                              model.sigma)
    if entropy is not None:
        out["entropy_minus_distortion"] = float(entropy) - float(distortion(model, x, seed=seed))
    return out


def tightest_upper(bounds: dict[str, tuple[float, float]]) -> tuple[float, float, str]:
    """The smallest valid upper bound on a mutual information among named estimates ``{name: (value, se)}``.

    A NaN value is absent. A value below 0 is no bound on a mutual information (which is >= 0): it is the Monte
    Carlo noise of an estimate whose mean is near 0, so it is left out and the note says so. Where nothing valid
    is left, the bound is +inf (the only certain one) and the note says why.

    Args:
        bounds: upper-bound estimates in nats, ``{name: (value, standard error)}``.

    Returns:
        the tuple (value, standard error, note); the note is empty when every estimate was valid, else it names the one
            used and the ones left out, e.g. "rate: the leave-one-out estimate -1.9e-05 is below 0 (Monte Carlo
            noise)".
    """
    present = {name: b for name, b in bounds.items() if not math.isnan(b[0])}
    dropped = [f"the {name} estimate {v:.3g} is below 0 (Monte Carlo noise)" for name, (v, _) in present.items()
               if v < 0]
    valid = {name: b for name, b in present.items() if b[0] >= 0}
    if not valid:
        why = "; ".join(dropped) or "no upper bound was measured"
        return math.inf, math.nan, f"no certified upper bound: {why}"
    name = min(valid, key=lambda k: valid[k][0])
    value, se = valid[name]
    return float(value), float(se), f"{name}: {'; '.join(dropped)}" if dropped else ""


def information_bracket(model, x, *, seed: int = 0, entropy: float | None = None, probe_sigma: float = 1e-4,
                        memory_budget: int | None = None) -> dict:
    """The results schema's bracket on I(X;Z) over the N rows of x, each end with its standard error:

    mi_lower    the larger of InfoNCE and, where the data's ``entropy`` h(X) is given, h(X) - D (``mi_bounds``).
    mi_upper    for a stochastic code the smallest valid one of the leave-one-out bound and, where the model has
                a prior, the rate (``tightest_upper``: a leave-one-out estimate below 0, its Monte Carlo noise, is
                no bound, and ``mi_upper_note`` says the rate stands instead); for a deterministic code (no
                posterior) +inf: a code of real numbers can carry any amount, so no upper bound exists
                (``mi_upper_note`` says so), and the lower bound is what it carries through a probe channel
                z + N(0, probe_sigma^2) (``probe``; at most log N).
    probe_upper for a deterministic code, the smallest of the probe channel's leave-one-out bound, its rate and
                its capacity under the code's measured covariance (``probe_upper_note`` names it): the bracket
                [mi_lower, probe_upper] is on I(X; Z + probe_sigma eps). NaN for a stochastic code.

    Also the estimators' own values (``infonce``, ``loo``, each with ``_se``; ``loo`` through the probe for a
    deterministic code), ``log_n`` and ``probe_sigma`` (0 for a stochastic code). Nats.

    Args:
        model: a protocol model with ``posterior(x)`` (stochastic) or ``encode(x)`` (deterministic).
        x: [N, D] data (a tensor or numpy array) in the model's support, N >= 2.
        seed: seeds the draws; the caller's global random state is left untouched.
        entropy: the data's differential entropy h(X) in nats, where known (then the model needs
            ``log_likelihood``).
        probe_sigma: the probe channel's noise std for a deterministic code; unused for a stochastic one.
        memory_budget: bytes the N x N blocks of ``mi_bounds`` may take (None: ``MEMORY_BUDGET``).

    Returns:
        a dict: ``mi_lower``, ``mi_upper``, ``probe_upper`` (each with ``_se``; the upper ones with ``_note``),
            ``infonce``, ``infonce_se``, ``loo``, ``loo_se``, ``log_n`` and ``probe_sigma``.
    """
    stochastic = is_stochastic(model)
    b = mi_bounds(model if stochastic else probe(model, probe_sigma), x, seed=seed, entropy=entropy,
                  memory_budget=memory_budget)
    out = dict(infonce=b["infonce"], infonce_se=b["infonce_se"], loo=b["loo"], loo_se=b["loo_se"],
               log_n=b["log_n"], probe_sigma=0.0 if stochastic else float(probe_sigma),
               mi_lower=b["infonce"], mi_lower_se=b["infonce_se"])
    if entropy is not None and b["entropy_minus_distortion"] > out["mi_lower"]:
        d = torch.as_tensor(distortion(model, x, seed=seed, per_example=True))
        out.update(mi_lower=b["entropy_minus_distortion"], mi_lower_se=float(d.std() / math.sqrt(len(d))))
    if not stochastic:
        upper = tightest_upper(_probe_bounds(b))
        return {**out, "mi_upper": math.inf, "mi_upper_se": math.nan,
                "mi_upper_note": "unbounded: a deterministic code can carry any amount of information",
                "probe_upper": upper[0], "probe_upper_se": upper[1], "probe_upper_note": upper[2]}
    bounds = {"leave-one-out": (b["loo"], b["loo_se"])}
    if has_prior(model):
        r = torch.as_tensor(rate(model, x, seed=seed, per_example=True))
        bounds["rate"] = (float(r.mean()), float(r.std() / math.sqrt(len(r))))
    value, se, note = tightest_upper(bounds)
    return {**out, "mi_upper": value, "mi_upper_se": se, "mi_upper_note": note,
            "probe_upper": math.nan, "probe_upper_se": math.nan, "probe_upper_note": ""}


def _probe_bounds(b: dict) -> dict[str, tuple[float, float]]:
    """The upper bounds ``mi_bounds`` measured through a probe channel, named for ``tightest_upper``: the
    leave-one-out bound, the rate against the probe's prior and the channel's capacity (exact: no error)."""
    return {"leave-one-out": (b["loo"], b["loo_se"]), "rate": (b["rate"], math.nan),
            "capacity": (b["capacity"], 0.0)}


def _rows_per_block(n: int, d: int, budget: int) -> int:
    """Rows of the [N, N] matrix of log q(z_i|x_j) per block, so that the posterior's [N, d] tables and a block
    with its scratch fit ``budget`` bytes (float64)."""
    table, per_row = 8 * n * (2 * d + 3), 16 * n  # the [N, d] posterior tables; a row of the block and scratch
    if table + per_row > budget:
        raise too_large(f"mi_bounds on N = {n} points", table + per_row, budget,
                        what="the posterior's N x d tables and one row of the N x N matrix of log q(z_i|x_j)",
                        remedy="use fewer points or a larger memory_budget")
    return max(1, min(PAIR_BUDGET // n, (budget - table) // per_row))


def _contrastive_terms(model, x: Tensor, rows_per_block: int, *, fast: bool, chunk_size: int) -> tuple[Tensor, Tensor]:
    """The per-point InfoNCE and leave-one-out terms [N], float64, one draw z_i ~ q(z|x_i) each, block by block."""
    n = len(x)
    z = torch.cat([model.posterior(x[s]).sample() for s in row_chunks(n, chunk_size)])  # [N, d]
    columns = PosteriorColumns(model, x, rows_per_block, fast=fast, chunk_size=chunk_size)
    scratch = torch.empty(rows_per_block, n, dtype=torch.float64, device=x.device)
    nce_terms, loo_terms = [], []
    for rows in row_chunks(n, rows_per_block):
        block = columns.log_q(z[rows])  # [r, N]
        r = torch.arange(block.shape[0], device=block.device)
        own = torch.arange(rows.start, rows.stop, device=block.device)
        diag = block[r, own]
        nce_terms.append(diag - (_logsumexp_rows(block, scratch[: len(r)]) - math.log(n)))
        block[r, own] = -math.inf  # leave-one-out: drop j = i, with its own maximum for stability
        loo_terms.append(diag - (_logsumexp_rows(block, scratch[: len(r)]) - math.log(n - 1)))
    return torch.cat(nce_terms), torch.cat(loo_terms)


def probe_curve(model, x, sigmas, *, seed: int = 0, entropy: float | None = None) -> pd.DataFrame:
    """``mi_bounds`` through a probe channel of each std in ``sigmas`` (see ``probe``): one row per sigma.

    For a deterministic code the information grows as sigma shrinks, up to log N; for a stochastic model the
    probe noise adds to its own channel noise, so the curve flattens at the model's own information.

    Columns: ``sigma``, mi_bounds' keys (``infonce``, ``loo``, ``rate``, ``capacity``, ``log_n``, ...) and the
    bracket the curve should be read by: ``upper`` (with ``upper_se``, ``upper_note``), the smallest valid one of
    the leave-one-out bound, the rate and the capacity (``tightest_upper``), so that no probe bound is
    astronomically loose where the capacity holds.

    Args:
        model: a protocol model with ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support, N >= 2.
        sigmas: a probe noise std or a sequence of them, each > 0.
        seed: seeds the draws; the caller's global random state is left untouched.
        entropy: the data's differential entropy h(X) in nats, where known; passed to ``mi_bounds``.

    Returns:
        a DataFrame with one row per sigma and the columns above.

    Raises:
        ValueError: an empty ``sigmas`` or a sigma <= 0.
    """
    import pandas as pd

    sigmas = [sigmas] if isinstance(sigmas, (int, float)) else list(sigmas)
    if not sigmas:
        raise ValueError("sigmas is empty; give at least one probe noise std, e.g. sigmas=[1, 0.1, 0.01]")
    for s in sigmas:
        check_number("sigma", s, low=0, low_open=True)
    rows = []
    for s in sigmas:
        b = mi_bounds(probe(model, s), x, seed=seed, entropy=entropy)
        upper, upper_se, note = tightest_upper(_probe_bounds(b))
        rows.append({"sigma": float(s), **b, "upper": upper, "upper_se": upper_se, "upper_note": note})
    return pd.DataFrame(rows)


def kl_per_dim(model, x, chunk_size: int = DEFAULT_CHUNK, *, per_example: bool = False, n_samples: int = 16,
               seed: int = 0) -> Tensor:
    """E_x KL(q(z_k|x) || p(z_k)) for each latent dimension k: [d], nats; the rate is their sum. Closed form for a
    diagonal Gaussian posterior and prior (``Independent(Normal, 1)``); Monte Carlo, ``n_samples`` draws per row,
    for a posterior that splits its KL per unit itself (``unit_kl``: a hierarchical model's conditional KLs, a
    codec's unit boxes).

    Args:
        model: a protocol model with ``posterior(x)`` and ``prior()``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        chunk_size: at most this many (sample, row) pairs per posterior call (rows, for the closed form).
        per_example: return each row's KL per dimension [N, d] instead of the mean over the rows.
        n_samples: draws per row where the KL is Monte Carlo.
        seed: seeds those draws; the caller's global random state is left untouched.

    Returns:
        [d] the mean KL of each dimension in nats (or [N, d] with ``per_example``), on the CPU.

    Raises:
        ValueError: a posterior that is neither a diagonal Gaussian (with a diagonal Gaussian prior) nor has
            ``unit_kl``.
    """
    x = prepare(model, x, "kl_per_dim", likelihood=False)
    check_number("n_samples", n_samples, low=1, integer=True)
    prior = model.prior()
    rows = []
    with seeded_no_grad(seed, x.device):
        for s in row_chunks(len(x), chunk_size if diagonal_normal(prior) else max(1, chunk_size // n_samples)):
            q = model.posterior(x[s])
            q_params, p_params = diagonal_normal(q), diagonal_normal(prior)
            if q_params is not None and p_params is not None:
                rows.append(kl_divergence(Normal(*q_params), Normal(*p_params)))  # [n, d]
            elif callable(getattr(q, "unit_kl", None)):
                rows.append(q.unit_kl(q.rsample((n_samples,))).mean(0))
            else:
                raise ValueError(
                    f"kl_per_dim needs a diagonal Gaussian posterior and prior (Independent(Normal(loc, scale), 1)) "
                    f"or a posterior with unit_kl; {type(model).__name__} has q = {distribution_name(q)}, "
                    f"p = {distribution_name(prior)}"
                )
    per_row = torch.cat(rows).cpu()
    return per_row if per_example else per_row.mean(0)


def per_layer(model, x, seed: int = 0, *, n_samples: int = 16, mixture: int = 32, threshold: float = 0.01,
              kl_threshold: float = 0.1, bootstrap: int = 200, memory_budget: int | None = None) -> pd.DataFrame:
    """Where the information sits in a hierarchical model (``kind="hvae"``): one row per latent layer l = 1 (nearest
    the data) .. L, over the N rows of x, each number with its standard error (``NAME_se``: over the rows of x, or
    by ``bootstrap`` resamples of them for the counts):

    rate          E_x E_q [log q(z_l | .) - log p(z_l | z_{l+1})], the layer's conditional KL (closed form given
                  the drawn parents where the model has it, ``HierarchicalPosterior.unit_kl``; ``n_samples`` draws
                  per row). The layers' rates sum to ``rate(model, x)``.
    mi_upper      sum_{k >= l} rate_k = E_x KL(q(z_{>=l} | .) || p(z_{>=l})), an upper bound on I(X; z_{>=l}) and so
                  on I(X; z_l) (top-down it is E_x KL(q(z_{>=l}|x) || p(z_{>=l})); bottom-up it bounds
                  I(z_{l-1}; z_{>=l}) >= I(X; z_{>=l}) by data processing).
    mi_lower      InfoNCE on I(X; z_l): mean_i [log q(z_i|x_i) - log mean_j q(z_i|x_j)], z_i ~ q(z_l|x_i), the
                  marginal q(z_l|x_j) a mixture over ``mixture`` ancestral draws of z_l's parents (exact for the
                  layer drawn first: z_1 bottom-up, z_L top-down). At most log N.
    active_units  units u of the layer with Var_x E_q[z_u|x] > ``threshold`` (Burda et al. 2016).
    active_units_kl  units with E_x KL_u > ``kl_threshold`` nats (NVAE's criterion, Vahdat & Kautz 2020).

    Also ``latent_dim`` (d_l). Nats; randomness from ``seed``.

    Args:
        model: a hierarchical model (``latent_dims`` and a posterior with ``unit_kl``, as ``kind="hvae"``).
        x: [N, D] data (a tensor or numpy array) in the model's support, N >= 2.
        seed: seeds the draws and the bootstrap resamples; the caller's global random state is left untouched.
        n_samples: draws per row for the conditional KLs.
        mixture: ancestral draws of each layer's parents in the marginal q(z_l|x_j).
        threshold: the variance above which a unit counts in ``active_units``.
        kl_threshold: the mean KL (nats) above which a unit counts in ``active_units_kl``.
        bootstrap: resamples of the rows for the standard errors of the counts.
        memory_budget: bytes one block of the InfoNCE matrix may take (None: ``MEMORY_BUDGET``).

    Returns:
        a DataFrame, one row per layer: ``layer``, ``latent_dim`` and the columns above, each with ``_se``.

    Raises:
        ValueError: a model with one latent layer, or fewer than 2 rows.
    """
    import pandas as pd

    x = prepare(model, x, "per_layer", likelihood=False)
    dims = tuple(getattr(model, "latent_dims", ()) or ())
    if not dims or not callable(getattr(model.posterior(x[:1]), "unit_kl", None)):
        raise ValueError(f"per_layer needs a hierarchical model (kind='hvae': latent_dims and a posterior with "
                         f"unit_kl); {type(model).__name__} has one latent layer: use rate, mi_bounds and "
                         "active_units")
    n = len(x)
    if n < 2:
        raise ValueError(f"x has {n} row; per_layer needs at least 2 data points (InfoNCE compares them)")
    for name, value in (("n_samples", n_samples), ("mixture", mixture), ("bootstrap", bootstrap)):
        check_number(name, value, low=1, integer=True)
    budget = budget_bytes(memory_budget)
    with seeded_no_grad(seed, x.device):
        q = model.posterior(x)
        units = q.unit_kl(q.rsample((n_samples,))).mean(0).double()  # [N, d]
        means = q.layer_means(seed=seed).double()  # [N, d]
        nce = [_layer_infonce(q, model, k, mixture=mixture, budget=budget) for k in range(len(dims))]
    per_row = torch.stack([t.sum(-1) for t in units.split(dims, -1)], -1)  # [N, L]
    above = per_row.flip(-1).cumsum(-1).flip(-1)  # [N, L]: sum over k >= l
    gen = torch.Generator().manual_seed(seed)
    resamples = torch.randint(n, (bootstrap, n), generator=gen)

    def counted(values: Tensor, active) -> tuple[Tensor, Tensor]:  # [N, d] -> per layer: count, bootstrap sd
        whole = torch.stack([t.sum() for t in active(values.cpu()).split(dims, -1)])
        boot = active(values.cpu()[resamples])  # [B, d]: each resample of the rows
        return whole, torch.stack([t.sum(-1) for t in boot.split(dims, -1)], -1).double().std(0)

    var, var_se = counted(means, lambda v: v.var(-2, unbiased=False) > threshold)
    kl_units, kl_se = counted(units, lambda v: v.mean(-2) > kl_threshold)
    se = lambda t: (t.std(0) / math.sqrt(n)).tolist()  # noqa: E731
    return pd.DataFrame(dict(
        layer=list(range(1, len(dims) + 1)), latent_dim=list(dims),
        rate=per_row.mean(0).tolist(), rate_se=se(per_row),
        active_units=var.tolist(), active_units_se=var_se.tolist(),
        active_units_kl=kl_units.tolist(), active_units_kl_se=kl_se.tolist(),
        mi_lower=[t.mean().item() for t in nce], mi_lower_se=[(t.std() / math.sqrt(n)).item() for t in nce],
        mi_upper=above.mean(0).tolist(), mi_upper_se=se(above)))


def _layer_infonce(q, model, k: int, *, mixture: int, budget: int) -> Tensor:
    """InfoNCE terms [N] on I(X; z_l) (see ``per_layer``): z_i from one ancestral draw per row, log q(z_i|x_j) from
    the mixture over ``mixture`` draws of the layer's parents for each x_j, in blocks of rows i within ``budget``.
    A Gaussian layer's densities are matrix products; another family's (a codec's unit boxes) its own log_prob."""
    draws = model.layers(q.rsample((mixture,)))  # [M, N, d_k] per layer k
    conditional = q.layer(k, draws)  # [M, N, d_l] (or [N, d_l]: a layer with no random parents)
    z = draws[k][0].double()  # [N, d_l]: z_i ~ q(z_l | x_i)
    if isinstance(conditional, Normal):
        log_q, m, n = _gaussian_mixture_log_q(conditional, z.shape[-1])
    else:
        log_q, m, n = _mixture_log_q(conditional)
    rows = max(1, budget // (8 * 2 * m * n * (1 if isinstance(conditional, Normal) else z.shape[-1])))
    terms = []
    for s in row_chunks(n, rows):
        block = torch.logsumexp(log_q(z[s]), 1) - math.log(m)  # [r, N]: log q(z_i | x_j)
        own = block[torch.arange(block.shape[0]), torch.arange(s.start, s.start + block.shape[0])]
        terms.append(own - (torch.logsumexp(block, 1) - math.log(n)))
    return torch.cat(terms)


def _gaussian_mixture_log_q(conditional: Normal, d: int):
    """For Gaussian components loc, scale [M, N, d]: the function from z [r, d] to log N(z_i; mu_mj, s_mj) [r, M, N],
    as matrix products (log N summed over units = -1/2 (z^2 . a - 2 z . mu a + mu^2 . a) + c with a = 1 / s^2; float64
    keeps the cancellation harmless), and M, N."""
    loc, scale = conditional.loc.double(), conditional.scale.double()
    if loc.dim() == 2:
        loc, scale = loc.unsqueeze(0), scale.unsqueeze(0)
    m, n, _ = loc.shape
    precision = scale.pow(-2).reshape(m * n, d)
    weighted = loc.reshape(m * n, d) * precision
    const = -0.5 * (loc.reshape(m * n, d) * weighted).sum(-1) - scale.log().reshape(m * n, d).sum(-1) \
        - 0.5 * d * math.log(2 * math.pi)
    return (lambda zs: (-0.5 * zs.pow(2) @ precision.T + zs @ weighted.T + const).view(-1, m, n)), m, n


def _mixture_log_q(conditional):
    """For components of any elementwise family, batch [M, N, d] (or [N, d]): the function from z [r, d] to their
    log densities [r, M, N] summed over the units, and M, N."""
    lead = conditional.batch_shape[:-1]
    m, n = (1, lead[0]) if len(lead) == 1 else (lead[0], lead[1])
    return (lambda zs: conditional.log_prob(zs.to(conditional.mean.dtype)[:, None, None, :]).sum(-1)
            .double().view(-1, m, n)), m, n


def label_information(model, x, y, *, seed: int = 0, test_fraction: float = 0.3, permutations: int = 10) -> dict:
    """How much of the class label y the code that crosses the channel keeps: z ~ q(z|x), one draw per row
    (the code encode(x) of a deterministic model), [N, d].

    Measured on the drawn code, not on the posterior means: Y - X - Z is a Markov chain, so I(z_k; Y) <= I(Z; Y)
    <= I(X; Z) <= R, and a collapsed code (R ~ 0) keeps no label information however its means move (a means-based
    estimate, rescaled, reads that movement as information the channel does not carry).

    Args:
        model: a protocol model with ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        y: [N] class labels (a tensor or array).
        seed: seeds the draw of the code, the estimators, the shuffles and the split.
        test_fraction: the share of rows held out to score the probe, in (0, 1).
        permutations: label shuffles for ``mi_noise``.

    Returns:
        a dict of ``mi_per_dim``: I(z_k; y) for each dimension k [d], nats (scikit-learn's
            ``mutual_info_classif``, the k-nearest-neighbour estimator of Ross 2014); ``mi_noise``: the estimator's
            noise floor, the largest per-dimension value it gives with the labels shuffled (``permutations`` times),
            where the true value is 0 (a value of ``mi_per_dim`` below it is not told apart from 0); ``accuracy``:
            the test accuracy of a logistic-regression probe trained on the drawn codes (stratified split);
            ``chance``: the accuracy of always guessing the most common class.

    Raises:
        ValueError: y without one label per row of x, or ``test_fraction``, ``permutations`` out of range.
    """
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_number("test_fraction", test_fraction, low=0, low_open=True, high=1)
    check_number("permutations", permutations, low=1, integer=True)
    codes = channel_codes(model, x, seed=seed).cpu().numpy().astype(np.float64)
    y = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
    if y.ndim != 1 or len(y) != len(codes):
        raise ValueError(f"y must hold one label per row of x: expected shape [{len(codes)}], got {list(y.shape)}")
    mi = mutual_info_classif(codes, y, random_state=seed)
    rng = np.random.default_rng(seed)
    noise = max(float(mutual_info_classif(codes, rng.permutation(y), random_state=seed).max())
                for _ in range(permutations))
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(codes[train], y[train])
    _, counts = np.unique(y[test], return_counts=True)
    return {
        "mi_per_dim": mi,
        "mi_noise": noise,
        "accuracy": float(clf.score(codes[test], y[test])),
        "chance": float(counts.max() / counts.sum()),
    }


def channel_codes(model, x, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """The code that crosses the latent channel, one draw z_i ~ q(z|x_i) per row [N, d]; for a deterministic
    model (no posterior), its code encode(x).

    Args:
        model: a protocol model with ``posterior(x)`` or ``encode(x)``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: rows per posterior (or encode) call.

    Returns:
        [N, d] the codes, on the model's device.
    """
    x = prepare(model, x, "channel_codes", posterior=False, prior=False, likelihood=False)
    with seeded_no_grad(seed, x.device):
        draw = (lambda xs: model.posterior(xs).sample()) if has_posterior(model) else model.encode
        return torch.cat([draw(x[s]) for s in row_chunks(len(x), chunk_size)])
