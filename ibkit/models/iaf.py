"""Inverse autoregressive flow posterior (Kingma et al. 2016, "Improved Variational Inference with Inverse
Autoregressive Flow"): a diagonal Gaussian followed by MADE-based autoregressive steps conditioned on a context
from the encoder, with the numerically stable sigmoid gating of the paper (their eq. 14, algorithm 1)."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints, kl_divergence

from ibkit.distributions import rsample_from

_NO_SAMPLE_SHAPE = torch.Size()
FORGET_BIAS = 1.0  # added to the gate's logit, so that a step leans towards keeping z (Kingma et al., sec. 4)
START_GATE = 1.0 / (1.0 + math.exp(-FORGET_BIAS))  # sigma_0 = sigmoid(forget bias), the gate at s = 0


class MaskedLinear(nn.Linear):
    """A linear map computed in its input's dtype (the inversion runs in float64), its weight multiplied by a fixed
    0/1 ``mask`` [out, in] when one is given (MADE, Germain et al. 2015)."""

    mask: Tensor | None  # a buffer

    def __init__(self, in_features: int, out_features: int, mask: Tensor | None = None):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", None if mask is None else mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight if self.mask is None else self.weight * self.mask
        return F.linear(x, weight.to(x.dtype), self.bias.to(x.dtype))


class IAFStep(nn.Module):
    """One step z -> (sigma * z + (1 - sigma) * m) / sigma_0, with [m, s] = MADE(z, h) autoregressive in z (output
    i sees only the inputs ordered before i), sigma = sigmoid(s + forget bias) and sigma_0 = sigmoid(forget bias);
    log |det dz'/dz| = sum_i log(sigma_i / sigma_0). ``reverse`` flips the ordering, so consecutive steps alternate
    it.

    Kingma et al.'s gated step (their eq. 14) divided by the gate it starts with: MADE's last layer starts at zero
    (m = 0, s = 0), so each step starts as the identity and the flow's q as the diagonal Gaussian it is built on.
    Without the division, two steps started at z' = 0.73 z + 0.27 m with a random m: a q shrunk and shifted from
    the diagonal family's, and on digits (beta = 1, learned decoder) the IAF trained to an ELBO 0.6 nats below the
    diagonal one's, on train and test. Checkpoints before format 3 were trained with that undivided step:
    ``ibkit.models.checkpoint`` folds the division into their weights when it loads them."""

    def __init__(self, latent_dim: int, context_dim: int, width: int, reverse: bool):
        super().__init__()
        d = latent_dim
        order = torch.arange(d, 0, -1) if reverse else torch.arange(1, d + 1)  # degree of each input
        hidden_degree = torch.arange(width) % max(1, d - 1) + 1
        self.register_buffer("order", order, persistent=False)
        self.made_in = MaskedLinear(d, width, hidden_degree[:, None] >= order[None, :])
        self.made_out = MaskedLinear(width, 2 * d, order.repeat(2)[:, None] > hidden_degree[None, :])
        self.context = MaskedLinear(context_dim, width)
        nn.init.zeros_(self.made_out.weight)  # m = 0 and s = 0: the step starts as the identity
        nn.init.zeros_(self.made_out.bias)

    def shift_and_gate(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """The shift (1 - sigma) * m / sigma_0 and the gain sigma / sigma_0 [..., d] for z [..., d] and context h
        (broadcastable to [..., c]): the step is z' = gain * z + shift."""
        a = F.relu(self.made_in(z) + self.context(h))
        m, s = self.made_out(a).chunk(2, dim=-1)
        sigma = torch.sigmoid(s + FORGET_BIAS)
        return (1 - sigma) * m / START_GATE, sigma / START_GATE

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(z', log |det dz'/dz|) for z [..., d]."""
        shift, gain = self.shift_and_gate(z, h)
        return gain * z + shift, gain.log().sum(-1)

    def inverse(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """The z with forward(z) = y, and log |det dy/dz| there. Output i depends only on earlier inputs, so d
        passes fix one more dimension each: after pass k the k first dimensions in the ordering are exact."""
        z = torch.zeros(torch.broadcast_shapes(y.shape, h.shape[:-1] + y.shape[-1:]), dtype=y.dtype, device=y.device)
        for _ in range(y.shape[-1]):
            shift, gain = self.shift_and_gate(z, h)
            z = (y - shift) / gain
        shift, gain = self.shift_and_gate(z, h)
        return z, gain.log().sum(-1)


class IAFDistribution(Distribution):
    """q(z|x): z_0 ~ N(loc, diag(scale^2)), z_t = step_t(z_{t-1}; h); log q(z_T) = log q_0(z_0) - sum_t log|det|.

    batch_shape [N], event_shape [d]. ``log_prob`` inverts the steps, so it works for any z (the information
    bounds evaluate q(z_i|x_j) across pairs, and value [r, 1, d] broadcasts against batch [m]); for the sample it
    drew last it returns the density computed while sampling.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, context: Tensor, steps: nn.ModuleList):
        self.loc, self.scale, self.context = loc, scale, context
        self.steps = cast("list[IAFStep]", steps)  # a ModuleList of IAFStep, iterated as such
        self._last: tuple[Tensor, Tensor, Tensor | float] | None = None  # (z_T, z_0, sum_t log |det|)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def _base(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)

    def rsample(self, sample_shape=_NO_SAMPLE_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        return self.rsample_from(torch.empty(shape, dtype=self.loc.dtype, device=self.loc.device).normal_())

    def rsample_from(self, eps: Tensor) -> Tensor:
        """The sample [S, N, d] the flow makes of the standard normal noise eps [S, N, d]; its density is kept."""
        z = z0 = self.loc + eps * self.scale
        log_det_total: Tensor | float = 0.0
        for step in self.steps:
            z, log_det = step(z, self.context)
            log_det_total = log_det_total + log_det
        self._last = (z, z0, log_det_total)
        return z

    def _origin(self, value: Tensor) -> tuple[Tensor, Tensor | float]:
        """The base sample z_0 that the flow maps to ``value`` [..., d], and sum_t log |det| along the way: kept
        for the sample drawn last, else by inverting the steps in float64 (each pass divides by gains that can be
        small, which would amplify float32 rounding)."""
        if self._last is not None and value is self._last[0]:
            return self._last[1], self._last[2]
        y, context = value.double(), self.context.double()
        log_det_total: Tensor | float = 0.0
        for step in reversed(self.steps):
            y, log_det = step.inverse(y, context)
            log_det_total = log_det_total + log_det
        return y, log_det_total

    def log_prob(self, value: Tensor) -> Tensor:
        z0, log_det_total = self._origin(value)
        base = Independent(Normal(self.loc.to(z0.dtype), self.scale.to(z0.dtype), validate_args=False), 1,
                           validate_args=False)
        log_q = base.log_prob(z0) - log_det_total
        # a z far outside q's reach can overflow the inversion (inf - inf): its density is 0, not undefined
        return torch.nan_to_num(log_q, nan=-math.inf).to(value.dtype)

    def kl_samples(self, p: Distribution, z: Tensor) -> Tensor:
        """One unbiased estimate of KL(q || p) per sample z [S, N, d] of q:

            KL(q_0 || p) + [log p(z_0) - log p(z_T) - sum_t log |det|],

        the base's closed-form KL plus the flow's correction (its expectation is KL(q || p) - KL(q_0 || p), as
        log q(z_T) = log q_0(z_0) - sum_t log |det|). It leaves out the term log q_0(z_0) - log p(z_0) - KL(q_0 || p),
        whose mean is zero: a flow near the identity, as it starts, has a rate as precise as the diagonal family's
        closed form. Plain log q(z) - log p(z) where torch has no closed form for KL(q_0 || p)."""
        base = self._base()
        try:
            base_kl = kl_divergence(base, p)
        except NotImplementedError:
            return self.log_prob(z) - p.log_prob(z)
        z0, log_det_total = self._origin(z)
        correction = p.log_prob(z0.to(z.dtype)) - p.log_prob(z) - log_det_total
        return base_kl + correction.to(z.dtype)

    @property
    def mean(self) -> Tensor:
        """E_q[z] [N, d], by Monte Carlo with 256 draws (there is no closed form)."""
        with torch.no_grad():
            return self.rsample((256,)).mean(0)


@rsample_from.register(IAFDistribution)
def _rsample_iaf(q: IAFDistribution, eps: Tensor) -> Tensor:
    """The flow's sample at the noise eps [S, N, d] (``IAFDistribution.rsample_from``)."""
    return q.rsample_from(eps)


def iaf_context_dim(latent_dim: int) -> int:
    return max(8, latent_dim)


def iaf_width(latent_dim: int) -> int:
    return max(32, 4 * latent_dim)


__all__ = ["MaskedLinear", "IAFStep", "IAFDistribution", "iaf_context_dim", "iaf_width"]
