"""The linear-Gaussian chain z_L -> ... -> z_1 -> x, every link linear-Gaussian, with its closed forms.

    z_L ~ N(0, I),    z_{l-1} = W_l z_l + s_{l-1} eps_{l-1}  (l = L, ..., 2),    x = W_1 z_1 + b + s_0 eps_0

(eps standard normal). Every joint is Gaussian, so log p(x), h(X), I(X;Z_l) for each layer, the prior and the exact
posterior over the whole code are closed forms (Bishop 2006, section 2.3). One link is probabilistic PCA (Tipping &
Bishop 1999); two links are the two-layer source of ``load("gaussian", latent_dims=(d1, d2))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ibkit.checks import check_data, check_number
from ibkit.data.gaussian.posteriors import TwoLayerPosteriors, diagonal_scale

_LOG_2PI = math.log(2 * math.pi)


def _log_normal64(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(x; mean, cov) per row in float64 via a Cholesky factor: x [N, D], mean [D], cov [D, D] -> [N] float64."""
    L = torch.linalg.cholesky(cov.double())
    r = torch.linalg.solve_triangular(L, (x.double() - mean.double()).T, upper=False)  # [D, N]
    logdet = 2 * torch.log(torch.diagonal(L)).sum()
    return -0.5 * (cov.shape[0] * _LOG_2PI + logdet + r.pow(2).sum(0))


def _logdet64(cov: Tensor) -> float:
    """log det of a symmetric positive-definite matrix [d, d] (float64)."""
    return float(torch.linalg.slogdet(cov.double())[1])


def _inverse64(precision: Tensor) -> Tensor:
    """The inverse [d, d] of a symmetric positive-definite matrix (float64), through its Cholesky factor."""
    return torch.cholesky_inverse(torch.linalg.cholesky(precision))


def _shape(value) -> object:
    """How an error message shows a value that should have been a tensor: its shape, else its type."""
    return list(value.shape) if isinstance(value, Tensor) else type(value).__name__


@dataclass(frozen=True, eq=False, repr=False)
class LinearGaussianChain:
    """p(z_L) = N(0, I), p(z_{l-1} | z_l) = N(W_l z_l, s_{l-1}^2 I), p(x | z_1) = N(W_1 z_1 + b, s_0^2 I).

    Follows the ibkit model protocol over the concatenated code z = (z_1, ..., z_L) [d_1 + ... + d_L], z_1 (the
    layer nearest the data) first: ``prior`` is the joint p(z), ``posterior`` the exact p(z | x), ``log_likelihood``
    log p(x | z_1). All it returns is float32; the closed forms are computed in float64 from the float32
    parameters. With one link it is probabilistic PCA: p(z) = N(0, I_k), p(x | z) = N(W z + b, sigma^2 I).

    The names of the one- and two-link sources read the same numbers: ``W`` = W_1, ``b``, ``noise`` = s_0, and
    with two links or more ``A`` = W_2, ``layer_noise`` = s_1.

    Args:
        weights: (W_1 [D, d_1], W_2 [d_1, d_2], ..., W_L [d_{L-1}, d_L]) float32 loading matrices, the data's first.
        offset: b [D] float32, the mean of x.
        noises: (s_0, s_1, ..., s_{L-1}) > 0: s_0 the observation noise std of x given z_1, s_l that of z_l given
            z_{l+1}; one per link.

    Raises:
        ValueError: weights whose shapes do not chain, an offset not [D], or noises not one std > 0 per link.
    """

    weights: tuple[Tensor, ...]
    offset: Tensor
    noises: tuple[float, ...]

    def __post_init__(self):
        weights, noises = self.weights, self.noises
        if isinstance(weights, Tensor) or not isinstance(weights, Sequence) or len(weights) == 0:
            raise ValueError(f"weights must be a non-empty sequence of tensors (W_1 [D, d_1], ...); got {weights!r}")
        for i, W in enumerate(weights):
            if i == 0 and (not isinstance(W, Tensor) or W.dim() != 2):
                raise ValueError(f"weights[0] must be a tensor [D, d1]; got {_shape(W)}")
            rows = weights[i - 1].shape[1] if i else W.shape[0]
            if not isinstance(W, Tensor) or W.dim() != 2 or W.shape[0] != rows:
                raise ValueError(
                    f"weights[{i}] must be a tensor [d{i}, d{i + 1}] = [{rows}, d{i + 1}] "
                    f"(d{i} = weights[{i - 1}].shape[1]); got {_shape(W)}"
                )
        D = weights[0].shape[0]
        if not isinstance(self.offset, Tensor) or self.offset.shape != (D,):
            raise ValueError(f"offset must be a tensor [D] = [{D}]; got {_shape(self.offset)}")
        if isinstance(noises, (str, bytes)) or not isinstance(noises, Sequence) or len(noises) != len(weights):
            raise ValueError(
                f"noises must be a sequence of {len(weights)} standard deviations, one per link of weights; "
                f"got {noises!r}"
            )
        for i, s in enumerate(noises):
            check_number(f"noises[{i}]", s, low=0, low_open=True)
        object.__setattr__(self, "weights", tuple(W.to(torch.float32) for W in weights))
        object.__setattr__(self, "offset", self.offset.to(torch.float32))
        object.__setattr__(self, "noises", tuple(float(s) for s in noises))

    # ----------------------------------------------------------------------------------------------------------
    # shape and the one- and two-link names

    @property
    def depth(self) -> int:
        """L, the number of latent layers (links)."""
        return len(self.weights)

    @property
    def input_dim(self) -> int:
        """D, the width of x."""
        return int(self.weights[0].shape[0])

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """(d_1, ..., d_L), nearest the data first."""
        return tuple(int(W.shape[1]) for W in self.weights)

    @property
    def latent_dim(self) -> int:
        """d_1 + ... + d_L, the width of the concatenated code z."""
        return sum(self.latent_dims)

    @property
    def W(self) -> Tensor:
        """W_1 [D, d_1], the loading matrix of x."""
        return self.weights[0]

    @property
    def b(self) -> Tensor:
        """b [D], the offset of x."""
        return self.offset

    @property
    def noise(self) -> float:
        """s_0, the observation noise std."""
        return self.noises[0]

    @property
    def A(self) -> Tensor:
        """W_2 [d_1, d_2], the loading matrix of z_1 (two links or more)."""
        return self.weights[self._second_link("A")]

    @property
    def layer_noise(self) -> float:
        """s_1, the std of z_1 given z_2 (two links or more)."""
        return self.noises[self._second_link("layer_noise")]

    def _second_link(self, name: str) -> int:
        if self.depth < 2:
            raise AttributeError(f"{name} is the second link of a chain, but this chain has one (latent_dims="
                                 f"{self.latent_dims}); build it with two links (latent_dims=(d1, d2))")
        return 1

    def __repr__(self) -> str:
        return (f"LinearGaussianChain(input_dim={self.input_dim}, latent_dims={self.latent_dims}, "
                f"noises={self.noises})")

    # ----------------------------------------------------------------------------------------------------------
    # covariances and precisions, float64

    def _covariance64(self, layer: int = 0, given: int | None = None) -> Tensor:
        """Cov(z_layer | z_given) [d, d] float64 (z_0 = x), the marginal Cov(z_layer) when ``given`` is None: from
        Cov(z_given | z_given) = 0 (or Cov(z_L) = I) down the links, Cov(z_{l-1} | .) = W_l Cov(z_l | .) W_l^T +
        s_{l-1}^2 I."""
        top = self.depth if given is None else given
        d = self.latent_dims[top - 1]
        cov = torch.eye(d, dtype=torch.float64) if given is None else torch.zeros(d, d, dtype=torch.float64)
        for link in range(top, layer, -1):
            W = self.weights[link - 1].double()
            cov = W @ cov @ W.T + self.noises[link - 1] ** 2 * torch.eye(W.shape[0], dtype=torch.float64)
        return cov

    def _conditional_logdet(self, layer: int) -> float:
        """log det Cov(x | z_layer); Cov(x | z_1) = s_0^2 I in closed form."""
        if layer == 1:
            return 2 * self.input_dim * math.log(self.noise)
        return _logdet64(self._covariance64(0, given=layer))

    def _blocks(self) -> list[slice]:
        """Where each layer sits in the concatenated code: z[..., blocks[l - 1]] is z_l."""
        ends = torch.tensor(self.latent_dims).cumsum(0).tolist()
        return [slice(end - d, end) for end, d in zip(ends, self.latent_dims, strict=True)]

    def _precision64(self, prior: bool = False) -> Tensor:
        """The precision of z = (z_1, ..., z_L) [d, d] float64, block tridiagonal (Bishop 2006, eq. 2.114): block
        (l, l) is I / s_l^2 (I for the top layer) + W_l^T W_l / s_{l-1}^2, block (l - 1, l) is -W_l / s_{l-1}^2.
        That is the posterior precision of p(z | x); ``prior=True``: the prior's, without x's W_1^T W_1 / s_0^2."""
        blocks = self._blocks()
        P = torch.zeros(self.latent_dim, self.latent_dim, dtype=torch.float64)
        for link in range(1, self.depth + 1):
            W, t2, here = self.weights[link - 1].double(), self.noises[link - 1] ** 2, blocks[link - 1]
            eye = torch.eye(W.shape[1], dtype=torch.float64)
            own = eye if link == self.depth else eye / self.noises[link] ** 2
            P[here, here] = own if prior and link == 1 else own + W.T @ W / t2
            if link > 1:
                below = blocks[link - 2]
                P[below, here] = -W / t2
                P[here, below] = -W.T / t2
        return P

    def _prior_covariance64(self) -> Tensor:
        """Cov(z) [d, d] float64: Cov(z_l) on the diagonal, Cov(z_l, z_m) = W_{l+1} ... W_m Cov(z_m) above it."""
        blocks = self._blocks()
        C = torch.zeros(self.latent_dim, self.latent_dim, dtype=torch.float64)
        for m in range(1, self.depth + 1):
            cross = self._covariance64(m)
            C[blocks[m - 1], blocks[m - 1]] = cross
            for layer in range(m - 1, 0, -1):
                cross = self.weights[layer].double() @ cross  # Cov(z_layer, z_m)
                C[blocks[layer - 1], blocks[m - 1]] = cross
                C[blocks[m - 1], blocks[layer - 1]] = cross.T
        return C

    # ----------------------------------------------------------------------------------------------------------
    # the marginal p(x) and the information

    def covariance(self) -> Tensor:
        """Cov x = W_1 Cov(z_1) W_1^T + s_0^2 I: [D, D] float32, the covariance of the marginal p(x) = N(b, Cov x)
        (W W^T + sigma^2 I for one link).

        Returns:
            [D, D] float32, Cov x.
        """
        return self._covariance64().float()

    def log_px(self, x: Tensor) -> Tensor:
        """log p(x) = log N(x; b, Cov x) per row, in float64 via a Cholesky factor: x [N, D] -> [N] float32.

        Args:
            x: [N, D] rows.

        Returns:
            [N] float32, log p(x) of each row in nats.
        """
        x = check_data(x, "x", self.input_dim)
        return _log_normal64(x, self.offset, self._covariance64()).float()

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e Cov x) in nats.

        Returns:
            h(X) in nats.
        """
        return float(0.5 * (self.input_dim * (_LOG_2PI + 1) + _logdet64(self._covariance64())))

    def mutual_information(self) -> float:
        """I(X;Z) between x and the whole code = I(X;Z_1) (x depends on z only through z_1) = E_x KL(p(z|x) || p(z))
        = 1/2 [log det(posterior precision) - log det(prior precision)] in nats; for one link
        1/2 log det(I + W^T W / sigma^2) (the prior precision is I).

        Returns:
            I(X;Z) in nats.
        """
        return 0.5 * (_logdet64(self._precision64()) - _logdet64(self._precision64(prior=True)))

    def layer_information(self) -> tuple[float, ...]:
        """(I(X;Z_1), ..., I(X;Z_L)) in nats, I(X;Z_l) = h(X) - h(X|Z_l) = 1/2 [log det Cov x - log det Cov(x|z_l)]
        with Cov(x|z_1) = s_0^2 I; non-increasing in l (data processing along z_L -> ... -> z_1 -> x).

        Returns:
            one I(X;Z_l) per layer, nearest the data first, in nats.
        """
        logdet = _logdet64(self._covariance64())
        return tuple(0.5 * (logdet - self._conditional_logdet(layer)) for layer in range(1, self.depth + 1))

    def conditional_information(self, layer: int = 1) -> float:
        """I(X;Z_l|Z_{l+1}) = I(X;Z_l) - I(X;Z_{l+1}) in nats (chain rule; Z_{l+1} acts on x through Z_l), l =
        ``layer`` in 1..L-1.

        Args:
            layer: l in 1..L-1.

        Returns:
            I(X;Z_l|Z_{l+1}) in nats.

        Raises:
            ValueError: a chain of one link, or a layer outside 1..L-1.
        """
        self._check_layer(layer, last=self.depth - 1)
        info = self.layer_information()
        return info[layer - 1] - info[layer]

    def latent_information(self, layer: int = 1) -> float:
        """I(Z_l;Z_{l+1}) = h(Z_l) - h(Z_l|Z_{l+1}) = 1/2 log det Cov(z_l) - d_l log s_l in nats, l = ``layer`` in
        1..L-1 (for two links 1/2 log det(A A^T + s1^2 I) - d1/2 log s1^2).

        Args:
            layer: l in 1..L-1.

        Returns:
            I(Z_l;Z_{l+1}) in nats.

        Raises:
            ValueError: a chain of one link, or a layer outside 1..L-1.
        """
        self._check_layer(layer, last=self.depth - 1)
        return 0.5 * _logdet64(self._covariance64(layer)) - self.latent_dims[layer - 1] * math.log(self.noises[layer])

    def _check_layer(self, layer, last: int) -> None:
        if last < 1:
            raise ValueError(f"this chain has one latent layer (latent_dims={self.latent_dims}); the information "
                             "between layers needs two (latent_dims=(d1, d2))")
        check_number("layer", layer, low=1, high=last, integer=True)

    # ----------------------------------------------------------------------------------------------------------
    # the model protocol

    def prior(self) -> MultivariateNormal:
        """p(z) = N(0, Cov(z)): event_shape [d_1 + ... + d_L], float32 (N(0, I_k) for one link), a
        MultivariateNormal so that KL(posterior || prior) is analytic.

        Returns:
            p(z), event_shape [d_1 + ... + d_L].
        """
        scale_tril = torch.linalg.cholesky(self._prior_covariance64()).float()
        return MultivariateNormal(torch.zeros(self.latent_dim), scale_tril=scale_tril)

    def posterior(self, x: Tensor) -> MultivariateNormal:
        """The exact p(z | x) = N(S [W_1^T (x - b) / s_0^2; 0], S), S the inverse of the posterior precision
        (Bishop 2006, eq. 2.116-2.117; Tipping & Bishop 1999, eq. 6-7 for one link): x [N, D] -> batch_shape [N],
        event_shape [d_1 + ... + d_L], float32.

        Args:
            x: [N, D] rows.

        Returns:
            p(z | x), batch_shape [N], event_shape [d_1 + ... + d_L].
        """
        x = check_data(x, "x", self.input_dim).double()
        cov = _inverse64(self._precision64())  # [d, d]
        d1 = self.latent_dims[0]
        mean = (x - self.offset.double()) @ self.W.double() @ cov[:d1] / self.noise**2  # [N, d]
        scale_tril = torch.linalg.cholesky(cov).float().expand(x.shape[0], -1, -1)
        return MultivariateNormal(mean.float(), scale_tril=scale_tril)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z_1) = sum_d log N(x_d; (W_1 z_1 + b)_d, s_0^2), z_1 = z[..., :d_1]:
        x [N, D], z [S, N, d_1 + ... + d_L] -> [S, N] float32.

        Args:
            x: [N, D] rows.
            z: [S, N, d_1 + ... + d_L] codes, S samples per row.

        Returns:
            [S, N] float32, log p(x | z_1) in nats.

        Raises:
            ValueError: x or z of the wrong shape.
        """
        x = check_data(x, "x", self.input_dim)
        if not isinstance(z, Tensor) or z.dim() < 2 or z.shape[-1] != self.latent_dim or z.shape[-2] != x.shape[0]:
            width = "k" if self.depth == 1 else " + ".join(f"d{i + 1}" for i in range(self.depth))
            raise ValueError(f"z must have shape [S, N, {width}] = [S, {x.shape[0]}, {self.latent_dim}]; "
                             f"got {_shape(z)}")
        mean = z[..., : self.latent_dims[0]].to(torch.float32) @ self.W.T + self.offset  # [S, N, D]
        r = (x - mean) / self.noise
        return -0.5 * r.pow(2).sum(-1) - self.input_dim * (math.log(self.noise) + 0.5 * _LOG_2PI)

    # ----------------------------------------------------------------------------------------------------------
    # two links: the exact posterior's factors

    def layer_posteriors(self, x: Tensor) -> TwoLayerPosteriors:
        """The exact posterior p(z1, z2 | x) of a two-link chain for x [N, D], factored top-down and bottom-up into
        diagonal Gaussians; the formulas are in ``TwoLayerPosteriors``. A ValueError if the chain has another depth
        or a factor is not diagonal (W or A without the structure ``load_gaussian`` draws).

        Args:
            x: [N, D] rows.

        Returns:
            the ``TwoLayerPosteriors`` of the N rows.

        Raises:
            ValueError: a chain of another depth than two, or a factor that is not diagonal.
        """
        if self.depth != 2:
            raise ValueError(f"layer_posteriors factors a two-layer posterior, but this chain has latent_dims="
                             f"{self.latent_dims}; use posterior(x) for the joint")
        x = check_data(x, "x", self.input_dim)
        W, A, s2, t2 = self.W.double(), self.A.double(), self.noise**2, self.layer_noise**2
        d1, d2 = self.latent_dims
        I1, I2 = torch.eye(d1, dtype=torch.float64), torch.eye(d2, dtype=torch.float64)
        centred = x.double() - self.offset.double()  # [N, D]
        # top-down: p(z2|x) from x | z2 ~ N(W A z2 + b, Cov(x|z2)); p(z1|z2, x) from z1 | z2 ~ N(A z2, s1^2 I)
        CinvW = torch.linalg.solve(self._covariance64(0, given=2), W)  # Cov(x|z2)^{-1} W [D, d1]
        S2 = _inverse64(I2 + A.T @ W.T @ CinvW @ A)  # [d2, d2]
        K = S2 @ A.T @ CinvW.T  # [d2, D]
        S12 = _inverse64(I1 / t2 + W.T @ W / s2)  # [d1, d1]
        P, R = S12 @ W.T / s2, S12 @ A / t2  # [d1, D], [d1, d2]
        # bottom-up: p(z1|x) from z1 ~ N(0, Cov(z1)); p(z2|z1) from z2 ~ N(0, I)
        S1 = _inverse64(_inverse64(self._covariance64(1)) + W.T @ W / s2)  # [d1, d1]
        G = S1 @ W.T / s2  # [d1, D]
        S21 = _inverse64(I2 + A.T @ A / t2)  # [d2, d2]
        M = S21 @ A.T / t2  # [d2, d1]
        return TwoLayerPosteriors(
            z2_loc=(centred @ K.T).float(),
            z2_scale=diagonal_scale("p(z2|x)", S2),
            z1_offset=(centred @ P.T).float(),
            R=R.float(),
            z1_given_z2_scale=diagonal_scale("p(z1|z2, x)", S12),
            z1_loc=(centred @ G.T).float(),
            z1_scale=diagonal_scale("p(z1|x)", S1),
            M=M.float(),
            z2_given_z1_scale=diagonal_scale("p(z2|z1)", S21),
            K=K.float(),
            P=P.float(),
            G=G.float(),
        )


def LinearGaussianModel(W: Tensor, b: Tensor, noise: float) -> LinearGaussianChain:
    """The chain of one link, probabilistic PCA: p(z) = N(0, I_k), p(x|z) = N(W z + b, sigma^2 I_D).

    Args:
        W: [D, k] loading matrix.
        b: [D] offset.
        noise: sigma > 0, the observation noise std.

    Returns:
        ``LinearGaussianChain((W,), b, (noise,))``.
    """
    return LinearGaussianChain((W,), b, (noise,))


def TwoLayerGaussianModel(W: Tensor, b: Tensor, noise: float, A: Tensor, layer_noise: float) -> LinearGaussianChain:
    """The chain of two links: p(z2) = N(0, I), p(z1|z2) = N(A z2, s1^2 I), p(x|z1) = N(W z1 + b, s^2 I).

    Args:
        W: [D, d1] loading matrix of x.
        b: [D] offset.
        noise: s > 0, the observation noise std.
        A: [d1, d2] loading matrix of z1.
        layer_noise: s1 > 0, the std of z1 given z2.

    Returns:
        ``LinearGaussianChain((W, A), b, (noise, layer_noise))``.
    """
    return LinearGaussianChain((W, A), b, (noise, layer_noise))
