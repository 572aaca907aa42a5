"""How the approximate posterior q(z|x) compares with the true posterior p(z|x) of the model."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from ibkit.checks import check_number, check_posterior
from ibkit.divergence import kl_or_monte_carlo
from ibkit.estimators._common import DEFAULT_CHUNK, plan_chunks, prepare, row_chunks, seeded_no_grad
from ibkit.estimators.likelihood import expected_log_likelihood_rows, importance_weighted_rows
from ibkit.models.posteriors import covariance
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


def posterior_correlation(model, x, k: int = 1000, *, seed: int = 0, chunk_size: int = DEFAULT_CHUNK) -> dict:
    """Mean absolute off-diagonal correlation of the latents given x, under q and under the true posterior.

    q:    of q(z|x) (exact for Gaussian families, ``ibkit.models.posteriors.covariance``), averaged over the rows.
    true: of p(z|x), estimated with k proposals z_s ~ q(z|x) and self-normalised importance weights
          w_s ∝ p(x, z_s) / q(z_s|x): the weighted covariance sum_s w_s (z_s - m)(z_s - m)^T, m = sum_s w_s z_s
          (the moments sampling-importance-resampling would estimate, without the resampling noise).
          Latents independent a priori become dependent given x: Berkson's paradox.
    ess:  the mean effective sample size (sum w)^2 / sum w^2 out of k; a small one means q covers p(z|x)
          poorly and the ``true`` estimate is unreliable.
    """
    x = prepare(model, x, "posterior_correlation")
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
            q_corr.append(_mean_abs_offdiag_correlation(covariance(q, z)))
            ess.append(1.0 / w.pow(2).sum(0))
    return {
        "q": torch.cat(q_corr).mean().item(),
        "true": torch.cat(p_corr).mean().item(),
        "ess": torch.cat(ess).mean().item(),
        "k": k,
    }


def rate_decomposition(model, x, *, seed: int = 0) -> dict:
    """R = I_index(X;Z) + KL(q(z) || p(z)) (Hoffman & Johnson 2016, "ELBO surgery", eq. 3), over the N rows of x:

    index_information: I(n; z) under q(n, z) = q(z|x_n) / N, estimated by InfoNCE with one draw per row (its
                       expectation is exactly I(n; z), which is at most log N);
    marginal_kl:       KL(q(z) || p(z)) = R - I(n; z), the price of an aggregate posterior unlike the prior.
    """
    from ibkit.estimators.information import mi_bounds

    b = mi_bounds(model, x, seed=seed)
    return {"rate": b["rate"], "index_information": b["infonce"], "marginal_kl": b["rate"] - b["infonce"]}


def amortization_gap(model, x, steps: int = 300, lr: float = 1e-2, *, n_samples: int = 8, k: int = 1000,
                     seed: int = 0) -> dict:
    """Split the inference gap log p(x) - ELBO (Cremer et al. 2018, "Inference Suboptimality in VAEs"):

    elbo_amortised:  the ELBO of the encoder's q(z|x);
    elbo_optimised:  the ELBO after optimising each data point's own variational parameters of the same family
                     (h_n = ``posterior_params(x)`` [N, P], started from the encoder's and moved by Adam for
                     ``steps`` steps with ``n_samples`` reparameterised draws of ``posterior_from_params(h)``; the
                     decoder and prior stay fixed): q*;
    log_px:          the importance-weighted bound with ``k`` samples from q* (a better proposal than the
                     encoder's), an estimate of log p(x) from below;
    amortization_gap = elbo_optimised - elbo_amortised, approximation_gap = log_px - elbo_optimised.
    All means over the rows of x, in nats. Needs ``posterior_params`` and ``posterior_from_params``
    (``ibkit.interface.HasPosteriorParams``), as ibkit's VAEs have.
    """
    if not (callable(getattr(model, "posterior_params", None))
            and callable(getattr(model, "posterior_from_params", None))):
        raise ValueError(
            f"amortization_gap needs an ibkit VAE or a model with posterior_params(x) -> h [N, P] (the amortised "
            f"variational parameters) and posterior_from_params(h) -> q(z|x) (ibkit.interface.HasPosteriorParams); "
            f"got {type(model).__name__}, which lacks them"
        )
    x = prepare(model, x, "amortization_gap")
    check_number("steps", steps, low=0, integer=True)
    check_number("lr", lr, low=0, low_open=True)
    check_number("n_samples", n_samples, low=1, integer=True)
    prior = model.prior()
    with seeded(seed, x.device):
        h = _optimise_params(model, x, _amortised_params(model, x), prior, steps, lr, n_samples)
        with torch.no_grad():
            optimised = model.posterior_from_params(h)
            check_posterior(optimised, len(x), type(model).__name__)
            samples, _ = plan_chunks(k, max(1, DEFAULT_CHUNK // len(x)))
            out = {
                "elbo_amortised": _monte_carlo_elbo(model, model.posterior(x), x),
                "elbo_optimised": _monte_carlo_elbo(model, optimised, x),
                "log_px": importance_weighted_rows(model, prior, optimised, x, k, samples).mean().item(),
            }
    out["amortization_gap"] = out["elbo_optimised"] - out["elbo_amortised"]
    out["approximation_gap"] = out["log_px"] - out["elbo_optimised"]
    return out


def _amortised_params(model, x: Tensor) -> Tensor:
    """The encoder's variational parameters h [N, P] of x [N, D], detached (checked to be [N, P])."""
    with torch.no_grad():
        h = model.posterior_params(x)
    if not (isinstance(h, Tensor) and h.dim() == 2 and len(h) == len(x)):
        got = list(h.shape) if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(f"{type(model).__name__}.posterior_params(x) must return a tensor [N, P] = [{len(x)}, P]; "
                         f"got {got}")
    return h.detach().clone()


def _optimise_params(model, x: Tensor, h: Tensor, prior: Distribution, steps: int, lr: float,
                     n_samples: int) -> Tensor:
    """Per-datapoint variational parameters h [N, P] after ``steps`` Adam steps on the ELBO of
    ``posterior_from_params(h)``, each from ``n_samples`` reparameterised draws; only h moves."""
    h = h.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([h], lr=lr)
    for _ in range(steps):
        q = model.posterior_from_params(h)
        z = q.rsample((n_samples,))  # [S, N, d]
        per_row = model.log_likelihood(x, z).mean(0) - kl_or_monte_carlo(q, prior, z)
        (grad,) = torch.autograd.grad(-per_row.sum(), [h])  # only h moves: the model's weights stay
        h.grad = grad
        optimizer.step()
    return h.detach()


def _monte_carlo_elbo(model, q: Distribution, x: Tensor, n_samples: int = 100, chunk: int = 10) -> float:
    """mean_n [mean_s log p(x_n|z_s) - KL(q_n || p)], z_s ~ q_n, drawing ``chunk`` samples at a time; the KL is
    closed form where torch has it (then no extra samples are drawn for it)."""
    log_lik = expected_log_likelihood_rows(model, q, x, n_samples, chunk)
    return (log_lik - kl_or_monte_carlo(q, model.prior(), n_samples=n_samples)).mean().item()
