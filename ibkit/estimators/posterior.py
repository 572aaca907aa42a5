"""How the approximate posterior q(z|x) compares with the true posterior p(z|x) of the model."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from ibkit.checks import check_number, check_posterior
from ibkit.distributions import covariance, kl_or_monte_carlo, rsample_from
from ibkit.estimators._common import (
    DEFAULT_CHUNK,
    decoder_progress,
    plan_chunks,
    prepare,
    row_chunks,
    seeded_no_grad,
)
from ibkit.estimators.likelihood import importance_weighted_rows
from ibkit.progress import Progress
from ibkit.seeding import seeded


def _mean_abs_offdiag_correlation(cov: Tensor) -> Tensor:
    """Mean |corr_ij| over i != j for covariances [n, d, d]: [n] (0 for d = 1)."""
    d = cov.shape[-1]
    if d < 2:
        return torch.zeros(cov.shape[:-2], dtype=cov.dtype, device=cov.device)
    std = cov.diagonal(dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()
    corr = cov / (std.unsqueeze(-1) * std.unsqueeze(-2))
    off = ~torch.eye(d, dtype=torch.bool, device=cov.device)
    return corr[..., off].abs().mean(-1)


JITTER = 1e-6  # added to a fitted covariance, times its mean variance, before its Cholesky factor is taken
PLAIN_Q = -1  # the ``stage`` of an estimate that came from q(z|x) itself as the proposal
ENOUGH_ESS = 0.5  # adaptation stops once every row of a chunk has an ESS of this fraction of k
ELBO_DRAWS = 100  # draws of z per row behind amortization_gap's two ELBOs
CRN_OFFSET = 7919  # the common random numbers' generator is seeded with seed + this


def posterior_correlation(model, x, k: int = 5000, *, stages: int = 4, widen: float = 1.5, refit_widen: float = 1.1,
                          min_ess: float = 100, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
                          allow_long: bool = False) -> dict:
    """Mean absolute off-diagonal correlation of the latents given x, under q(z|x) and under the true posterior
    p(z|x), with the effective sample size that says which rows' true values can be cited.

    x [N, D]. Latents independent a priori become dependent given x (Berkson's paradox); q shows what the encoder
    holds, p(z|x) what the model implies.

    q:    Corr_q[z] of q(z|x), exact for the Gaussian families (``ibkit.distributions.covariance``; for others,
          such as the IAF, the sample covariance of q's draws); |off-diagonal| averaged within each row, then over
          all N rows.
    true: Corr[z|x] under p(z|x) ∝ p(x|z) p(z), by self-normalised importance sampling: for k draws z_s ~ r from a
          proposal r,

              w_s ∝ p(x, z_s) / r(z_s) = exp(log p(x|z_s) + log p(z_s) - log r(z_s)),   sum_s w_s = 1,
              m = sum_s w_s z_s,   C = sum_s w_s (z_s - m)(z_s - m)^T

          (the moments sampling-importance-resampling would estimate, without the resampling noise); C's
          |off-diagonal| correlation averaged within the row, then over the reliable rows only.
    ess:  the effective sample size (sum_s w_s)^2 / sum_s w_s^2 of a row's weights, out of k: the moments carry
          about as much information as that many independent draws from p(z|x) would.

    The proposal adapts to each row (adaptive importance sampling: population Monte Carlo with moment matching,
    Cappé et al. 2004), with k fresh draws at every stage:

        plain:    r = q(z|x) itself (the estimator without adaptation; its ESS is ``ess_from_q``).
        stage 0:  r_0 = N(E_q[z], widen^2 Cov_q[z]), q's moments (exact for a Gaussian q; for an IAF ``q.mean``
                  and the sample covariance of the plain stage's draws), widened.
        stage t:  t = 1..``stages``: r_t = N(m, refit_widen^2 (S + JITTER tr(S)/d I)), fitted to the stages so
                  far, the plain one included: (m, C) their weighted means and second moments, each stage's
                  weighted by its ESS, pooled (total ESS e), and S = (e C + d S_{t-1}) / (e + d), shrunk towards
                  the previous fit S_{t-1}, so that a row whose ESS is still below d (a singular C) moves by what
                  its draws can tell. A row keeps its previous proposal where the fit is not finite or not
                  positive-definite.

    The stages stop (or never start) once every row of a chunk has an ESS >= ``ENOUGH_ESS`` k. Each row's estimate
    comes from the stage whose weights have the largest ESS: an adaptive stage in practice, or the plain one when
    q(z|x) is already p(z|x) (every weight equal: ESS = k). Weights and moments are float64. The refits are widened
    less than stage 0 because widening costs ESS even for a perfect fit, by the factor (s^2 / sqrt(2 s^2 - 1))^d
    for s = widen: 4.4 at s = 1.5 and d = 8, 19 at d = 16; 1.13 and 1.28 at s = 1.1.

    Flagged: a row is ``reliable`` when its ESS >= ``min_ess``; ``true`` averages only those rows (NaN when there
    are none), so it never rests on rows whose weights a handful of draws dominate. The ESS is itself estimated from
    the draws: it cannot see posterior mass that no proposal reaches (a mode far from q's).

    Cost: up to (stages + 2) k decoder passes per row, chunked so that one pass holds at most ``chunk_size``
    (sample, row) pairs: whole rows while k fits, else one row at a time with its k draws in chunks, the moments
    accumulated with a running log-sum-exp (memory does not grow with k). Their progress shows (a bar on a terminal,
    a line on the "ibkit" log every 30 s), and where up to (stages + 2) k N passes would take more than an hour at
    the rate the first chunks measure, the call fails there with a ValueError naming the estimate, unless
    ``allow_long=True``.

    Args:
        model: a protocol model (``ibkit.interface``): ``posterior``, ``prior``, ``log_likelihood``.
        x: [N, D] data (a tensor or numpy array) in the model's support.
        k: draws per row at each stage, >= 2.
        stages: adaptive stages after stage 0 (0: stage 0 alone).
        widen: s, the factor stage 0 widens q's standard deviations by, >= 1.
        refit_widen: the factor each refitted proposal is widened by, >= 1.
        min_ess: the ESS a row needs to count as ``reliable``.
        seed: seeds the draws; the caller's global random state is left untouched.
        chunk_size: at most this many (sample, row) pairs per decoder pass.
        allow_long: run work estimated to take more than an hour instead of refusing it.

    Returns:
        a dict of "q", "true", "ess" (the mean over rows of the chosen stage's ESS), "ess_median", "ess_q10",
            "ess_q90", "ess_min", "ess_from_q" (the mean ESS of q itself as the proposal, what the estimator
            without adaptation gets), "reliable_rows", "rows" (N), "min_ess", "k", "stages", and "per_row": a
            DataFrame with one row per data row: row, ess, q_correlation, true_correlation, reliable (bool),
            ess_from_q and stage (the stage its estimate came from: -1 plain q, 0.. as above).

    Raises:
        ValueError: a model without the protocol's methods, x that does not fit the model, an argument out of
            range, or work estimated at more than an hour without ``allow_long``.
    """
    import pandas as pd

    x = prepare(model, x, "posterior_correlation")
    check_number("k", k, low=2, integer=True)
    check_number("stages", stages, low=0, integer=True)
    check_number("widen", widen, low=1)
    check_number("refit_widen", refit_widen, low=1)
    check_number("min_ess", min_ess, low=1)
    samples, rows = plan_chunks(k, chunk_size)
    parts: list[dict[str, Tensor]] = []
    work = f"posterior_correlation with k={k} and stages={stages} on {len(x)} rows"
    with seeded_no_grad(seed, x.device), decoder_progress("posterior_correlation", (stages + 2) * k * len(x),
                                                          x.device, work=work, knobs="k (or stages)",
                                                          allow_long=allow_long, at_most=True) as progress:
        prior = model.prior()
        for s in row_chunks(len(x), rows):
            parts.append(_adaptive_rows(model, prior, x[s], k=k, samples=samples, stages=stages, widen=widen,
                                        refit_widen=refit_widen, progress=progress))
    cols = {key: torch.cat([p[key] for p in parts]).cpu() for key in parts[0]}
    ess = cols["ess"].double().numpy()
    per_row = pd.DataFrame({
        "row": np.arange(len(x)),
        "ess": ess,
        "q_correlation": cols["q_correlation"].double().numpy(),
        "true_correlation": cols["true_correlation"].double().numpy(),
        "reliable": ess >= min_ess,
        "ess_from_q": cols["ess_from_q"].double().numpy(),
        "stage": cols["stage"].numpy(),
    })
    reliable = per_row["reliable"].to_numpy()
    return {
        "q": float(per_row["q_correlation"].mean()),
        "true": float(per_row["true_correlation"][reliable].mean()) if reliable.any() else math.nan,
        "ess": float(ess.mean()),
        "ess_median": float(np.median(ess)),
        "ess_q10": float(np.quantile(ess, 0.1)),
        "ess_q90": float(np.quantile(ess, 0.9)),
        "ess_min": float(ess.min()),
        "ess_from_q": float(per_row["ess_from_q"].mean()),
        "reliable_rows": int(reliable.sum()),
        "rows": len(x),
        "min_ess": min_ess,
        "k": k,
        "stages": stages,
        "per_row": per_row,
    }


class _WeightedMoments:
    """Self-normalised importance-weighted moments of draws z [S, n, d] with log-weights [S, n], accumulated over
    chunks of draws with a running log-sum-exp (as ``importance_weighted_rows`` combines its chunks), in float64.

    The draws are centred at ``center`` [n, d] (the proposal's mean) before their moments are taken, so that
    E[z z^T] - m m^T does not cancel digits for latents far from 0.
    """

    def __init__(self, center: Tensor):
        n, d = center.shape
        self.center = center.double()
        self.log_sum = torch.full((n,), -math.inf, dtype=torch.float64, device=center.device)  # log sum_s w_s
        self.log_sum_sq = self.log_sum.clone()  # log sum_s w_s^2
        self.m1 = torch.zeros(n, d, dtype=torch.float64, device=center.device)  # sum_s w_s (z_s - c) / sum_s w_s
        self.m2 = torch.zeros(n, d, d, dtype=torch.float64, device=center.device)  # and of (z_s - c)(z_s - c)^T

    def add(self, log_w: Tensor, z: Tensor) -> None:
        log_w = torch.nan_to_num(log_w.double(), nan=-math.inf)  # [S, n]
        total = torch.logaddexp(self.log_sum, torch.logsumexp(log_w, dim=0))
        shift = torch.where(total.isfinite(), total, torch.zeros_like(total))  # no weight yet: leave all at 0
        keep = torch.exp(self.log_sum - shift)  # [n]: the old sums' share of the new total
        w = torch.exp(log_w - shift)  # [S, n]
        zc = z.double() - self.center
        self.m1 = keep.unsqueeze(-1) * self.m1 + torch.einsum("sn,sni->ni", w, zc)
        self.m2 = keep[:, None, None] * self.m2 + torch.einsum("sn,sni,snj->nij", w, zc, zc)
        self.log_sum = total
        self.log_sum_sq = torch.logaddexp(self.log_sum_sq, torch.logsumexp(2 * log_w, dim=0))

    def result(self) -> tuple[Tensor, Tensor, Tensor]:
        """(ESS [n], weighted mean [n, d], weighted covariance [n, d, d]); ESS 0 for a row without any weight."""
        ess = torch.exp(2 * self.log_sum - self.log_sum_sq)
        ess = torch.where(self.log_sum.isfinite(), ess, torch.zeros_like(ess))
        cov = self.m2 - self.m1.unsqueeze(-1) * self.m1.unsqueeze(-2)
        return ess, self.center + self.m1, 0.5 * (cov + cov.mT)


def _importance_pass(model, prior: Distribution, x: Tensor, *, k: int, samples: int, draw, log_proposal,
                     center: Tensor, progress: Progress) -> _WeightedMoments:
    """k draws z ~ r (``draw(S) -> [S, n, d]``, ``samples`` at a time) weighted by p(x, z) / r(z)
    (``log_proposal(z) -> log r(z)`` [S, n], float64); their accumulated moments (each chunk's pairs counted on
    ``progress``)."""
    acc = _WeightedMoments(center)
    for j in range(0, k, samples):
        z = draw(min(samples, k - j))  # [S, n, d], the model's dtype
        log_w = model.log_likelihood(x, z).double() + prior.log_prob(z).double() - log_proposal(z)
        acc.add(log_w, z)
        progress.update(log_w.numel())
    return acc


def _gaussian_proposal(mean: Tensor, cov: Tensor, widen: float, previous: tuple[Tensor, Tensor, Tensor]
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """(loc [n, d], fitted covariance [n, d, d], scale_tril [n, d, d]) of N(mean, widen^2 (cov + JITTER tr(cov)/d I)),
    float64; rows whose moments are not finite or whose matrix is not positive-definite keep ``previous``."""
    d = cov.shape[-1]
    eye = torch.eye(d, dtype=torch.float64, device=cov.device)
    finite = mean.isfinite().all(-1) & cov.isfinite().all(-1).all(-1)
    cov = torch.where(finite[:, None, None], cov, eye)
    scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)  # [n]
    tril, info = torch.linalg.cholesky_ex(widen**2 * (cov + JITTER * scale[:, None, None] * eye))
    ok = finite & (info == 0) & tril.isfinite().all(-1).all(-1)
    return (torch.where(ok[:, None], mean, previous[0]), torch.where(ok[:, None, None], cov, previous[1]),
            torch.where(ok[:, None, None], tril, previous[2]))


def _adaptive_rows(model, prior: Distribution, x: Tensor, *, k: int, samples: int, stages: int, widen: float,
                   refit_widen: float, progress: Progress) -> dict[str, Tensor]:
    """``posterior_correlation``'s stages for the rows x [n, D]; per row [n]: ess, q_correlation,
    true_correlation, ess_from_q and stage."""
    q = model.posterior(x)
    first: list[Tensor] = []  # q's first chunk of draws, for Cov_q of a family without a closed form

    def draw_q(size: int) -> Tensor:
        z = q.sample((size,))
        if not first:
            first.append(z)
        return z

    mean_q = q.mean.double()  # exact for the Gaussian families; an IAF's is Monte Carlo (256 draws)
    plain = _importance_pass(model, prior, x, k=k, samples=samples, draw=draw_q,
                             log_proposal=lambda z: q.log_prob(z).double(), center=mean_q, progress=progress)
    cov_q, dtype = covariance(q, first[0]), first[0].dtype
    first.clear()
    best_ess, _, best_cov = plain.result()
    ess_from_q = best_ess.clone()
    stage = torch.full_like(best_ess, PLAIN_Q, dtype=torch.long)
    n, d = mean_q.shape
    # a diagonal fallback for stage 0, should q's covariance not be positive-definite
    variances = cov_q.diagonal(dim1=-2, dim2=-1)
    variances = torch.where(variances > 0, variances, torch.ones_like(variances)).nan_to_num(1.0)
    fallback = (mean_q.nan_to_num(0.0), torch.diag_embed(variances), torch.diag_embed(widen * variances.sqrt()))
    proposal = _gaussian_proposal(mean_q, cov_q, widen, fallback)
    pooled = _PooledMoments(n, d, x.device)
    pooled.add(*plain.result())
    for t in range(stages + 1):
        if (best_ess >= ENOUGH_ESS * k).all():
            break
        if t > 0:
            weight, mean, cov = pooled.result()
            shrink = (weight / (weight + d))[:, None, None]  # ESS effective draws against d for the old fit
            proposal = _gaussian_proposal(mean, shrink * cov + (1 - shrink) * proposal[1], refit_widen, proposal)
        draw, log_density = _gaussian_sampler(proposal[0], proposal[2], dtype)
        ess, mean, cov = _importance_pass(model, prior, x, k=k, samples=samples, draw=draw, log_proposal=log_density,
                                          center=proposal[0], progress=progress).result()
        pooled.add(ess, mean, cov)
        better = ess > best_ess
        best_ess = torch.where(better, ess, best_ess)
        best_cov = torch.where(better[:, None, None], cov, best_cov)
        stage = torch.where(better, t, stage)
    return {"ess": best_ess, "q_correlation": _mean_abs_offdiag_correlation(cov_q),
            "true_correlation": _mean_abs_offdiag_correlation(best_cov), "ess_from_q": ess_from_q, "stage": stage}


class _PooledMoments:
    """The weighted moments of the stages so far (the plain one included), each stage's (mean, covariance) weighted
    by its ESS: what the next proposal is fitted to (many stages' draws, so a row whose every stage has a small ESS
    still adapts). Only the proposals use it; the estimates come from one stage's weights."""

    def __init__(self, n: int, d: int, device: torch.device):
        self.weight = torch.zeros(n, dtype=torch.float64, device=device)
        self.first = torch.zeros(n, d, dtype=torch.float64, device=device)
        self.second = torch.zeros(n, d, d, dtype=torch.float64, device=device)

    def add(self, ess: Tensor, mean: Tensor, cov: Tensor) -> None:
        ok = (ess > 0) & mean.isfinite().all(-1) & cov.isfinite().all(-1).all(-1)
        w = torch.where(ok, ess, torch.zeros_like(ess))
        self.weight = self.weight + w
        self.first = self.first + w[:, None] * torch.where(ok[:, None], mean, 0.0)
        outer = torch.where(ok[:, None, None], cov + mean.unsqueeze(-1) * mean.unsqueeze(-2), 0.0)
        self.second = self.second + w[:, None, None] * outer

    def result(self) -> tuple[Tensor, Tensor, Tensor]:
        """(total ESS [n], mean [n, d], covariance [n, d, d]); NaN moments for a row without any weight yet."""
        mean = self.first / self.weight[:, None]
        cov = self.second / self.weight[:, None, None] - mean.unsqueeze(-1) * mean.unsqueeze(-2)
        return self.weight, mean, 0.5 * (cov + cov.mT)


def _gaussian_sampler(loc: Tensor, scale_tril: Tensor, dtype: torch.dtype):
    """(draw, log_density) of N(loc, L L^T), loc [n, d] and L [n, d, d] float64: draws [S, n, d] in ``dtype`` (the
    model's), log N(z) [S, n] in float64 at those rounded draws. With L^{-1} inverted once per proposal (faster than
    torch's batched triangular solves for small d)."""
    d = loc.shape[-1]
    inverse = torch.linalg.solve_triangular(scale_tril, torch.eye(d, dtype=loc.dtype, device=loc.device),
                                            upper=False)  # [n, d, d]
    log_norm = -scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1) - 0.5 * d * math.log(2 * math.pi)  # [n]

    def draw(size: int) -> Tensor:
        eps = torch.randn((size, *loc.shape), dtype=loc.dtype, device=loc.device)
        return (loc + torch.einsum("nij,snj->sni", scale_tril, eps)).to(dtype)

    def log_density(z: Tensor) -> Tensor:
        y = torch.einsum("nij,snj->sni", inverse, z.double() - loc)
        return log_norm - 0.5 * y.pow(2).sum(-1)

    return draw, log_density


def rate_decomposition(model, x, *, seed: int = 0) -> dict:
    """R = I_index(X;Z) + KL(q(z) || p(z)) (Hoffman & Johnson 2016, "ELBO surgery", eq. 3), over the N rows of x:

    index_information: I(n; z) under q(n, z) = q(z|x_n) / N, estimated by InfoNCE with one draw per row (its
                       expectation is exactly I(n; z), which is at most log N);
    marginal_kl:       KL(q(z) || p(z)) = R - I(n; z), the price of an aggregate posterior unlike the prior.

    Args:
        model: a protocol model with ``posterior(x)`` and ``prior()``.
        x: [N, D] data (a tensor or numpy array) in the model's support, N >= 2.
        seed: seeds the draws (``mi_bounds``); the caller's global random state is left untouched.

    Returns:
        a dict of ``rate`` (R), ``index_information`` and ``marginal_kl``, in nats.
    """
    from ibkit.estimators.information import mi_bounds

    b = mi_bounds(model, x, seed=seed)
    return {"rate": b["rate"], "index_information": b["infonce"], "marginal_kl": b["rate"] - b["infonce"]}


def amortization_gap(model, x, steps: int | None = None, lr: float = 1e-2, *, n_samples: int = 8, k: int = 1000,
                     check_every: int = 100, tol: float = 0.01, max_steps: int = 5000, lr_decays: int = 2,
                     check_samples: int = 32, seed: int = 0, allow_long: bool = False) -> dict:
    """Split the inference gap log p(x) - ELBO (Cremer et al. 2018, "Inference Suboptimality in VAEs"):

    elbo_amortised:  the ELBO of the encoder's q(z|x);
    elbo_optimised:  the ELBO after optimising each data point's own variational parameters of the same family
                     (h_n = ``posterior_params(x)`` [N, P], started from the encoder's and moved by Adam at ``lr``
                     with ``n_samples`` reparameterised draws of ``posterior_from_params(h)`` per step; the decoder
                     and prior stay fixed): q*;
    log_px:          the importance-weighted bound with ``k`` samples from q* (a better proposal than the
                     encoder's), an estimate of log p(x) from below;
    amortization_gap = elbo_optimised - elbo_amortised, approximation_gap = log_px - elbo_optimised.

    How long: with ``steps=None`` (the default) until the optimisation has converged. Every ``check_every`` steps
    the per-row ELBO of the current h is evaluated at common random numbers, the same ``check_samples``
    standard-normal draws eps [S, N, d] at every check (z = ``rsample_from(q, eps)``; the KL closed form where
    torch has one, ``kl_or_monte_carlo``), so that two checks differ by the optimisation, not by fresh noise. When
    the mean over the rows of the improvement since the previous check is below ``tol`` nats (a plateau), the step
    size is cut tenfold, up to ``lr_decays`` times, and at the next plateau the optimisation stops; or at
    ``max_steps``. The cuts matter: at a constant lr, Adam's noise from ``n_samples`` draws per step holds the
    ELBO below the optimum (0.04 nats below on the linear-Gaussian source at lr 5e-2; within 0.01 after two cuts).
    The criterion is the mean over the rows, which converge at different rates: at a plateau single rows still
    move up or down by more than tol between checks, by the optimiser's noise, so a per-row criterion would not
    be met. With ``steps`` given: exactly that many steps at a constant ``lr``, as before.

    All means over the rows of x, in nats; both ELBOs are evaluated at the same draws (common random numbers), so
    their difference carries no fresh Monte Carlo noise. Also returned: "steps" (the Adam steps taken),
    "last_improvement" (the mean ELBO gain over the last ``check_every`` steps, nats; NaN if fewer ran),
    "converged" (last_improvement < tol: at the final step size, with ``steps=None``) and "lr" (the final step
    size). Needs ``posterior_params`` and ``posterior_from_params`` (``ibkit.interface.HasPosteriorParams``), as
    ibkit's VAEs have, and a family that ``rsample_from`` knows (diagonal, full, IAF; register others).

    Time: up to ``max_steps`` (or ``steps``) N ``n_samples`` decoder passes (forward and backward), the checks'
    N ``check_samples`` each, and N (2 ELBO_DRAWS + k) at the end. Their progress shows (a bar on a terminal, a line
    on the "ibkit" log every 30 s), and where they would take more than an hour at the rate the first steps measure,
    the call fails there with a ValueError naming the estimate, unless ``allow_long=True``.

    Args:
        model: a protocol model with ``posterior_params(x)`` and ``posterior_from_params(h)`` (an ibkit VAE).
        x: [N, D] data (a tensor or numpy array) in the model's support.
        steps: Adam steps at a constant ``lr``; None: until converged (at most ``max_steps``).
        lr: Adam's (initial) step size.
        n_samples: reparameterised draws of z per row at each step.
        k: importance samples per row from q* for ``log_px``.
        check_every: steps between two evaluations of the per-row ELBO.
        tol: the mean gain (nats) over ``check_every`` steps below which the ELBO has reached a plateau.
        max_steps: the most steps with ``steps=None``.
        lr_decays: tenfold cuts of the step size before a plateau stops the optimisation.
        check_samples: the common random draws per row at each check.
        seed: seeds the draws.
        allow_long: run work estimated to take more than an hour instead of refusing it.

    Returns:
        a dict of ``elbo_amortised``, ``elbo_optimised``, ``log_px``, ``amortization_gap``,
            ``approximation_gap`` (nats), ``steps``, ``last_improvement``, ``converged`` and ``lr``.

    Raises:
        ValueError: a model without ``posterior_params`` and ``posterior_from_params`` (or the rest of the
            protocol), x that does not fit the model, an argument out of range, or work estimated at more than an
            hour without ``allow_long``.
    """
    if not (callable(getattr(model, "posterior_params", None))
            and callable(getattr(model, "posterior_from_params", None))):
        raise ValueError(
            f"amortization_gap needs an ibkit VAE or a model with posterior_params(x) -> h [N, P] (the amortised "
            f"variational parameters) and posterior_from_params(h) -> q(z|x) (ibkit.interface.HasPosteriorParams); "
            f"got {type(model).__name__}, which lacks them"
        )
    x = prepare(model, x, "amortization_gap")
    if steps is not None:
        check_number("steps", steps, low=0, integer=True)
    check_number("lr", lr, low=0, low_open=True)
    check_number("n_samples", n_samples, low=1, integer=True)
    check_number("k", k, low=1, integer=True)
    check_number("check_every", check_every, low=1, integer=True)
    check_number("tol", tol, low=0)
    check_number("max_steps", max_steps, low=1, integer=True)
    check_number("lr_decays", lr_decays, low=0, integer=True)
    check_number("check_samples", check_samples, low=1, integer=True)
    prior = model.prior()
    h0 = _amortised_params(model, x)
    budget, n = max_steps if steps is None else steps, len(x)
    passes = n * (budget * n_samples + (budget // check_every + 2) * check_samples + 2 * ELBO_DRAWS + k)
    work = f"amortization_gap with {'max_steps' if steps is None else 'steps'}={budget} and k={k} on {n} rows"
    with seeded(seed, x.device), decoder_progress("amortization_gap", passes, x.device, work=work,
                                                  knobs="max_steps (or steps), k", allow_long=allow_long,
                                                  at_most=steps is None) as bar:
        h, progress = _optimise_params(model, x, h0, prior, lr=lr, n_samples=n_samples, budget=budget,
                                       decays=lr_decays if steps is None else None, check_every=check_every,
                                       check_samples=check_samples, tol=tol, seed=seed, bar=bar)
        with torch.no_grad():
            optimised = model.posterior_from_params(h)
            check_posterior(optimised, len(x), type(model).__name__)
            samples, _ = plan_chunks(k, max(1, DEFAULT_CHUNK // len(x)))
            amortised = model.posterior_from_params(h0)
            out: dict = {  # both ELBOs at the same draws eps: their difference carries no fresh Monte Carlo noise
                "elbo_amortised": _common_elbo_rows(model, prior, amortised, x, n_draws=ELBO_DRAWS, seed=seed,
                                                    bar=bar).mean().item(),
                "elbo_optimised": _common_elbo_rows(model, prior, optimised, x, n_draws=ELBO_DRAWS, seed=seed,
                                                    bar=bar).mean().item(),
                "log_px": importance_weighted_rows(model, prior, optimised, x, k=k, samples=samples,
                                                   progress=bar).mean().item(),
            }
    out["amortization_gap"] = out["elbo_optimised"] - out["elbo_amortised"]
    out["approximation_gap"] = out["log_px"] - out["elbo_optimised"]
    return {**out, **progress}


def _amortised_params(model, x: Tensor) -> Tensor:
    """The encoder's variational parameters h [N, P] of x [N, D], detached (checked to be [N, P])."""
    with torch.no_grad():
        h = model.posterior_params(x)
    if not (isinstance(h, Tensor) and h.dim() == 2 and len(h) == len(x)):
        got = list(h.shape) if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(f"{type(model).__name__}.posterior_params(x) must return a tensor [N, P] = [{len(x)}, P]; "
                         f"got {got}")
    return h.detach().clone()


def _optimise_params(model, x: Tensor, h: Tensor, prior: Distribution, *, lr: float, n_samples: int, budget: int,
                     decays: int | None, check_every: int, check_samples: int, tol: float, seed: int,
                     bar: Progress | None = None) -> tuple[Tensor, dict]:
    """Per-datapoint variational parameters h [N, P] moved by Adam on the ELBO of ``posterior_from_params(h)``,
    each step from ``n_samples`` reparameterised draws; only h moves. ``budget`` steps at a constant lr
    (``decays=None``); else at most ``budget``: at each plateau, where the mean gain of the common-random-number
    ELBO (``_common_elbo_rows`` from ``seed``, ``check_samples`` draws) over ``check_every`` steps is below ``tol``,
    lr is cut tenfold, ``decays`` times, and the next plateau stops it. Returns h and its progress record (see
    ``amortization_gap``); the decoder passes of every step and check are counted on ``bar``."""
    h = h.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([h], lr=lr)
    checks: dict[int, Tensor] = {}  # step -> the per-row ELBO [N] of h then
    gain, cuts, t = math.nan, 0, 0
    while True:
        if t % check_every == 0 or t in (budget - check_every, budget):
            checks = {s: e for s, e in checks.items() if s >= t - check_every}
            checks[t] = _common_elbo_rows(model, prior, model.posterior_from_params(h.detach()), x,
                                          n_draws=check_samples, seed=seed, bar=bar)
            if t - check_every in checks:
                gain = (checks[t] - checks[t - check_every]).mean().item()
                if decays is not None and gain < tol and t < budget:
                    if cuts == decays:
                        break
                    cuts += 1
                    for group in optimizer.param_groups:
                        group["lr"] *= 0.1
        if t == budget:
            break
        q = model.posterior_from_params(h)
        z = q.rsample((n_samples,))  # [S, N, d]
        per_row = model.log_likelihood(x, z).mean(0) - kl_or_monte_carlo(q, prior, z)
        (grad,) = torch.autograd.grad(-per_row.sum(), [h])  # only h moves: the model's weights stay
        h.grad = grad
        optimizer.step()
        t += 1
        if bar is not None:
            bar.update(z.shape[0] * z.shape[1])
    final_lr = optimizer.param_groups[0]["lr"]
    converged = gain < tol and (decays is None or cuts == decays)
    return h.detach(), {"steps": t, "last_improvement": gain, "converged": bool(converged), "lr": final_lr}


def _common_elbo_rows(model, prior: Distribution, q: Distribution, x: Tensor, *, n_draws: int, seed: int,
                      bar: Progress | None = None) -> Tensor:
    """The per-row ELBO [N] (float64) of q (batch [N]) at common random numbers: mean_s log p(x|z_s) - KL(q || p)
    with z_s = ``rsample_from(q, eps_s)``, eps [n_draws, N, d] standard normal from a generator seeded with
    ``seed + CRN_OFFSET`` (the same eps at every call, apart from the stream the optimisation draws from); the KL
    closed form where torch has one (else Monte Carlo at the same z_s). ``DEFAULT_CHUNK`` (sample, row) pairs at a
    time, so the draws are never all held; each chunk's pairs counted on ``bar``."""
    chunk = max(1, DEFAULT_CHUNK // len(x))
    generator = torch.Generator(device=x.device).manual_seed(seed + CRN_OFFSET)
    shape = (len(x), *q.event_shape)
    total = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for j in range(0, n_draws, chunk):
            eps = torch.randn((min(chunk, n_draws - j), *shape), generator=generator, device=x.device)
            z = rsample_from(q, eps)  # [S, N, d]
            total += (model.log_likelihood(x, z).sum(0) - len(z) * kl_or_monte_carlo(q, prior, z)).double()
            if bar is not None:
                bar.update(z.shape[0] * z.shape[1])
    return total / n_draws
