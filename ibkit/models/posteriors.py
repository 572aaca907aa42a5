"""Posterior families q(z|x): each maps the encoder's output to a ``torch.distributions`` object, and names the
prior N(0, I) in the form torch has a closed-form KL against.

Registry of families: ``POSTERIORS = {"diagonal": ..., "full": ..., "iaf": ...}``.

What the estimators need to know about a posterior's distribution goes through operations dispatched on its type,
in the style of ``torch.distributions.kl.register_kl`` (a decorator keyed by type, looked up through the MRO),
never through ``isinstance`` chains:

    rsample_from(q, eps)     the reparameterised sample at given standard normal noise
    add_noise(q, sigma)      q convolved with N(0, sigma^2 I): a probe channel on a stochastic code
    covariance(q, z)         Cov_q[z] [N, d, d], exact where known, else from samples z [k, N, d]
    diagonal_normal(q)       (loc, scale) [N, d] of a diagonal Gaussian q, else None (mi_bounds' fast path)

A family of your own registers its rules: ``@rsample_from.register(MyFlow) def _(q, eps): ...``. A diagonal
Gaussian is ``Independent(Normal, 1)``: its rules are registered on ``Independent`` and check the base inside,
returning ``NotImplemented`` for another base, which makes the lookup go on up the MRO.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, kl_divergence

from ibkit.checks import distribution_name
from ibkit.divergence import kl_or_monte_carlo
from ibkit.models.checkpoint import FORMAT
from ibkit.models.iaf import IAFDistribution, IAFStep, iaf_context_dim, iaf_width


class UnsupportedPosterior(ValueError, TypeError):
    """A posterior type a ``PosteriorOperation`` has no rule for (a ValueError for the user, a TypeError by nature)."""


class PosteriorOperation:
    """One operation on posterior distributions, ``op(q, *args)``, dispatched on ``type(q)``.

    Rules are registered with ``@op.register(SomeDistribution)``; a call walks ``type(q).__mro__`` and calls the
    first rule found (a rule on ``Distribution`` is the fallback for every type). A rule that returns
    ``NotImplemented`` (e.g. an ``Independent`` whose base is not ``Normal``) passes the call on up the MRO. No rule:
    ``UnsupportedPosterior`` listing the registered types.
    """

    def __init__(self, name: str, doc: str):
        self.__name__ = name
        self.__doc__ = doc
        self._rules: dict[type, Callable] = {}

    def register(self, *types: type) -> Callable[[Callable], Callable]:
        """Decorator: ``fn(q, *args)`` becomes the rule for each of ``types`` (and their subclasses)."""
        for t in types:
            if not (isinstance(t, type) and issubclass(t, Distribution)):
                raise TypeError(f"{self.__name__}.register expects Distribution subclasses; got {t!r}")

        def decorator(fn: Callable) -> Callable:
            for t in types:
                self._rules[t] = fn
            return fn

        return decorator

    def registered(self) -> list[str]:
        """The names of the types with a rule, in registration order."""
        return [t.__name__ for t in self._rules]

    def __call__(self, q: Distribution, *args):
        for cls in type(q).__mro__:
            rule = self._rules.get(cls)
            if rule is not None:
                out = rule(q, *args)
                if out is not NotImplemented:
                    return out
        raise UnsupportedPosterior(
            f"{self.__name__} has no rule for {distribution_name(q)}; it knows: {', '.join(self.registered())} "
            f"(a diagonal Gaussian is Independent(Normal(loc, scale), 1)); register one with "
            f"@{self.__name__}.register({type(q).__name__})"
        )

    def __repr__(self) -> str:
        return f"<PosteriorOperation {self.__name__}: {', '.join(self.registered())}>"


def _diagonal_base(q: Independent) -> Normal | None:
    """The Normal inside a diagonal Gaussian Independent(Normal, 1), else None."""
    base = q.base_dist
    return base if isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1 else None


class PosteriorFamily(nn.Module):
    """Turns encoder features [N, n_params] into q(z|x) with batch_shape [N], event_shape [d]."""

    def __init__(self, latent_dim: int, **options):
        super().__init__()
        self.latent_dim = latent_dim

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        """Width of the encoder output this family consumes for a d-dimensional latent."""
        raise NotImplementedError

    def widen(self, head: nn.Linear) -> nn.Linear:
        """The encoder's last layer, built with the diagonal family's 2d outputs (loc and log variance, which
        every family here reads first), widened to this family's ``n_params``: those rows as they are, the extra
        ones from ``extra_rows``. Called after the rest of the model is built, so that one seed gives every family
        the same decoder and the same loc and variance outputs, and a family's extra draws disturb nothing."""
        extra = self.n_params(self.latent_dim) - head.out_features
        if extra <= 0:
            return head
        wide = nn.utils.skip_init(nn.Linear, head.in_features, head.out_features + extra)  # draws nothing
        weight, bias = self.extra_rows(head.in_features, extra)
        with torch.no_grad():
            wide.weight.copy_(torch.cat([head.weight, weight]))
            wide.bias.copy_(torch.cat([head.bias, bias]))
        return wide

    def extra_rows(self, in_features: int, extra: int) -> tuple[Tensor, Tensor]:
        """The initial weight [extra, in] and bias [extra] of the family's outputs beyond loc and log variance:
        PyTorch's default initialisation of a linear layer."""
        layer = nn.Linear(in_features, extra)
        return layer.weight.detach(), layer.bias.detach()

    def read_format(self, version: int) -> None:
        """Take the parameterisation that weights saved in checkpoint format ``version`` were trained with."""

    def written_format(self) -> int:
        """The checkpoint format whose parameterisation this family has: the current one, unless ``read_format``
        set an older one."""
        return FORMAT

    def prior(self, loc: Tensor, scale: Tensor) -> Distribution:
        """p(z) = N(loc, diag(scale^2)) (loc, scale [d]) as a diagonal Normal."""
        return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)

    def kl_terms(self, q: Distribution, p: Distribution, z: Tensor) -> Tensor:
        """KL(q || p) [N, G] in the groups of latents free bits clip (``group_sizes``): one group of all d here,
        closed form where torch has it, else Monte Carlo at the samples z [1, N, d]."""
        return kl_or_monte_carlo(q, p, z).unsqueeze(-1)

    def group_sizes(self) -> Tensor:
        """The number of latent units in each of ``kl_terms``' groups [G]."""
        return torch.tensor([float(self.latent_dim)])


class DiagonalGaussian(PosteriorFamily):
    """Mean-field Gaussian q(z|x) = N(mu(x), diag(exp(logvar(x)))) (Kingma & Welling 2014)."""

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim

    def kl_terms(self, q: Distribution, p: Distribution, z: Tensor) -> Tensor:
        """KL(q || p) per latent dimension [N, d], in closed form (q and p are diagonal Normals)."""
        return kl_divergence(typing.cast(Independent, q).base_dist, typing.cast(Independent, p).base_dist)

    def group_sizes(self) -> Tensor:
        return torch.ones(self.latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        mu, logvar = h.chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)


class IAF(PosteriorFamily):
    """Inverse autoregressive flow (Kingma et al. 2016): a diagonal Gaussian and ``flow_steps`` MADE steps with
    reversed orderings between steps, conditioned on a context from the encoder (see ``ibkit.models.iaf``).
    Encoder output: loc [d], log variance [d], context [c]. The steps start as the identity, so with one seed q
    starts as the diagonal family's. Its KL has no closed form: the rate is the base's closed-form KL plus a Monte
    Carlo correction for the flow (``IAFDistribution.kl_samples``), exact while the flow is the identity."""

    def __init__(self, latent_dim: int, flow_steps: int = 2, **options):
        super().__init__(latent_dim)
        self.steps = nn.ModuleList(
            IAFStep(latent_dim, iaf_context_dim(latent_dim), iaf_width(latent_dim), reverse=t % 2 == 1)
            for t in range(flow_steps))

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim + iaf_context_dim(latent_dim)

    def read_format(self, version: int) -> None:
        """Before format 3 the steps were not divided by their starting gate (``IAFStep.legacy``)."""
        for step in typing.cast("list[IAFStep]", self.steps):
            step.legacy = version < 3

    def written_format(self) -> int:
        return 2 if any(step.legacy for step in self.steps) else FORMAT

    def forward(self, h: Tensor) -> Distribution:
        d = self.latent_dim
        loc, logvar, context = h.split([d, d, h.shape[-1] - 2 * d], dim=-1)
        return IAFDistribution(loc, torch.exp(0.5 * logvar), context, self.steps)


class FullGaussian(PosteriorFamily):
    """Full-covariance Gaussian q(z|x) = N(mu(x), L(x) L(x)^T) with L lower triangular: a linear IAF (Kingma et al.
    2016, sec. 3). It can hold the correlations the true posterior has given x (Berkson's paradox) that the
    diagonal family cannot. Encoder output: mu [d], a log variance v [d], and the d(d-1)/2 entries of a strictly
    lower-triangular B; then

        L = diag(sigma) (I + B),   sigma = exp(v / 2),   so   Cov = diag(sigma) (I + B)(I + B)^T diag(sigma):

    the diagonal of L is the diagonal family's sigma, and the off-diagonal entries are in units of their row's
    sigma, so that the correlations (set by B alone) do not depend on the scales. B starts at zero
    (``extra_rows``): with one seed this family starts from exactly the diagonal family's q and decoder.

    On MNIST (d = 8, beta = 1, 100 epochs) the earlier parameterisation, diag(L) = exp(v) with absolute
    off-diagonal entries drawn at PyTorch's default initialisation, trained to a test ELBO 5 nats below the
    diagonal family's, and a train ELBO 6 below: absolute off-diagonals take Adam steps as large as the
    posterior's own scale, and the posteriors it reached had condition numbers over 1,000. This one ends above
    the diagonal family (``experiments/posterior_families/diagnosis.py`` measures each cause on its own).

    ``legacy=True`` is that earlier parameterisation, which checkpoints of format 1 were trained with.
    """

    def __init__(self, latent_dim: int, legacy: bool = False, **options):
        super().__init__(latent_dim)
        self.legacy = legacy
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        place = torch.zeros(len(rows), latent_dim * latent_dim)  # one-hot: entry k goes below the diagonal
        place[torch.arange(len(rows)), rows * latent_dim + cols] = 1.0
        self.register_buffer("_place", place, persistent=False)

    @classmethod
    def n_params(cls, latent_dim: int) -> int:
        return 2 * latent_dim + latent_dim * (latent_dim - 1) // 2

    def read_format(self, version: int) -> None:
        """Before format 2 this family was the legacy parameterisation."""
        self.legacy = version < 2

    def written_format(self) -> int:
        return 1 if self.legacy else FORMAT

    def extra_rows(self, in_features: int, extra: int) -> tuple[Tensor, Tensor]:
        """B starts at zero: q starts as the diagonal family's."""
        return torch.zeros(extra, in_features), torch.zeros(extra)

    def forward(self, h: Tensor) -> Distribution:
        d = self.latent_dim
        mu, logvar, below = h.split([d, d, d * (d - 1) // 2], dim=-1)
        # placed by a 0/1 matrix product (exact, and out of place, so it also runs under vmap for fit_many)
        b = (below @ self._place.to(h.dtype)).unflatten(-1, (d, d))
        if self.legacy:
            return MultivariateNormal(mu, scale_tril=b + torch.diag_embed(torch.exp(logvar)), validate_args=False)
        sigma = torch.exp(0.5 * logvar)
        return MultivariateNormal(mu, scale_tril=sigma.unsqueeze(-1) * b + torch.diag_embed(sigma),
                                  validate_args=False)

    def prior(self, loc: Tensor, scale: Tensor) -> Distribution:
        """p(z) as a MultivariateNormal, so KL(q || p) is torch's closed form."""
        return MultivariateNormal(loc, scale_tril=torch.diag(scale), validate_args=False)


rsample_from = PosteriorOperation("rsample_from", """rsample_from(q, eps): the reparameterised sample of q
[S, N, d] at the standard normal noise eps [S, N, d], what ``q.rsample`` returns when it draws that eps:
loc + scale * eps (diagonal Gaussian), loc + L eps (full), an IAF's steps applied to its base sample.""")

add_noise = PosteriorOperation("add_noise", """add_noise(q, sigma): the distribution of z + sigma * eps, z ~ q,
eps ~ N(0, I): a Gaussian q's covariance gains sigma^2 I (a probe channel on top of the model's own noise).""")

covariance = PosteriorOperation("covariance", """covariance(q, z): Cov_q[z] [N, d, d] in float64, exact for the
Gaussian families; for other families the sample covariance of z [k, N, d] (k >= 2 draws from q).""")

diagonal_normal = PosteriorOperation("diagonal_normal", """diagonal_normal(q): (loc, scale) [N, d] when q is a
diagonal Gaussian N(loc, diag(scale^2)), else None. Decides whether closed-form per-dimension quantities (the
fast path of ``mi_bounds``, ``kl_per_dim``) apply.""")


@rsample_from.register(Independent)
def _rsample_diagonal(q: Independent, eps: Tensor):
    base = _diagonal_base(q)
    return NotImplemented if base is None else base.loc + eps * base.scale


@rsample_from.register(MultivariateNormal)
def _rsample_full(q: MultivariateNormal, eps: Tensor) -> Tensor:
    return q.loc + torch.matmul(q.scale_tril, eps.unsqueeze(-1)).squeeze(-1)


@rsample_from.register(IAFDistribution)
def _rsample_iaf(q: IAFDistribution, eps: Tensor) -> Tensor:
    return q.rsample_from(eps)


@add_noise.register(Independent)
def _noisy_diagonal(q: Independent, sigma: float):
    base = _diagonal_base(q)
    if base is None:
        return NotImplemented
    scale = (base.scale.pow(2) + sigma**2).sqrt()
    return Independent(Normal(base.loc, scale, validate_args=False), 1, validate_args=False)


@add_noise.register(MultivariateNormal)
def _noisy_full(q: MultivariateNormal, sigma: float) -> MultivariateNormal:
    eye = torch.eye(q.event_shape[0], dtype=q.loc.dtype, device=q.loc.device)
    return MultivariateNormal(q.loc, covariance_matrix=q.covariance_matrix + sigma**2 * eye, validate_args=False)


@covariance.register(Independent)
def _covariance_diagonal(q: Independent, z: Tensor):
    base = _diagonal_base(q)
    return NotImplemented if base is None else torch.diag_embed(base.scale.double().pow(2))


@covariance.register(MultivariateNormal)
def _covariance_full(q: MultivariateNormal, z: Tensor) -> Tensor:
    return q.covariance_matrix.double()


@covariance.register(Distribution)
def _covariance_of_samples(q: Distribution, z: Tensor) -> Tensor:
    if z.shape[0] < 2:
        raise ValueError(f"covariance of {distribution_name(q)} is estimated from samples: got {z.shape[0]}, "
                         "need at least 2")
    zc = z.double() - z.double().mean(0)
    return torch.einsum("kni,knj->nij", zc, zc) / (len(z) - 1)


@diagonal_normal.register(Independent)
def _diagonal_parameters(q: Independent):
    base = _diagonal_base(q)
    return NotImplemented if base is None else (base.loc, base.scale)


@diagonal_normal.register(Distribution)
def _not_diagonal(q: Distribution) -> None:
    return None


POSTERIORS: dict[str, type[PosteriorFamily]] = {
    "diagonal": DiagonalGaussian,
    "full": FullGaussian,
    "iaf": IAF,
}
