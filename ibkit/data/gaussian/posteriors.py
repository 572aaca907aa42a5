"""The exact posterior of a two-link ``LinearGaussianChain`` factored into diagonal Gaussians, both ways: what a
two-layer VAE's encoder (top-down or bottom-up inference) should approach."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Independent, Normal


def diagonal_scale(name: str, cov: Tensor) -> Tensor:
    """sqrt(diag(cov)) [d] float32 of a covariance [d, d] float64 that is diagonal (correlations <= 1e-4, float32
    round-off of the parameters), else a ValueError naming the factor."""
    sd = cov.diagonal().sqrt()
    corr = (cov / torch.outer(sd, sd) - torch.eye(len(sd), dtype=cov.dtype)).abs().max().item()
    if corr > 1e-4:
        raise ValueError(
            f"layer_posteriors: the exact {name} has a correlation of {corr:.3g} between latent dimensions, so it "
            "has no diagonal form; it needs W with orthogonal columns and A zero off its diagonal, as "
            "load_gaussian(latent_dims=...) draws them (use posterior(x) for the full joint otherwise)"
        )
    return sd.float()


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class TwoLayerPosteriors:
    """The exact posterior p(z1, z2 | x) of a two-link ``LinearGaussianChain`` for N rows x, factored both ways into
    diagonal Gaussians: what a two-layer VAE's encoder should approach. Each factor is Gaussian conditioning
    (precision = prior precision + likelihood precision), with Cov(z1) = A A^T + s1^2 I, Cov(x|z2) = s1^2 W W^T + s^2 I:

    top-down, p(z1, z2 | x) = p(z2|x) p(z1|z2, x):
        p(z2|x)     = N(K (x - b), S2),           S2 = (I + A^T W^T Cov(x|z2)^{-1} W A)^{-1},
                                                  K = S2 A^T W^T Cov(x|z2)^{-1}
        p(z1|z2, x) = N(P (x - b) + R z2, S12),   S12 = (I / s1^2 + W^T W / s^2)^{-1},
                                                  P = S12 W^T / s^2,  R = S12 A / s1^2
    bottom-up, p(z1, z2 | x) = p(z1|x) p(z2|z1)   (z2 is independent of x given z1):
        p(z1|x)     = N(G (x - b), S1),           S1 = (Cov(z1)^{-1} + W^T W / s^2)^{-1},  G = S1 W^T / s^2
        p(z2|z1)    = N(M z1, S21),               S21 = (I + A^T A / s1^2)^{-1},  M = S21 A^T / s1^2

    With W^T W and A diagonal every covariance is diagonal; the scales are the square roots of their diagonals.
    Fields, float32:

    z2_loc [N, d2] = K (x - b),    z2_scale [d2]:                           p(z2|x)
    z1_offset [N, d1] = P (x - b), R [d1, d2], z1_given_z2_scale [d1]:      p(z1|z2, x)
    z1_loc [N, d1] = G (x - b),    z1_scale [d1]:                           p(z1|x)
    M [d2, d1],                    z2_given_z1_scale [d2]:                  p(z2|z1)
    K [d2, D], P [d1, D], G [d1, D]: the maps from x - b, to compare with a linear encoder's weights.
    """

    z2_loc: Tensor
    z2_scale: Tensor
    z1_offset: Tensor
    R: Tensor
    z1_given_z2_scale: Tensor
    z1_loc: Tensor
    z1_scale: Tensor
    M: Tensor
    z2_given_z1_scale: Tensor
    K: Tensor
    P: Tensor
    G: Tensor

    @property
    def latent_dims(self) -> tuple[int, int]:
        """(d1, d2)."""
        return int(self.R.shape[0]), int(self.R.shape[1])

    def __repr__(self) -> str:
        return f"TwoLayerPosteriors(rows={self.z2_loc.shape[0]}, latent_dims={self.latent_dims})"

    def z2_given_x(self) -> Independent:
        """p(z2|x): batch_shape [N], event_shape [d2]."""
        return Independent(Normal(self.z2_loc, self.z2_scale.expand_as(self.z2_loc)), 1)

    def z1_given_z2_x(self, z2: Tensor) -> Independent:
        """p(z1|z2, x) = N(P (x - b) + R z2, diag(z1_given_z2_scale^2)): z2 [..., N, d2] -> batch_shape [..., N],
        event_shape [d1]."""
        loc = self.z1_offset + _check_width("z2", z2, self.latent_dims[1]) @ self.R.T  # [..., N, d1]
        return Independent(Normal(loc, self.z1_given_z2_scale.expand_as(loc)), 1)

    def z1_given_x(self) -> Independent:
        """p(z1|x): batch_shape [N], event_shape [d1]."""
        return Independent(Normal(self.z1_loc, self.z1_scale.expand_as(self.z1_loc)), 1)

    def z2_given_z1(self, z1: Tensor) -> Independent:
        """p(z2|z1) = N(M z1, diag(z2_given_z1_scale^2)): z1 [..., d1] -> batch_shape [...], event_shape [d2]."""
        loc = _check_width("z1", z1, self.latent_dims[0]) @ self.M.T  # [..., d2]
        return Independent(Normal(loc, self.z2_given_z1_scale.expand_as(loc)), 1)

    def log_prob_top_down(self, z: Tensor) -> Tensor:
        """log p(z2|x) + log p(z1|z2, x) = log p(z1, z2 | x): z [..., N, d1 + d2] (z1 first) -> [..., N]."""
        z = _check_width("z", z, sum(self.latent_dims))
        z1, z2 = z.split(self.latent_dims, dim=-1)
        return self.z2_given_x().log_prob(z2) + self.z1_given_z2_x(z2).log_prob(z1)

    def log_prob_bottom_up(self, z: Tensor) -> Tensor:
        """log p(z1|x) + log p(z2|z1) = log p(z1, z2 | x): z [..., N, d1 + d2] (z1 first) -> [..., N]."""
        z = _check_width("z", z, sum(self.latent_dims))
        z1, z2 = z.split(self.latent_dims, dim=-1)
        return self.z1_given_x().log_prob(z1) + self.z2_given_z1(z1).log_prob(z2)


def _check_width(name: str, z, width: int) -> Tensor:
    """``z`` as float32 if it is a tensor [..., width], else a ValueError."""
    if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != width:
        got = list(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{name} must be a tensor [..., {width}]; got {got}")
    return z.to(torch.float32)
