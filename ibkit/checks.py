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
    """``check_data`` against what ``model`` accepts: its ``config.input_dim`` and its likelihood's support
    (``likelihood.check_data``), where the model declares them (a user's protocol model need not)."""
    x = check_data(x, name, width=getattr(getattr(model, "config", None), "input_dim", None))
    likelihood = getattr(model, "likelihood", None)
    if hasattr(likelihood, "check_data"):
        likelihood.check_data(x, name)
    return x
