"""Operations on posterior distributions and KL divergences, beside ``torch.distributions``' own layering: pure
functions of ``torch.distributions`` objects, no model code. It imports nothing of ibkit but ``checks``.

What the estimators need to know about a posterior q(z|x) goes through operations dispatched on its type, in the
style of ``torch.distributions.kl.register_kl`` (a decorator keyed by type, looked up through the MRO), never
through ``isinstance`` chains:

    rsample_from(q, eps)     the reparameterised sample at given standard normal noise
    add_noise(q, sigma)      q convolved with N(0, sigma^2 I): a probe channel on a stochastic code
    covariance(q, z)         Cov_q[z] [N, d, d], exact where known, else from samples z [k, N, d]
    diagonal_normal(q)       (loc, scale) [N, d] of a diagonal Gaussian q, else None (mi_bounds' fast path)

Rules for torch's own distributions live here: a diagonal Gaussian is ``Independent(Normal, 1)``, whose rules are
registered on ``Independent`` and check the base inside, returning ``NotImplemented`` for another base (the lookup
then goes on up the MRO); a full-covariance Gaussian is a ``MultivariateNormal``; ``Distribution`` holds the
fallbacks. A distribution of your own registers its rules where it is defined (``ibkit.models.iaf`` does so for
``IAFDistribution``):

    @rsample_from.register(MyFlow)
    def _(q: MyFlow, eps: Tensor) -> Tensor: ...

The KL helpers: ``kl_or_monte_carlo`` (torch's closed form where ``register_kl`` has one, else Monte Carlo),
``monte_carlo_kl`` and ``kl_samples`` (one estimate per sample, q's own lower-variance estimator where it has one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, kl_divergence

from ibkit.checks import distribution_name


class UnsupportedPosterior(ValueError, TypeError):
    """A posterior type a ``PosteriorOperation`` has no rule for (a ValueError for the user, a TypeError by nature)."""


class PosteriorOperation:
    """One operation on posterior distributions, ``op(q, *args)``, dispatched on ``type(q)``.

    Rules are registered with ``@op.register(SomeDistribution)``; a call walks ``type(q).__mro__`` and calls the
    first rule found (a rule on ``Distribution`` is the fallback for every type). A rule that returns
    ``NotImplemented`` (e.g. an ``Independent`` whose base is not ``Normal``) passes the call on up the MRO. No rule:
    ``UnsupportedPosterior`` listing the registered types.

    Args:
        name: the operation's name, for messages (``rsample_from``).
        doc: its docstring: what it returns, with shapes.
    """

    def __init__(self, name: str, doc: str):
        self.__name__ = name
        self.__doc__ = doc
        self._rules: dict[type, Callable] = {}

    def register(self, *types: type) -> Callable[[Callable], Callable]:
        """Decorator: ``fn(q, *args)`` becomes the rule for each of ``types`` (and their subclasses).

        Args:
            types: ``torch.distributions.Distribution`` subclasses.

        Returns:
            The decorator, which registers ``fn`` and returns it unchanged.

        Raises:
            TypeError: a type that is no ``Distribution`` subclass.
        """
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


# ---------------------------------------------------------------------------------------------------------------
# KL divergence: closed form where torch registers one, Monte Carlo otherwise


def kl_or_monte_carlo(q: Distribution, p: Distribution, z: Tensor | None = None, n_samples: int = 1) -> Tensor:
    """KL(q || p) per batch element, [N] for q with batch_shape [N].

    Uses torch's registered closed form (``@register_kl``) when there is one. Otherwise the Monte Carlo
    estimate, the mean of ``kl_samples`` over the given samples ``z`` [S, N, d] of q (reparameterised, so
    gradients flow) or ``n_samples`` fresh ones.

    Args:
        q: the distribution the expectation is under, batch_shape [N], event_shape [d].
        p: the reference distribution, event_shape [d] (batch_shape broadcastable to [N]).
        z: samples [S, N, d] of q for the Monte Carlo estimate, or None to draw ``n_samples``.
        n_samples: how many to draw when z is None.

    Returns:
        KL(q || p) [N], in nats.
    """
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return monte_carlo_kl(q, p, z, n_samples)


def monte_carlo_kl(q: Distribution, p: Distribution, z: Tensor | None = None, n_samples: int = 1) -> Tensor:
    """Unbiased estimate of KL(q || p) = E_q[log q(z) - log p(z)], the mean of ``kl_samples`` over its samples.

    Args:
        q, p, z, n_samples: as for ``kl_samples``.

    Returns:
        The estimate [N], in nats.
    """
    return kl_samples(q, p, z, n_samples).mean(0)


def kl_samples(q: Distribution, p: Distribution, z: Tensor | None = None, n_samples: int = 1) -> Tensor:
    """One unbiased estimate of KL(q || p) per sample: q's own lower-variance estimator ``q.kl_samples(p, z)`` where
    it has one (an IAF: its base's closed-form KL plus the flow's correction, ``IAFDistribution.kl_samples``), else
    the log ratio log q(z_s) - log p(z_s).

    Args:
        q: batch_shape [N], event_shape [d].
        p: event_shape [d].
        z: samples [S, N, d] of q, or None to draw ``n_samples`` (reparameterised where q allows).
        n_samples: how many to draw when z is None.

    Returns:
        The estimates [S, N], in nats.
    """
    if z is None:
        z = q.rsample((n_samples,)) if q.has_rsample else q.sample((n_samples,))
    own = getattr(q, "kl_samples", None)
    return own(p, z) if callable(own) else q.log_prob(z) - p.log_prob(z)


__all__ = ["PosteriorOperation", "UnsupportedPosterior", "rsample_from", "add_noise", "covariance",
           "diagonal_normal", "kl_or_monte_carlo", "monte_carlo_kl", "kl_samples"]
