"""Plain torch modules as a protocol model: ``wrap(encoder, decoder, likelihood=...)``.

A VAE written elsewhere is an encoder whose output parameterises q(z|x), a decoder whose output parameterises
p(x|z), and a prior. ``wrap`` adds what the estimators and ``fit`` need around the two modules and changes neither:

    posterior(x), prior(), log_likelihood(x, z)   the model protocol (``ibkit.interface``)
    encode(x), decode(z)                          the code's mean, the likelihood's mean (``mse``)
    posterior_params(x), posterior_from_params(h) the encoder's output, for ``amortization_gap``
    forward(x, eps)                               per-example loss (the negative ELBO), rate and distortion: ``fit``

The named posterior families read the encoder's output as one tensor h [N, P]; a two-head encoder's (mu, logvar)
tuple and pythae's ``ModelOutput`` (embedding, log_covariance) are read as their concatenation [N, 2d]
(``encoder_params``), so everything after the encoder sees that one form.

Images are flattened at the boundary: the estimators see x [N, D]; the encoder sees x.view(N, *input_shape) and a
decoder's output [B, *shape] is read as [B, D]. A decoder takes codes [B, d] only, so the [S, N, d] samples of the
estimators reach it flattened, ``DECODER_ROWS`` rows at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ibkit.checks import check_choice
from ibkit.distributions import kl_or_monte_carlo, rsample_from
from ibkit.interface import ForwardOutput
from ibkit.models.likelihoods import Likelihood
from ibkit.models.posteriors import PosteriorFamily  # and with it the families "diagonal", "full", "iaf"
from ibkit.registry import LIKELIHOODS, POSTERIORS

DECODER_ROWS = 4096  # codes per decoder call (the estimators' chunks hold up to 16,384 (sample, row) pairs)


class CallableLikelihood(Likelihood):
    """A likelihood given as ``fn(decoder_output) -> Distribution`` over one example's data of ``shape`` (the
    decoder's own shape, e.g. (1, 28, 28)): log p(x|z) sums its log_prob over everything but the batch. Takes and
    gives flat tensors as every likelihood does: x [N, D], params [..., N, D] -> [..., N]."""

    def __init__(self, fn: Callable[[Tensor], Distribution], shape: tuple[int, ...]):
        super().__init__()
        self.fn, self.shape = fn, shape

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        shaped = params.reshape(-1, *self.shape)
        lp = self.fn(shaped).log_prob(x.expand_as(params).reshape(shaped.shape))
        return lp.reshape(*params.shape[:-1], -1).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return self.fn(params.reshape(-1, *self.shape)).mean.reshape(params.shape)


class WrappedModel(nn.Module):
    """An encoder and a decoder of the user's, with a posterior family, a likelihood and a prior: a latent-variable
    model (or, with ``posterior="none"``, a deterministic code) that every estimator measures and ``fit`` trains.

    Shapes: x [N, D] with D = prod(input_shape); z [S, N, d]. The encoder maps [N, *input_shape] to the posterior's
    parameters h [N, P] (diagonal: loc and log variance, P = 2d); the decoder maps [B, d] to the likelihood's
    parameters [B, *shape] with prod(shape) = D (Bernoulli: logits; Gaussian: the mean, unit variance).

    Made by ``wrap``, which checks its arguments.

    Args:
        encoder: the module from x [N, *input_shape] to the posterior's parameters.
        decoder: the module from codes [B, d] to the likelihood's parameters [B, *shape].
        likelihood: p(x|z) of the decoder's output.
        posterior: a posterior family (an ``nn.Module``, trained with the encoder) or a callable from the encoder's
            output to q(z|x).
        prior: p(z): None for N(0, I_d), a distribution, a callable returning one, or an ``nn.Module`` returning
            one (trained with the model).
        input_shape: the shape the encoder takes per example.
        latent_dim: d.
    """

    _prior_loc: Tensor  # [d] buffers of the default p(z)
    _prior_scale: Tensor

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, *, posterior,
                 prior, input_shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.input_shape, self.latent_dim = input_shape, latent_dim
        # a module (a named family, an IAF's steps) trains with the encoder; a learned prior (a VampPrior's
        # pseudo-inputs) with the model
        self.family = posterior if isinstance(posterior, nn.Module) else None
        self._posterior_fn = None if self.family is not None else posterior
        self.prior_module = prior if isinstance(prior, nn.Module) else None
        self._prior = None if self.prior_module is not None else prior
        self.register_buffer("_prior_loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("_prior_scale", torch.ones(latent_dim), persistent=False)

    @property
    def input_dim(self) -> int:
        """D, the width of the flattened data."""
        return math.prod(self.input_shape)

    @property
    def support(self):
        return getattr(self.likelihood, "support", None)

    def check_data(self, x: Tensor, name: str = "x") -> None:
        self.likelihood.check_data(x, name)

    # the code

    def posterior_params(self, x: Tensor) -> Tensor:
        """The encoder's output h [N, P] for x [N, D] (seen by the encoder as [N, *input_shape]); for a named family,
        a two-head output as one tensor (``encoder_params``).

        Args:
            x: [N, D] data.

        Returns:
            h [N, P] (or, for a callable posterior, the encoder's own output).
        """
        return _params_for(self.family, self.encoder(x.reshape(len(x), *self.input_shape)))

    def posterior_from_params(self, h: Tensor) -> Distribution:
        """q(z|x) from the encoder's output: batch_shape [N], event_shape [d].

        Args:
            h: the encoder's output (``posterior_params``).

        Returns:
            q(z|x), batch_shape [N], event_shape [d].
        """
        fn = self.family if self.family is not None else self._posterior_fn
        assert fn is not None  # a DeterministicWrappedModel has no posterior at all
        return fn(h)

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x): batch_shape [N], event_shape [d].

        Args:
            x: [N, D] data.

        Returns:
            q(z|x).
        """
        return self.posterior_from_params(self.posterior_params(x))

    def prior(self) -> Distribution:
        """p(z): the given prior, else N(0, I_d) in the form the named family has a closed-form KL against.

        Returns:
            p(z), event_shape [d].
        """
        if self.prior_module is not None:
            return self.prior_module()
        if self._prior is not None:
            return self._prior() if callable(self._prior) else self._prior
        if isinstance(self.family, PosteriorFamily):
            return self.family.prior(self._prior_loc, self._prior_scale)
        return Independent(Normal(self._prior_loc, self._prior_scale, validate_args=False), 1, validate_args=False)

    def encode(self, x: Tensor) -> Tensor:
        """The code [N, d]: the posterior mean, or the encoder's output for a deterministic code.

        Args:
            x: [N, D] data.

        Returns:
            [N, d] the code.
        """
        return self.posterior(x).mean

    # the decoder

    def decoder_params(self, z: Tensor) -> Tensor:
        """The decoder's output for codes z [..., d], flattened to [..., D]; the decoder sees [B, d], at most
        ``DECODER_ROWS`` rows at a time.

        Args:
            z: [..., d] codes.

        Returns:
            [..., D] the likelihood's parameters.
        """
        flat = z.reshape(-1, z.shape[-1])
        out = torch.cat([self.decoder(flat[i: i + DECODER_ROWS]).reshape(-1, self.input_dim)
                         for i in range(0, len(flat), DECODER_ROWS)])
        return out.reshape(*z.shape[:-1], self.input_dim)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for x [N, D] and z [..., N, d]: [..., N].

        Args:
            x: [N, D] data.
            z: [..., N, d] codes.

        Returns:
            [..., N] log p(x|z) in nats.
        """
        return self.likelihood.log_prob(x, self.decoder_params(z))

    def decode(self, z: Tensor) -> Tensor:
        """E[x|z] [..., N, D] for z [..., N, d].

        Args:
            z: [..., N, d] codes.

        Returns:
            [..., N, D] the likelihood's mean.
        """
        return self.likelihood.mean(self.decoder_params(z))

    def forward(self, x: Tensor, eps: Tensor | None = None) -> ForwardOutput:
        """Per-example distortion -log p(x|z), rate KL(q(z|x) || p(z)) and loss (their sum: the negative ELBO) of
        x [N, D], at z ~ q(z|x) drawn with the standard normal ``eps`` [1, N, d] when given (``fit``).

        Args:
            x: [N, D] data.
            eps: [1, N, d] standard normal noise, or None.

        Returns:
            ``ForwardOutput(distortion, rate, loss, z)``, each [N] but z [N, d].
        """
        q = self.posterior(x)
        z = q.rsample((1,)) if eps is None else rsample_from(q, eps)  # [1, N, d]
        distortion = -self.log_likelihood(x, z)[0]
        rate = kl_or_monte_carlo(q, self.prior(), z)
        return ForwardOutput(distortion, rate, distortion + rate, z[0])


class DeterministicWrappedModel(WrappedModel):
    """``posterior="none"``: the encoder's output is the code itself [N, d]; no posterior, prior or rate (the
    estimators measure it through a probe channel, ``ibkit.estimators.probe``)."""

    posterior = None  # type: ignore[assignment]  # not a latent-variable model: no q(z|x)
    prior = None  # type: ignore[assignment]

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior_params(x)

    def forward(self, x: Tensor, eps: Tensor | None = None) -> ForwardOutput:
        z = self.encode(x)
        distortion = -self.log_likelihood(x, z)
        return ForwardOutput(distortion, torch.full_like(distortion, math.nan), distortion, z)


def wrap(encoder: nn.Module, decoder: nn.Module, *, likelihood: str | Callable[[Tensor], Distribution],
         posterior: str | Callable[[Tensor], Distribution] = "diagonal", prior=None,
         input_shape: tuple[int, ...] | None = None) -> WrappedModel:
    """Turn plain torch modules into a model every estimator measures and ``ibkit.fit`` trains (the negative ELBO).

    The code's width d is read from one pass of a zero input through the encoder (in eval mode, no gradient).

    Args:
        encoder: a module from x [N, *input_shape] to the posterior's parameters [N, P]; for a named family also
            two heads [N, d] each, (mu, logvar) as a tuple or pythae's ModelOutput(embedding, log_covariance),
            read as the tensor [N, 2d] of their concatenation (``encoder_params``).
        decoder: a module from codes [B, d] to the likelihood's parameters [B, *shape], prod(shape) = D.
        likelihood: "bernoulli" (the decoder gives logits), "gaussian" (the decoder gives the mean; unit variance),
            or a callable from the decoder's output [B, *shape] to a ``torch.distributions`` object over the data
            (log_prob summed over the pixels).
        posterior: "diagonal" (the encoder's output split in halves, loc and log variance, as pythae and most VAE
            code do; P = 2d), "full" (loc, log variance and the strict lower triangle of a Cholesky factor;
            ``ibkit.models.posteriors.FullGaussian``), "iaf" (adds untrained flow steps: for training), "none"
            (the output is a deterministic code [N, d]), or a callable from the encoder's output to a distribution
            with batch_shape [N] and event_shape [d].
        prior: p(z): None for N(0, I_d); a distribution with event_shape [d]; or a callable returning one (a
            learned prior; an ``nn.Module`` trains with the model).
        input_shape: the shape the encoder takes per example, e.g. (1, 28, 28) for a conv encoder of MNIST; default
            (D,) with D the in_features of the encoder's first ``nn.Linear``.

    Returns:
        the ``WrappedModel`` (a ``DeterministicWrappedModel`` with ``posterior="none"``); the modules are used as
            they are, not copied.

    Raises:
        ValueError: an encoder or decoder that is no ``nn.Module``, an unknown likelihood or posterior, an input
            shape that cannot be read, or an encoder, posterior or prior whose output does not have the shapes
            above.
    """
    for name, module in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(module, nn.Module):
            raise ValueError(f"{name} is a {type(module).__name__}; wrap needs a torch.nn.Module")
    shape = _input_shape(encoder, input_shape)
    fn = _likelihood(likelihood, shape)
    posterior_names = (*POSTERIORS, "none")  # the registered families, read at the call
    if isinstance(posterior, str):
        check_choice("posterior", posterior, posterior_names)
    elif not callable(posterior):
        raise ValueError(f"posterior={posterior!r} is neither a family name ({', '.join(posterior_names)}) nor a "
                         "callable from the encoder's output to a distribution")
    h = _probe_encoder(encoder, shape)
    if posterior == "none":
        if not isinstance(h, Tensor) or h.dim() != 2:
            raise ValueError(f"posterior='none' needs an encoder whose output is a code [N, d]; got "
                             f"{_describe(h)}")
        return DeterministicWrappedModel(encoder, decoder, fn, posterior=None, prior=None, input_shape=shape,
                                         latent_dim=h.shape[-1])
    family = _family(posterior, encoder_params(h)) if isinstance(posterior, str) else posterior
    q = family(_params_for(family, h))
    if not isinstance(q, Distribution) or tuple(q.batch_shape) != (1,) or len(q.event_shape) != 1:
        raise ValueError(f"posterior gives {_describe(q)} for one example; it must give a torch distribution "
                         "with batch_shape [N] and event_shape [d] (a diagonal Gaussian is "
                         "Independent(Normal(loc, scale), 1))")
    model = WrappedModel(encoder, decoder, fn, posterior=family, prior=prior, input_shape=shape,
                         latent_dim=q.event_shape[0])
    if prior is not None:
        p = model.prior()
        if not isinstance(p, Distribution) or tuple(p.event_shape) != tuple(q.event_shape):
            raise ValueError(f"prior gives {_describe(p)}; it must be a distribution with event_shape "
                             f"[{q.event_shape[0]}], the posterior's")
    return model


def _input_shape(encoder: nn.Module, input_shape) -> tuple[int, ...]:
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else (input_shape,)
        if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ValueError(f"input_shape={input_shape!r} must be a tuple of positive ints, e.g. (1, 28, 28)")
        return shape
    first = next((m for m in encoder.modules() if isinstance(m, nn.Linear)), None)
    if first is None or any(isinstance(m, nn.modules.conv._ConvNd) for m in encoder.modules()):
        raise ValueError("input_shape=None, but the encoder's input shape cannot be read from it (it does not start "
                         "with an nn.Linear); give input_shape, e.g. input_shape=(1, 28, 28)")
    return (first.in_features,)


def _likelihood(likelihood, shape: tuple[int, ...]) -> Likelihood:
    if isinstance(likelihood, str):
        check_choice("likelihood", likelihood, LIKELIHOODS)
        return LIKELIHOODS[likelihood](**({"scale": 1.0} if likelihood == "gaussian" else {}))
    if isinstance(likelihood, Likelihood):
        return likelihood
    if callable(likelihood):
        return CallableLikelihood(likelihood, shape)
    raise ValueError(f"likelihood={likelihood!r} is neither one of {', '.join(LIKELIHOODS)} nor a callable "
                     "from the decoder's output to a distribution over the data")


def _probe_encoder(encoder: nn.Module, shape: tuple[int, ...]):
    """The encoder's output for one zero example [1, *shape], in eval mode and without gradient."""
    param = next(encoder.parameters(), None)
    x = torch.zeros(1, *shape, device=None if param is None else param.device)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            return encoder(x)
    except Exception as error:  # the user's module: its own message, with the shape it was given
        raise ValueError(f"the encoder failed on an input of shape {tuple(x.shape)} (input_shape={shape}): "
                         f"{error}") from error
    finally:
        encoder.train(was_training)


def encoder_params(out) -> Tensor:
    """The encoder's output as the one form the posterior families read, h [N, P]: a tensor as it is; two heads
    (loc, log variance) [N, d] each, as a tuple (or list) of two or pythae's ``ModelOutput`` (a mapping with
    ``embedding`` and ``log_covariance``), as their concatenation [N, 2d], the diagonal family's loc | log variance.
    Anything else is refused with a ValueError naming what came.

    Args:
        out: the encoder's output.

    Returns:
        h [N, P].

    Raises:
        ValueError: an output of another form, or two heads of different shapes.
    """
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping) and {"embedding", "log_covariance"} <= set(out):
        heads = (out["embedding"], out["log_covariance"])
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        heads = tuple(out)
    else:
        raise ValueError(f"the encoder gives {_describe(out)}; it must give a tensor [N, P], or two heads (mu, logvar) "
                         "[N, d] each, as a tuple or a ModelOutput with embedding and log_covariance")
    if not all(isinstance(h, Tensor) and h.dim() == 2 for h in heads) or heads[0].shape != heads[1].shape:
        raise ValueError(f"the encoder gives {_describe(out)}; its two heads (mu, logvar) must be tensors of one shape "
                         "[N, d]")
    return torch.cat(heads, -1)


def _params_for(family, out):
    """What ``family`` reads of the encoder's output ``out``: a posterior family (named or given as one) the tensor
    h [N, P] of ``encoder_params``; a callable posterior the encoder's own output, whatever its form."""
    return encoder_params(out) if isinstance(family, PosteriorFamily) else out


def _family(name: str, h) -> PosteriorFamily:
    """The named family for the encoder's output width P: the d with n_params(d) = P."""
    cls: type[PosteriorFamily] = POSTERIORS[name]
    if not isinstance(h, Tensor) or h.dim() != 2:
        raise ValueError(f"posterior={name!r} needs an encoder whose output is a tensor [N, P]; got {_describe(h)}; "
                         "give posterior= a callable from that output to a distribution")
    width = h.shape[-1]
    d = next((d for d in range(1, width + 1) if cls.n_params(d) == width), None)
    if d is None:
        raise ValueError(f"the encoder gives {width} outputs per example, which is no {name} posterior's width "
                         f"(n_params(d) = {', '.join(str(cls.n_params(d)) for d in range(1, 5))}, ... for d = 1, 2, "
                         f"3, 4, ...)")
    return cls(d)


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with " + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} (" + ", ".join(_describe(v) for v in value) + ")"
    if isinstance(value, Distribution):
        return (f"{type(value).__name__} with batch_shape {list(value.batch_shape)} and event_shape "
                f"{list(value.event_shape)}")
    return f"a {type(value).__name__}"


__all__ = ["wrap", "WrappedModel", "DeterministicWrappedModel", "CallableLikelihood", "encoder_params", "DECODER_ROWS"]
