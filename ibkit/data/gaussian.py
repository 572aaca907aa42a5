"""The linear-Gaussian source x = W z + b + sigma eps (probabilistic PCA) with its closed forms, and its
two-layer form z2 -> z1 -> x.

log p(x), h(X), I(X;Z) and the exact posterior p(z|x) are known (Tipping & Bishop 1999), so estimators
run on ``load("gaussian")`` can be checked against true answers. ``load("gaussian", latent_dims=(d1, d2))``
stacks a second Gaussian layer above the first; every joint is Gaussian, so the same quantities, the
information each layer carries and the exact posterior's factors are closed forms too.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal

from ibkit.checks import check_data, check_number
from ibkit.data._split import check_seed
from ibkit.data.dataset import Dataset

_LOG_2PI = math.log(2 * math.pi)


def _log_normal64(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(x; mean, cov) per row in float64 via a Cholesky factor: x [N, D], mean [D], cov [D, D] -> [N] float64."""
    L = torch.linalg.cholesky(cov.double())
    r = torch.linalg.solve_triangular(L, (x.double() - mean.double()).T, upper=False)  # [D, N]
    logdet = 2 * torch.log(torch.diagonal(L)).sum()
    return -0.5 * (cov.shape[0] * _LOG_2PI + logdet + r.pow(2).sum(0))


def _entropy64(cov: Tensor) -> float:
    """h(N(., cov)) = 1/2 log det(2 pi e cov) in nats, cov [D, D] float64."""
    return float(0.5 * (cov.shape[0] * (_LOG_2PI + 1) + _logdet64(cov)))


def _logdet64(cov: Tensor) -> float:
    """log det of a symmetric positive-definite matrix [d, d] (float64)."""
    return float(torch.linalg.slogdet(cov.double())[1])


def _inverse64(precision: Tensor) -> Tensor:
    """The inverse [d, d] of a symmetric positive-definite matrix (float64), through its Cholesky factor."""
    return torch.cholesky_inverse(torch.linalg.cholesky(precision))


@dataclass(frozen=True, eq=False, repr=False)
class LinearGaussianModel:
    """p(z) = N(0, I_k), p(x|z) = N(W z + b, sigma^2 I_D): the true model behind ``load("gaussian")``.

    Follows the ibkit model protocol (``posterior``, ``prior``, ``log_likelihood``) with the exact
    posterior, so an estimator run on it gives the true rate, ELBO = log p(x), and so on. All it
    returns is float32; the closed forms are computed in float64 from the float32 parameters.

    W:     [D, k] float32 loading matrix.
    b:     [D] float32 offset.
    noise: sigma > 0, the observation noise standard deviation.
    """

    W: Tensor
    b: Tensor
    noise: float

    def __post_init__(self):
        if not isinstance(self.W, Tensor) or self.W.dim() != 2:
            raise ValueError(f"W must be a tensor [D, k]; got {getattr(self.W, 'shape', type(self.W).__name__)}")
        if not isinstance(self.b, Tensor) or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"b must be a tensor [D] = [{self.W.shape[0]}]; got {getattr(self.b, 'shape', self.b)}")
        check_number("noise", self.noise, low=0, low_open=True)
        object.__setattr__(self, "W", self.W.to(torch.float32))
        object.__setattr__(self, "b", self.b.to(torch.float32))
        object.__setattr__(self, "noise", float(self.noise))

    @property
    def input_dim(self) -> int:
        return int(self.W.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.W.shape[1])

    def __repr__(self) -> str:
        return f"LinearGaussianModel(input_dim={self.input_dim}, latent_dim={self.latent_dim}, noise={self.noise})"

    def _covariance64(self) -> Tensor:
        W = self.W.double()
        return W @ W.T + self.noise**2 * torch.eye(self.input_dim, dtype=torch.float64)

    def covariance(self) -> Tensor:
        """C = W W^T + sigma^2 I: [D, D] float32, the covariance of the marginal p(x) = N(b, C)."""
        return self._covariance64().float()

    def log_px(self, x: Tensor) -> Tensor:
        """log p(x) = log N(x; b, C) per row, in float64 via a Cholesky factor: x [N, D] -> [N] float32."""
        x = check_data(x, "x", self.input_dim)
        return _log_normal64(x, self.b, self._covariance64()).float()

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e C) in nats."""
        return _entropy64(self._covariance64())

    def mutual_information(self) -> float:
        """I(X;Z) = h(X) - h(X|Z) = 1/2 log det(I_k + W^T W / sigma^2) in nats."""
        return float(0.5 * torch.linalg.slogdet(self._precision64())[1])

    def _precision64(self) -> Tensor:
        """M = I_k + W^T W / sigma^2 [k, k] float64, the posterior precision."""
        W = self.W.double()
        return torch.eye(self.latent_dim, dtype=torch.float64) + W.T @ W / self.noise**2

    def posterior(self, x: Tensor) -> MultivariateNormal:
        """The exact p(z|x) = N(M^{-1} W^T (x - b) / sigma^2, M^{-1}), M = I + W^T W / sigma^2
        (Tipping & Bishop 1999, eq. 6-7): x [N, D] -> batch_shape [N], event_shape [k], float32."""
        x = check_data(x, "x", self.input_dim).double()
        cov = torch.cholesky_inverse(torch.linalg.cholesky(self._precision64()))  # M^{-1} [k, k]
        mean = (x - self.b.double()) @ self.W.double() @ cov / self.noise**2  # [N, k]
        scale_tril = torch.linalg.cholesky(cov).float().expand(x.shape[0], -1, -1)
        return MultivariateNormal(mean.float(), scale_tril=scale_tril)

    def prior(self) -> MultivariateNormal:
        """p(z) = N(0, I_k), as a MultivariateNormal so that KL(posterior || prior) is analytic."""
        k = self.latent_dim
        return MultivariateNormal(torch.zeros(k), scale_tril=torch.eye(k))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) = sum_d log N(x_d; (W z + b)_d, sigma^2): x [N, D], z [S, N, k] -> [S, N] float32."""
        x = check_data(x, "x", self.input_dim)
        if not isinstance(z, Tensor) or z.dim() < 2 or z.shape[-1] != self.latent_dim or z.shape[-2] != x.shape[0]:
            raise ValueError(
                f"z must have shape [S, N, k] = [S, {x.shape[0]}, {self.latent_dim}]; "
                f"got {list(z.shape) if isinstance(z, Tensor) else type(z).__name__}"
            )
        mean = z.to(torch.float32) @ self.W.T + self.b  # [S, N, D]
        r = (x - mean) / self.noise
        return -0.5 * r.pow(2).sum(-1) - self.input_dim * (math.log(self.noise) + 0.5 * _LOG_2PI)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class GaussianSourceDataset(Dataset):
    """Samples of a linear-Gaussian source whose last step is x = W z_1 + b + sigma eps, with the closed forms of
    its generating model, ``true_model()`` (each subclass's): the methods here ask it.

    W: [D, d_1] float32; b: [D] float32; noise: sigma.
    """

    W: Tensor
    b: Tensor
    noise: float

    def true_model(self, *args, **kwargs):
        raise NotImplementedError

    def covariance(self) -> Tensor:
        """The covariance of x: [D, D] float32."""
        return self.true_model().covariance()

    def log_px(self, x: Tensor) -> Tensor:
        """log N(x; b, Cov x) per row: x [N, D] -> [N] float32 (computed in float64)."""
        return self.true_model().log_px(x)

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e Cov x) in nats."""
        return self.true_model().entropy()

    def mutual_information(self) -> float:
        """I(X;Z) between x and the whole latent code, in nats (= I(X;Z1) for two layers: z2 acts through z1)."""
        return self.true_model().mutual_information()

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        """p(z|x) over the whole latent code: batch_shape [N], event_shape [sum of the latent widths]."""
        return self.true_model().posterior(x)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class LinearGaussianDataset(GaussianSourceDataset):
    """Samples of x = W z + b + sigma eps, z ~ N(0, I_k), eps ~ N(0, I_D), with the closed forms.

    W: [D, k] float32; b: [D] float32; noise: sigma. The methods are those of ``true_model()``
    (``LinearGaussianModel``: C = W W^T + sigma^2 I, I(X;Z) = 1/2 log det(I + W^T W / sigma^2)).
    """

    def true_model(self, posterior: str | None = None, hidden: tuple[int, ...] = (64,), seed: int = 0,
                   beta: float = 1.0):
        """The generating model.

        posterior=None: a ``LinearGaussianModel`` following the ibkit protocol with the exact posterior.
        posterior="diagonal" | "full": an ibkit VAE whose linear decoder, noise scale and prior are the generating
        ones, frozen, and whose encoder (widths ``hidden``, weights from ``seed``) is fresh (``beta`` weighs the
        KL in its training loss; 1 is the negative ELBO): train it with
        ``fit(..., trainable="encoder")`` to measure what a posterior family costs when the generative model is
        held fixed (a learned decoder could rotate its latents until the exact posterior is diagonal).
        """
        if posterior is None:
            return LinearGaussianModel(self.W, self.b, self.noise)
        from ibkit.models import build_model  # lazy: data does not depend on models otherwise
        from ibkit.models.vae import VAE

        D, k = self.W.shape
        model = build_model(VAE.KIND, D, k, hidden=tuple(hidden), decoder_hidden=(), likelihood="gaussian",
                            posterior=posterior, seed=seed, beta=beta)
        _set_generating_model(model, self.W, self.b, self.noise)
        return model


def _set_generating_model(model: nn.Module, W: Tensor, b: Tensor, noise: float) -> None:
    """Copy the generating model into a VAE built with a linear decoder and a Gaussian likelihood, then freeze both.

    model.decoder[0]:            nn.Linear(k, D), its only layer: weight <- W [D, k], bias <- b [D].
    model.likelihood.log_scale:  a scalar tensor: <- log(noise).
    """
    decoder, likelihood = model.get_submodule("decoder"), model.get_submodule("likelihood")
    linear, log_scale = model.get_submodule("decoder.0"), getattr(likelihood, "log_scale", None)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"true_model needs a VAE whose decoder starts with nn.Linear; got {type(linear).__name__}")
    if not isinstance(log_scale, Tensor):
        raise TypeError(
            f"true_model needs a Gaussian likelihood with a log_scale tensor; got {type(likelihood).__name__}"
        )
    with torch.no_grad():
        linear.weight.copy_(W)
        linear.bias.copy_(b)
        log_scale.fill_(math.log(noise))
    for part in (decoder, likelihood):
        part.requires_grad_(False)


# ------------------------------------------------------------------------------------------------------------
# two layers: z2 -> z1 -> x


@dataclass(frozen=True, eq=False, repr=False)
class TwoLayerGaussianModel:
    """p(z2) = N(0, I_{d2}), p(z1|z2) = N(A z2, s1^2 I_{d1}), p(x|z1) = N(W z1 + b, s^2 I_D): the true model
    behind ``load("gaussian", latent_dims=(d1, d2))``. z1 is the layer nearest the data.

    Follows the ibkit model protocol over the concatenated code z = (z1, z2) [d1 + d2], z1 first: ``prior`` is the
    joint p(z1, z2), ``posterior`` the exact joint p(z1, z2 | x), ``log_likelihood`` log p(x|z1). All it returns is
    float32; the closed forms are computed in float64 from the float32 parameters.

    W:           [D, d1] float32 loading matrix of the bottom layer.
    b:           [D] float32 offset.
    noise:       s > 0, the observation noise standard deviation.
    A:           [d1, d2] float32 loading matrix of the top layer.
    layer_noise: s1 > 0, the standard deviation of z1 given z2.

    Every closed form holds for any W and A; ``layer_posteriors`` also needs the structure ``load_gaussian`` draws
    (W with orthogonal columns, A zero off its diagonal), under which each factor of the posterior is diagonal.
    """

    W: Tensor
    b: Tensor
    noise: float
    A: Tensor
    layer_noise: float

    def __post_init__(self):
        if not isinstance(self.W, Tensor) or self.W.dim() != 2:
            raise ValueError(f"W must be a tensor [D, d1]; got {getattr(self.W, 'shape', type(self.W).__name__)}")
        if not isinstance(self.b, Tensor) or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"b must be a tensor [D] = [{self.W.shape[0]}]; got {getattr(self.b, 'shape', self.b)}")
        if not isinstance(self.A, Tensor) or self.A.dim() != 2 or self.A.shape[0] != self.W.shape[1]:
            raise ValueError(
                f"A must be a tensor [d1, d2] = [{self.W.shape[1]}, d2] (d1 = W.shape[1]); "
                f"got {getattr(self.A, 'shape', type(self.A).__name__)}"
            )
        check_number("noise", self.noise, low=0, low_open=True)
        check_number("layer_noise", self.layer_noise, low=0, low_open=True)
        for name in ("W", "b", "A"):
            object.__setattr__(self, name, getattr(self, name).to(torch.float32))
        object.__setattr__(self, "noise", float(self.noise))
        object.__setattr__(self, "layer_noise", float(self.layer_noise))

    @property
    def input_dim(self) -> int:
        return int(self.W.shape[0])

    @property
    def latent_dims(self) -> tuple[int, int]:
        """(d1, d2), nearest the data first."""
        return int(self.A.shape[0]), int(self.A.shape[1])

    @property
    def latent_dim(self) -> int:
        """d1 + d2, the width of the concatenated code z = (z1, z2)."""
        return sum(self.latent_dims)

    def __repr__(self) -> str:
        return (
            f"TwoLayerGaussianModel(input_dim={self.input_dim}, latent_dims={self.latent_dims}, "
            f"noise={self.noise}, layer_noise={self.layer_noise})"
        )

    def _latent_covariance64(self) -> Tensor:
        """Cov(z1) = A A^T + s1^2 I [d1, d1] float64."""
        A = self.A.double()
        return A @ A.T + self.layer_noise**2 * torch.eye(A.shape[0], dtype=torch.float64)

    def _covariance64(self) -> Tensor:
        """Cx = W Cov(z1) W^T + s^2 I [D, D] float64."""
        W = self.W.double()
        return W @ self._latent_covariance64() @ W.T + self.noise**2 * torch.eye(self.input_dim, dtype=torch.float64)

    def _covariance_given_z2_64(self) -> Tensor:
        """Cov(x|z2) = s1^2 W W^T + s^2 I [D, D] float64."""
        W = self.W.double()
        return self.layer_noise**2 * W @ W.T + self.noise**2 * torch.eye(self.input_dim, dtype=torch.float64)

    def covariance(self) -> Tensor:
        """Cx = W (A A^T + s1^2 I) W^T + s^2 I: [D, D] float32, the covariance of the marginal p(x) = N(b, Cx)."""
        return self._covariance64().float()

    def log_px(self, x: Tensor) -> Tensor:
        """log p(x) = log N(x; b, Cx) per row, in float64: x [N, D] -> [N] float32."""
        x = check_data(x, "x", self.input_dim)
        return _log_normal64(x, self.b, self._covariance64()).float()

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e Cx) in nats."""
        return _entropy64(self._covariance64())

    def mutual_information(self) -> float:
        """I(X;Z1) = I(X;(Z1, Z2)) (x depends on z only through z1) = h(X) - h(X|Z1)
        = 1/2 log det Cx - D/2 log s^2 in nats."""
        return 0.5 * _logdet64(self._covariance64()) - self.input_dim * math.log(self.noise)

    def layer_information(self) -> tuple[float, float]:
        """(I(X;Z1), I(X;Z2)) in nats; I(X;Z2) = h(X) - h(X|Z2) = 1/2 log det Cx - 1/2 log det(s1^2 W W^T + s^2 I).
        I(X;Z2) <= I(X;Z1) (data processing along z2 -> z1 -> x)."""
        i2 = 0.5 * (_logdet64(self._covariance64()) - _logdet64(self._covariance_given_z2_64()))
        return self.mutual_information(), i2

    def conditional_information(self) -> float:
        """I(X;Z1|Z2) = I(X;(Z1, Z2)) - I(X;Z2) = I(X;Z1) - I(X;Z2) in nats (chain rule)."""
        i1, i2 = self.layer_information()
        return i1 - i2

    def latent_information(self) -> float:
        """I(Z1;Z2) = h(Z1) - h(Z1|Z2) = 1/2 log det(A A^T + s1^2 I) - d1/2 log s1^2 in nats."""
        return 0.5 * _logdet64(self._latent_covariance64()) - self.latent_dims[0] * math.log(self.layer_noise)

    def _prior_covariance64(self) -> Tensor:
        """Cov(z1, z2) = [[A A^T + s1^2 I, A], [A^T, I]] [d1 + d2, d1 + d2] float64."""
        A = self.A.double()
        top = torch.cat([self._latent_covariance64(), A], dim=1)
        bottom = torch.cat([A.T, torch.eye(A.shape[1], dtype=torch.float64)], dim=1)
        return torch.cat([top, bottom], dim=0)

    def _precision64(self) -> Tensor:
        """The posterior precision of z = (z1, z2) [d1 + d2, d1 + d2] float64: the prior's,
        [[I / s1^2, -A / s1^2], [-A^T / s1^2, I + A^T A / s1^2]], plus W^T W / s^2 in the z1 block."""
        W, A, t2 = self.W.double(), self.A.double(), self.layer_noise**2
        d1, d2 = self.latent_dims
        top = torch.cat([torch.eye(d1, dtype=torch.float64) / t2 + W.T @ W / self.noise**2, -A / t2], dim=1)
        bottom = torch.cat([-A.T / t2, torch.eye(d2, dtype=torch.float64) + A.T @ A / t2], dim=1)
        return torch.cat([top, bottom], dim=0)

    def prior(self) -> MultivariateNormal:
        """p(z1, z2) = N(0, [[A A^T + s1^2 I, A], [A^T, I]]): event_shape [d1 + d2], float32."""
        scale_tril = torch.linalg.cholesky(self._prior_covariance64()).float()
        return MultivariateNormal(torch.zeros(self.latent_dim), scale_tril=scale_tril)

    def posterior(self, x: Tensor) -> MultivariateNormal:
        """The exact p(z1, z2 | x) = N(S [W^T (x - b) / s^2; 0], S), S the inverse of ``_precision64``
        (Bishop 2006, eq. 2.116-2.117): x [N, D] -> batch_shape [N], event_shape [d1 + d2], float32."""
        x = check_data(x, "x", self.input_dim).double()
        cov = _inverse64(self._precision64())  # [d1 + d2, d1 + d2]
        d1 = self.latent_dims[0]
        mean = (x - self.b.double()) @ self.W.double() @ cov[:d1] / self.noise**2  # [N, d1 + d2]
        scale_tril = torch.linalg.cholesky(cov).float().expand(x.shape[0], -1, -1)
        return MultivariateNormal(mean.float(), scale_tril=scale_tril)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z1) = sum_d log N(x_d; (W z1 + b)_d, s^2), z1 = z[..., :d1]:
        x [N, D], z [S, N, d1 + d2] -> [S, N] float32."""
        x = check_data(x, "x", self.input_dim)
        if not isinstance(z, Tensor) or z.dim() < 2 or z.shape[-1] != self.latent_dim or z.shape[-2] != x.shape[0]:
            raise ValueError(
                f"z must have shape [S, N, d1 + d2] = [S, {x.shape[0]}, {self.latent_dim}]; "
                f"got {list(z.shape) if isinstance(z, Tensor) else type(z).__name__}"
            )
        mean = z[..., : self.latent_dims[0]].to(torch.float32) @ self.W.T + self.b  # [S, N, D]
        r = (x - mean) / self.noise
        return -0.5 * r.pow(2).sum(-1) - self.input_dim * (math.log(self.noise) + 0.5 * _LOG_2PI)

    def layer_posteriors(self, x: Tensor) -> TwoLayerPosteriors:
        """The exact posterior p(z1, z2 | x) for x [N, D] factored top-down and bottom-up into diagonal Gaussians;
        the formulas are in ``TwoLayerPosteriors``. A ValueError if a factor is not diagonal (W or A without the
        structure ``load_gaussian`` draws)."""
        x = check_data(x, "x", self.input_dim)
        W, A, s2, t2 = self.W.double(), self.A.double(), self.noise**2, self.layer_noise**2
        d1, d2 = self.latent_dims
        I1, I2 = torch.eye(d1, dtype=torch.float64), torch.eye(d2, dtype=torch.float64)
        centred = x.double() - self.b.double()  # [N, D]
        # top-down: p(z2|x) from x | z2 ~ N(W A z2 + b, Cov(x|z2)); p(z1|z2, x) from z1 | z2 ~ N(A z2, s1^2 I)
        CinvW = torch.linalg.solve(self._covariance_given_z2_64(), W)  # Cov(x|z2)^{-1} W [D, d1]
        S2 = _inverse64(I2 + A.T @ W.T @ CinvW @ A)  # [d2, d2]
        K = S2 @ A.T @ CinvW.T  # [d2, D]
        S12 = _inverse64(I1 / t2 + W.T @ W / s2)  # [d1, d1]
        P, R = S12 @ W.T / s2, S12 @ A / t2  # [d1, D], [d1, d2]
        # bottom-up: p(z1|x) from z1 ~ N(0, Cov(z1)); p(z2|z1) from z2 ~ N(0, I)
        S1 = _inverse64(_inverse64(self._latent_covariance64()) + W.T @ W / s2)  # [d1, d1]
        G = S1 @ W.T / s2  # [d1, D]
        S21 = _inverse64(I2 + A.T @ A / t2)  # [d2, d2]
        M = S21 @ A.T / t2  # [d2, d1]
        return TwoLayerPosteriors(
            z2_loc=(centred @ K.T).float(),
            z2_scale=_diagonal_scale("p(z2|x)", S2),
            z1_offset=(centred @ P.T).float(),
            R=R.float(),
            z1_given_z2_scale=_diagonal_scale("p(z1|z2, x)", S12),
            z1_loc=(centred @ G.T).float(),
            z1_scale=_diagonal_scale("p(z1|x)", S1),
            M=M.float(),
            z2_given_z1_scale=_diagonal_scale("p(z2|z1)", S21),
            K=K.float(),
            P=P.float(),
            G=G.float(),
        )


def _diagonal_scale(name: str, cov: Tensor) -> Tensor:
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
    """The exact posterior p(z1, z2 | x) of a ``TwoLayerGaussianModel`` for N rows x, factored both ways into
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


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class TwoLayerGaussianDataset(GaussianSourceDataset):
    """Samples of z2 ~ N(0, I_{d2}), z1 = A z2 + s1 eps1, x = W z1 + b + s eps (eps1, eps standard normal), with
    the closed forms.

    W: [D, d1] float32; b: [D] float32; noise: s; A: [d1, d2] float32; layer_noise: s1. The methods are those of
    ``true_model()`` (``TwoLayerGaussianModel``: Cov x = W (A A^T + s1^2 I) W^T + s^2 I).
    """

    A: Tensor
    layer_noise: float

    @property
    def latent_dims(self) -> tuple[int, int]:
        """(d1, d2), nearest the data first."""
        return int(self.A.shape[0]), int(self.A.shape[1])

    def true_model(self, inference: str | None = None, seed: int = 0, beta: float = 1.0, exact: bool = False,
                   **fields):
        """The generating model.

        inference=None: a ``TwoLayerGaussianModel`` following the ibkit protocol over z = (z1, z2) with the exact
        posterior. inference="top_down" | "bottom_up": an ibkit hierarchical VAE (``kind="hvae"``, linear networks)
        whose generative part is the generating one, frozen: p(x | z1) = N(W z1 + b, s^2 I), p(z1 | z2) =
        N(A z2, s1^2 I), p(z2) = N(0, I); its encoder (linear, weights from ``seed``) is fresh. Train it with
        ``fit(..., trainable="encoder")``. Every exact factor of the posterior is then a diagonal Gaussian with a
        linear mean (``layer_posteriors``), which the linear encoder can represent: trained, its per-layer rates
        approach I(X;Z2) (top layer) and I(X;Z1|Z2) top-down, and its ELBO log p(x). ``exact=True``: the encoder is
        set to that exact posterior instead (then ELBO = log p(x) for every x). ``fields``: other hvae fields
        (e.g. free_bits)."""
        if inference is None:
            return TwoLayerGaussianModel(self.W, self.b, self.noise, self.A, self.layer_noise)
        from ibkit.models import build_model  # lazy: data does not depend on models otherwise

        (d1, d2), D = self.latent_dims, self.input_dim
        model = build_model("hvae", D, d1 + d2, latent_dims=(d1, d2), inference=inference, hidden=(), layer_hidden=(),
                            decoder_hidden=(), likelihood="gaussian", seed=seed, beta=beta, **fields)
        _set_generating_model(model, self.W, self.b, self.noise)
        prior = typing.cast(nn.Linear, model.get_submodule("priors.0.0"))  # z2 -> (loc, log variance) of z1
        with torch.no_grad():
            prior.weight.zero_()
            prior.weight[:d1] = self.A
            prior.bias.zero_()
            prior.bias[d1:] = 2 * math.log(self.layer_noise)
        model.get_submodule("priors").requires_grad_(False)
        if exact:
            _set_exact_encoder(model, self.layer_posteriors(self.b[None]), self.b, inference)
        return model

    def layer_information(self) -> tuple[float, float]:
        """(I(X;Z1), I(X;Z2)) in nats; see ``TwoLayerGaussianModel.layer_information``."""
        return self.true_model().layer_information()

    def conditional_information(self) -> float:
        """I(X;Z1|Z2) = I(X;Z1) - I(X;Z2) in nats."""
        return self.true_model().conditional_information()

    def latent_information(self) -> float:
        """I(Z1;Z2) = 1/2 log det(A A^T + s1^2 I) - d1/2 log s1^2 in nats."""
        return self.true_model().latent_information()

    def layer_posteriors(self, x: Tensor) -> TwoLayerPosteriors:
        """p(z2|x), p(z1|z2, x), p(z1|x), p(z2|z1) as diagonal Gaussians; see ``TwoLayerPosteriors``."""
        return self.true_model().layer_posteriors(x)


def _set_exact_encoder(model: nn.Module, exact: TwoLayerPosteriors, b: Tensor, inference: str) -> None:
    """Set the linear encoder of a two-layer hvae (``true_model``) to the exact posterior's factors: each head's
    loc rows to the factor's linear map of (x - b) (and of its parent layer), its log-variance rows to a constant."""

    def fill(head: nn.Linear, weight: Tensor, bias: Tensor, scale: Tensor) -> None:
        with torch.no_grad():
            d = len(scale)
            head.weight.zero_()
            head.weight[:d] = weight
            head.bias[:d] = bias
            head.bias[d:] = 2 * torch.log(scale)

    def head(name: str) -> nn.Linear:
        return typing.cast(nn.Linear, model.get_submodule(f"encoder.heads.{name}"))

    if inference == "top_down":  # heads[1]: q(z2 | x); heads[0]: q(z1 | x, z2), input [x, z2]
        fill(head("1"), exact.K, -exact.K @ b, exact.z2_scale)
        fill(head("0"), torch.cat([exact.P, exact.R], 1), -exact.P @ b, exact.z1_given_z2_scale)
    else:  # heads[0]: q(z1 | x); heads[1]: q(z2 | z1), each a one-layer MLP
        fill(head("0.0"), exact.G, -exact.G @ b, exact.z1_scale)
        fill(head("1.0"), exact.M, torch.zeros(len(exact.M)), exact.z2_given_z1_scale)


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix [d, d]: QR of a Gaussian matrix with R's diagonal made positive."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _spectrum_source(
    eigenvalues, k: int, rng: np.random.Generator, input_dim: int | None, noise: float | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """(W [D, k], b [D] = 0, sigma) of the source whose covariance has the given spectrum (see ``load_gaussian``)."""
    try:
        lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    except (TypeError, ValueError):
        raise ValueError(f"eigenvalues={eigenvalues!r} must be a sequence of positive numbers") from None
    if lam.size == 0 or not np.all(np.isfinite(lam)) or lam[-1] <= 0:
        raise ValueError(f"eigenvalues={eigenvalues!r} must be a non-empty sequence of finite numbers > 0")
    D = lam.size
    if input_dim is not None and input_dim != D:
        raise ValueError(
            f"input_dim={input_dim} but {D} eigenvalues were given; pass one eigenvalue per input dimension"
        )
    if k > D:
        raise ValueError(f"latent_dim={k} exceeds the {D} eigenvalues given; choose latent_dim <= {D}")
    floor = lam[-1]
    if not np.allclose(lam[k:], floor, rtol=1e-9, atol=0):
        above = int(np.sum(~np.isclose(lam, floor, rtol=1e-9, atol=0)))
        raise ValueError(
            f"eigenvalues={eigenvalues!r} with latent_dim={k}: a linear-Gaussian source has covariance "
            f"W W^T + sigma^2 I, so its {D - k} smallest eigenvalues must all equal the noise floor "
            f"sigma^2 = min(eigenvalues) = {floor:g}; pass latent_dim={above} or make the smallest "
            f"{D - k} eigenvalues equal"
        )
    sigma = math.sqrt(floor)
    if noise is not None and not math.isclose(noise, sigma, rel_tol=1e-9):
        raise ValueError(
            f"noise={noise!r} but eigenvalues fix sigma = sqrt(min(eigenvalues)) = {sigma:g}; leave noise unset"
        )
    W = _random_rotation(rng, D)[:, :k] * np.sqrt(lam[:k] - floor)
    return W, np.zeros(D), sigma


_DEFAULT_LATENT_DIM = 2  # load_gaussian's latent_dim; latent_dims refuses any other latent_dim beside it


def _latent_dims(latent_dims, latent_dim: int, eigenvalues) -> tuple[int, ...]:
    """The latent widths, nearest the data first: (latent_dim,) when ``latent_dims`` is None, else ``latent_dims``
    checked (one or two integers >= 1, with neither a latent_dim other than the default nor eigenvalues)."""
    if latent_dims is None:
        return (int(latent_dim),)
    if isinstance(latent_dims, (str, bytes)) or not isinstance(latent_dims, Sequence):
        raise ValueError(
            f"latent_dims={latent_dims!r} must be a tuple of integers: (d1,) for one latent layer or (d1, d2) for two"
        )
    if len(latent_dims) not in (1, 2):
        raise ValueError(
            f"latent_dims={tuple(latent_dims)!r} has {len(latent_dims)} entries; allowed are (d1,) for one latent "
            "layer or (d1, d2) for two (z1 nearest the data)"
        )
    for i, d in enumerate(latent_dims):
        check_number(f"latent_dims[{i}]", d, low=1, integer=True)
    dims = tuple(int(d) for d in latent_dims)
    if latent_dim != _DEFAULT_LATENT_DIM:
        raise ValueError(
            f"latent_dims={dims} and latent_dim={latent_dim!r} both set the latent width; pass only latent_dims "
            "(latent_dims=(k,) is latent_dim=k)"
        )
    if eigenvalues is not None:
        raise ValueError(
            f"latent_dims={dims} cannot be combined with eigenvalues, which define a one-layer source; pass "
            "latent_dim=k with eigenvalues, or latent_dims without them"
        )
    return dims


def _two_layer_source(
    dims: tuple[int, int], D: int, sigma: float, sigma1: float, n_train: int, n_test: int, rng: np.random.Generator
) -> TwoLayerGaussianDataset:
    """The two-layer source of ``load_gaussian(latent_dims=(d1, d2))``: parameters, then the train and test rows."""
    d1, d2 = dims
    if d1 > D:
        raise ValueError(
            f"latent_dims={dims} has d1={d1} > input_dim={D}, but W [D, d1] needs orthogonal columns; "
            f"choose d1 <= {D} or a larger input_dim"
        )
    m = min(d1, d2)
    W = _random_rotation(rng, D)[:, :d1] * rng.uniform(0.5, 2.5, d1)  # [D, d1], orthogonal columns
    A = np.zeros((d1, d2))
    A[np.arange(m), np.arange(m)] = rng.uniform(0.8, 2.0, m)  # [d1, d2], axis-aligned
    b = rng.standard_normal(D)

    W32, A32, b32 = (torch.from_numpy(a.astype(np.float32)) for a in (W, A, b))
    W64, A64, b64 = (t.numpy().astype(np.float64) for t in (W32, A32, b32))  # sample the float32 model exactly

    def sample(n: int) -> Tensor:
        z2 = rng.standard_normal((n, d2))  # [n, d2]
        z1 = z2 @ A64.T + sigma1 * rng.standard_normal((n, d1))  # [n, d1]
        eps = rng.standard_normal((n, D))  # [n, D]
        return torch.from_numpy((z1 @ W64.T + b64 + sigma * eps).astype(np.float32))

    train = sample(n_train)
    test = sample(n_test)
    return TwoLayerGaussianDataset(
        name="gaussian", train=train, test=test, likelihood="gaussian", W=W32, b=b32, noise=sigma, A=A32,
        layer_noise=sigma1, provenance={"split": f"sampled {n_train:,}/{n_test:,}"},
    )


def load_gaussian(
    *,
    input_dim: int | None = None,
    latent_dim: int = _DEFAULT_LATENT_DIM,
    noise: float | None = None,
    n_train: int = 5000,
    n_test: int = 5000,
    seed: int = 0,
    eigenvalues=None,
    latent_dims: tuple[int, ...] | None = None,
    layer_noise: float | None = None,
) -> LinearGaussianDataset | TwoLayerGaussianDataset:
    """Linear-Gaussian data x = W z + b + sigma eps with W ~ N(0, 1) [D, k], b ~ N(0, 1) [D].

    input_dim:   D; 8 when None (or len(eigenvalues) when those are given).
    latent_dim:  k, the dimension of z.
    noise:       sigma > 0; 0.5 when None (or sqrt(min(eigenvalues)) when those are given).
    n_train, n_test: rows sampled for each split.
    seed:        all randomness (W, b, rotation, samples) comes from ``np.random.default_rng(seed)``.
    eigenvalues: (l_1..l_D) > 0: instead a source with covariance C = Q diag(l) Q^T for a random
                 rotation Q, b = 0: sigma^2 = min(l) and W = Q[:, :k] diag(sqrt(l_i - sigma^2)) for the
                 k largest; the other D - k eigenvalues must equal min(l) (an isotropic noise floor).
    latent_dims: (d1, d2): instead two latent layers, z2 ~ N(0, I_{d2}), z1 = A z2 + s1 eps1, x = W z1 + b + s eps
                 with s = noise, z1 nearest the data (a ``TwoLayerGaussianDataset``). W = Q[:, :d1] diag(w) for a
                 random rotation Q and w ~ U[0.5, 2.5] (orthogonal columns; needs d1 <= D), A [d1, d2] zero but
                 for A[j, j] = a_j ~ U[0.8, 2.0], j < min(d1, d2), b ~ N(0, 1): so every factor of the exact
                 posterior is diagonal. (k,) is latent_dim=k; not with latent_dim or eigenvalues.
    layer_noise: s1 > 0, the standard deviation of z1 given z2 (two layers only); 0.5 when None.
    """
    check_number("latent_dim", latent_dim, low=1, integer=True)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        check_number(name, value, low=1, integer=True)
    check_seed(seed)
    if input_dim is not None:
        check_number("input_dim", input_dim, low=1, integer=True)
    if noise is not None:
        check_number("noise", noise, low=0, low_open=True)
    dims = _latent_dims(latent_dims, latent_dim, eigenvalues)
    if layer_noise is not None:
        check_number("layer_noise", layer_noise, low=0, low_open=True)
        if len(dims) != 2:
            raise ValueError(
                f"layer_noise={layer_noise!r} is the noise between two latent layers but this source has one; "
                "pass latent_dims=(d1, d2) or leave layer_noise unset"
            )
    rng = np.random.default_rng(int(seed))
    if len(dims) == 2:
        return _two_layer_source(
            (dims[0], dims[1]), int(input_dim or 8), float(noise if noise is not None else 0.5),
            float(layer_noise if layer_noise is not None else 0.5), int(n_train), int(n_test), rng,
        )
    k = dims[0]

    if eigenvalues is None:
        D, sigma = int(input_dim or 8), float(noise if noise is not None else 0.5)
        W = rng.standard_normal((D, k))
        b = rng.standard_normal(D)
    else:
        W, b, sigma = _spectrum_source(eigenvalues, k, rng, input_dim=input_dim, noise=noise)
        D = W.shape[0]

    W32, b32 = torch.from_numpy(W.astype(np.float32)), torch.from_numpy(b.astype(np.float32))
    W64, b64 = W32.numpy().astype(np.float64), b32.numpy().astype(np.float64)  # sample the float32 model exactly

    def sample(n: int) -> Tensor:
        z = rng.standard_normal((n, k))  # [n, k]
        eps = rng.standard_normal((n, D))  # [n, D]
        return torch.from_numpy((z @ W64.T + b64 + sigma * eps).astype(np.float32))

    train = sample(int(n_train))
    test = sample(int(n_test))
    return LinearGaussianDataset(
        name="gaussian", train=train, test=test, likelihood="gaussian", W=W32, b=b32, noise=sigma,
        provenance={"split": f"sampled {int(n_train):,}/{int(n_test):,} (seed {seed})"},
    )
