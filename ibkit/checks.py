"""Validation helpers shared by every public entry point.

Each raises ``ValueError`` whose message names the argument, what arrived, what is allowed and,
where there is one, the fix (scikit-learn's style). Never ``assert`` on user input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.constraints import Constraint


def check_choice(name: str, value, allowed: Iterable) -> None:
    """Refuse ``value`` unless it is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not known; choose one of: {', '.join(map(str, allowed))}")


def check_number(name: str, value, *, low=None, high=None, low_open=False, integer=False) -> None:
    """Refuse a value that is not a finite number in [low, high] (or (low, high] with low_open)."""
    kind = "an integer" if integer else "a number"
    types = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, types):  # 1e3 is a float: sizes and counts must be ints
        hint = f", e.g. {int(value)}" if integer and _whole(value) else ""
        raise ValueError(f"{name}={value!r} must be {kind}{hint}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name}={value!r} must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise ValueError(f"{name}={value!r} must be <= {high}")


def _whole(value) -> bool:
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" is the GPU when one is present, else the CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda[:i]'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no GPU here; use device='auto' or 'cpu'")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda[:i]'")
    return resolved


def check_data(x, name: str = "x", width: int | None = None) -> Tensor:
    """Return ``x`` as a float32 tensor [N, D], refusing wrong rank, width, emptiness or NaN/inf.

    ``width``: the D the model was built for, when known.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array of shape [N, D]; got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D]; got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {list(x.shape)}); pass at least one row")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{name} has width {x.shape[1]} but the model expects input_dim={width}")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64, torch.bool)):
        raise ValueError(f"{name} must hold real numbers; got dtype {x.dtype}")
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).any(dim=1).nonzero()[:5, 0].tolist()
        raise ValueError(f"{name} contains NaN or inf (first bad rows: {bad}); clean the data first")
    return x


def check_model_data(model, x, name: str = "x") -> Tensor:
    """``check_data`` against what ``model`` declares (each part optional: a user's protocol model need not have it,
    see ``ibkit.interface``): its width ``input_dim``, then its own ``check_data(x, name)`` or, without one, its
    ``support`` (a ``torch.distributions.constraints`` object the values must lie in)."""
    width = getattr(model, "input_dim", None)
    x = check_data(x, name, width=width if _is_count(width) else None)
    own_check = getattr(model, "check_data", None)
    support = getattr(model, "support", None)
    if callable(own_check):
        own_check(x, name)
    elif isinstance(support, Constraint):
        check_support(x, support, name, type(model).__name__)
    return x


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_support(x: Tensor, support: Constraint, name: str = "x", owner: str = "the model") -> None:
    """Refuse x unless every value lies in ``support``, naming the range found and the support."""
    if bool(support.check(x).all()):
        return
    lo, hi = x.min().item(), x.max().item()
    raise ValueError(
        f"{name} has values in [{lo:.3g}, {hi:.3g}] but {owner}'s likelihood has support "
        f"{describe_support(support)}; "
        "rescale the data into it (e.g. x / 255 for 8-bit pixels) or use a model whose likelihood fits the data"
    )


def describe_support(c: Constraint) -> str:
    """A ``torch.distributions.constraints`` object in words: ``[0, 1]``, ``(0, inf)``, ``{0, 1}``, ``the reals``."""
    base = getattr(c, "base_constraint", None)  # constraints.independent(...)
    if base is not None:
        return describe_support(base)
    if c is constraints.real:
        return "the reals (-inf, inf)"
    if c is constraints.boolean:
        return "{0, 1}"
    lo, hi, kind = getattr(c, "lower_bound", None), getattr(c, "upper_bound", None), type(c).__name__
    if c.is_discrete:
        return f"the integers {_bound(lo)}..{'' if hi is None else _bound(hi)}"
    if lo is not None and hi is not None:
        return f"[{_bound(lo)}, {_bound(hi)}{')' if 'HalfOpen' in kind else ']'}"
    if lo is not None:
        return f"{'[' if 'Eq' in kind else '('}{_bound(lo)}, inf)"
    if hi is not None:
        return f"(-inf, {_bound(hi)})"
    return kind.lstrip("_")


def _bound(v) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError, RuntimeError):  # a tensor of bounds
        return str(v)


# ------------------------------------------------------------------------------------------------------------
# what a protocol model returns (ibkit.interface): shapes checked once, at an estimator's entry

_DIAGONAL_HINT = "a diagonal Gaussian is Independent(Normal(mu, sigma), 1) with mu, sigma [N, d]"


def check_posterior(q, n: int, owner: str) -> int:
    """Refuse a posterior q(z|x) for n rows unless it is a Distribution with batch_shape [n] and event_shape [d];
    return d. (A plain ``Normal(mu, sigma)`` has batch [n, d] and event []: every estimator would then treat each
    dimension as its own data point, e.g. the rate comes out divided by d.)"""
    if not isinstance(q, Distribution):
        raise ValueError(f"{owner}.posterior(x) must return a torch.distributions.Distribution; got {type(q).__name__}")
    if tuple(q.batch_shape) != (n,) or len(q.event_shape) != 1:
        raise ValueError(
            f"{owner}.posterior(x) returned {distribution_name(q)} with batch_shape {list(q.batch_shape)} and "
            f"event_shape {list(q.event_shape)} for {n} rows of x; expected batch_shape [{n}] and event_shape [d] (one "
            f"d-dimensional latent per row): {_DIAGONAL_HINT}, not Normal(mu, sigma)"
        )
    return int(q.event_shape[0])


def check_prior(p, d: int, owner: str) -> None:
    """Refuse a prior p(z) unless it is a Distribution with batch_shape [] and event_shape [d] (d from q(z|x))."""
    if not isinstance(p, Distribution):
        raise ValueError(f"{owner}.prior() must return a torch.distributions.Distribution; got {type(p).__name__}")
    if tuple(p.batch_shape) != () or tuple(p.event_shape) != (d,):
        raise ValueError(
            f"{owner}.prior() returned {distribution_name(p)} with batch_shape {list(p.batch_shape)} and "
            f"event_shape {list(p.event_shape)}; expected batch_shape [] and event_shape [{d}] (the posterior's "
            f"latent width): N(0, I) is Independent(Normal(torch.zeros({d}), torch.ones({d})), 1), not Normal(...)"
        )


def check_code(code, n: int, owner: str) -> int:
    """Refuse a deterministic code unless it is a tensor [n, d]; return d."""
    if not isinstance(code, Tensor) or code.dim() != 2 or code.shape[0] != n:
        got = list(code.shape) if isinstance(code, Tensor) else type(code).__name__
        raise ValueError(f"{owner}.encode(x) must return a tensor [N, d] = [{n}, d] for {n} rows of x; got {got}")
    return int(code.shape[1])


def check_log_likelihood(values, x: Tensor, z: Tensor, owner: str) -> None:
    """Refuse log p(x|z) unless it has shape [S, n] for z [S, n, d] and is finite; a NaN or inf is most often data
    outside the likelihood's support."""
    expected = list(z.shape[:-1])
    if not isinstance(values, Tensor) or list(values.shape) != expected:
        got = list(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(
            f"{owner}.log_likelihood(x, z) returned shape {got} for x {list(x.shape)} and z {list(z.shape)}; "
            f"expected {expected}: log p(x|z) summed over the {x.shape[-1]} data dimensions, one value per sample "
            "and row"
        )
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = (~finite).any(0).nonzero()[:5, 0].tolist()
        kind = "NaN" if bool(values.isnan().any()) else "inf"
        raise ValueError(
            f"{owner}.log_likelihood(x, z) returned {kind} (rows {bad} of the first {x.shape[0]}) on x with values "
            f"in [{x.min().item():.3g}, {x.max().item():.3g}]: most likely x lies outside the support of the "
            "model's likelihood (e.g. pixels in [0, 255] under a Bernoulli or Beta decoder: rescale them to [0, 1]), "
            "or the decoder's output is degenerate. Give the model a `support` (a torch.distributions.constraints "
            "object) or a `check_data(x, name)` method, and such data is refused up front with the reason"
        )


def distribution_name(d: Distribution) -> str:
    """A distribution's type with its base's, e.g. ``Independent(Normal)``, for messages."""
    base = getattr(d, "base_dist", None)
    return f"{type(d).__name__}({type(base).__name__})" if base is not None else type(d).__name__
