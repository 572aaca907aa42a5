"""How the approximate posterior q(z|x) compares with the true posterior p(z|x) of the model."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal

from ibkit.checks import check_number
from ibkit.estimators._common import DEFAULT_CHUNK, plan_chunks, prepare, row_chunks, seeded_no_grad
from ibkit.estimators.information import _is_diagonal_normal


def _mean_abs_offdiag_correlation(cov: Tensor) -> Tensor:
    """Mean |corr_ij| over i != j for covariances [n, d, d]: [n] (0 for d = 1)."""
    d = cov.shape[-1]
    if d < 2:
        return torch.zeros(cov.shape[:-2], dtype=cov.dtype, device=cov.device)
    std = cov.diagonal(dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()
    corr = cov / (std.unsqueeze(-1) * std.unsqueeze(-2))
    off = ~torch.eye(d, dtype=torch.bool, device=cov.device)
    return corr[..., off].abs().mean(-1)


def _covariance(q: Distribution, z: Tensor) -> Tensor:
    """Cov_q[z] [n, d, d]: exact for Gaussian families, else from the samples z [k, n, d]."""
    if isinstance(q, MultivariateNormal):
        return q.covariance_matrix.double()
    if _is_diagonal_normal(q):
        return torch.diag_embed(q.base_dist.scale.double().pow(2))
    zc = z.double() - z.double().mean(0)
    return torch.einsum("kni,knj->nij", zc, zc) / (len(z) - 1)


def posterior_correlation(model, x, k: int = 1000, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK) -> dict:
    """Mean absolute off-diagonal correlation of the latents given x, under q and under the true posterior.

    q:    of q(z|x) (exact for Gaussian families), averaged over the rows of x.
    true: of p(z|x), estimated with k proposals z_s ~ q(z|x) and self-normalised importance weights
          w_s ∝ p(x, z_s) / q(z_s|x): the weighted covariance sum_s w_s (z_s - m)(z_s - m)^T, m = sum_s w_s z_s
          (the moments sampling-importance-resampling would estimate, without the resampling noise).
          Latents independent a priori become dependent given x: Berkson's paradox.
    ess:  the mean effective sample size (sum w)^2 / sum w^2 out of k; a small one means q covers p(z|x)
          poorly and the ``true`` estimate is unreliable.
    """
    x = prepare(model, x)
    check_number("k", k, low=2, integer=True)
    samples, rows = plan_chunks(k, chunk_size)
    if samples < k:
        rows, samples = 1, k  # all k proposals of a row are needed at once for its weighted moments
    q_corr, p_corr, ess = [], [], []
    with seeded_no_grad(seed, x.device):
        prior = model.prior()
        for s in row_chunks(len(x), rows):
            xs = x[s]
            q = model.posterior(xs)
            z = q.sample((k,))  # [k, n, d]
            log_w = (model.log_likelihood(xs, z) + prior.log_prob(z) - q.log_prob(z)).double()  # [k, n]
            w = torch.softmax(log_w, dim=0)  # self-normalised
            zd = z.double()
            mean = (w.unsqueeze(-1) * zd).sum(0)  # [n, d]
            zc = zd - mean
            cov = torch.einsum("kn,kni,knj->nij", w, zc, zc)
            p_corr.append(_mean_abs_offdiag_correlation(cov))
            q_corr.append(_mean_abs_offdiag_correlation(_covariance(q, z)))
            ess.append(1.0 / w.pow(2).sum(0))
    return {
        "q": torch.cat(q_corr).mean().item(),
        "true": torch.cat(p_corr).mean().item(),
        "ess": torch.cat(ess).mean().item(),
        "k": k,
    }
