"""The linear-Gaussian source x = W z + b + sigma eps (probabilistic PCA) with its closed forms.

log p(x), h(X), I(X;Z) and the exact posterior p(z|x) are known (Tipping & Bishop 1999), so estimators
run on ``load("gaussian")`` can be checked against true answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from ibkit.checks import check_data, check_number
from ibkit.data._split import check_seed
from ibkit.data.dataset import Dataset

_LOG_2PI = math.log(2 * math.pi)


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
        x = check_data(x, "x", self.input_dim).double()
        L = torch.linalg.cholesky(self._covariance64())
        r = torch.linalg.solve_triangular(L, (x - self.b.double()).T, upper=False)  # [D, N]
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return (-0.5 * (self.input_dim * _LOG_2PI + logdet + r.pow(2).sum(0))).float()

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e C) in nats."""
        logdet = torch.linalg.slogdet(self._covariance64())[1]
        return float(0.5 * (self.input_dim * (_LOG_2PI + 1) + logdet))

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
class LinearGaussianDataset(Dataset):
    """Samples of x = W z + b + sigma eps, z ~ N(0, I_k), eps ~ N(0, I_D), with the closed forms.

    W: [D, k] float32; b: [D] float32; noise: sigma. The methods are those of ``true_model()``.
    """

    W: Tensor
    b: Tensor
    noise: float

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

    def covariance(self) -> Tensor:
        """C = W W^T + sigma^2 I: [D, D] float32."""
        return self.true_model().covariance()

    def log_px(self, x: Tensor) -> Tensor:
        """log N(x; b, C) per row: x [N, D] -> [N] float32 (computed in float64)."""
        return self.true_model().log_px(x)

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e C) in nats."""
        return self.true_model().entropy()

    def mutual_information(self) -> float:
        """I(X;Z) = 1/2 log det(I + W^T W / sigma^2) in nats."""
        return self.true_model().mutual_information()

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        """p(z|x): batch_shape [N], event_shape [k]; see ``LinearGaussianModel.posterior``."""
        return self.true_model().posterior(x)


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


def load_gaussian(
    *,
    input_dim: int | None = None,
    latent_dim: int = 2,
    noise: float | None = None,
    n_train: int = 5000,
    n_test: int = 5000,
    seed: int = 0,
    eigenvalues=None,
) -> LinearGaussianDataset:
    """Linear-Gaussian data x = W z + b + sigma eps with W ~ N(0, 1) [D, k], b ~ N(0, 1) [D].

    input_dim:   D; 8 when None (or len(eigenvalues) when those are given).
    latent_dim:  k, the dimension of z.
    noise:       sigma > 0; 0.5 when None (or sqrt(min(eigenvalues)) when those are given).
    n_train, n_test: rows sampled for each split.
    seed:        all randomness (W, b, rotation, samples) comes from ``np.random.default_rng(seed)``.
    eigenvalues: (l_1..l_D) > 0: instead a source with covariance C = Q diag(l) Q^T for a random
                 rotation Q, b = 0: sigma^2 = min(l) and W = Q[:, :k] diag(sqrt(l_i - sigma^2)) for the
                 k largest; the other D - k eigenvalues must equal min(l) (an isotropic noise floor).
    """
    check_number("latent_dim", latent_dim, low=1, integer=True)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        check_number(name, value, low=1, integer=True)
    check_seed(seed)
    if input_dim is not None:
        check_number("input_dim", input_dim, low=1, integer=True)
    if noise is not None:
        check_number("noise", noise, low=0, low_open=True)
    k, rng = int(latent_dim), np.random.default_rng(int(seed))

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
        name="gaussian", train=train, test=test, likelihood="gaussian", W=W32, b=b32, noise=sigma
    )
