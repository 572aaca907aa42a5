"""The model protocol and the result records. This module imports nothing else from ibkit.

Any object with ``posterior``, ``prior`` and ``log_likelihood`` is a latent-variable model to ibkit,
so users can measure their own models without subclassing anything. Deterministic codes expose
``encode`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor
from torch.distributions import Distribution


@runtime_checkable
class LatentVariableModel(Protocol):
    """A model p(x, z) = p(z) p(x|z) with an (amortised) posterior q(z|x)."""

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x) for x [N, D]: batch_shape [N], event_shape [d]."""

    def prior(self) -> Distribution:
        """p(z): batch_shape [], event_shape [d]."""

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for x [N, D] and z [S, N, d]; returns [S, N]."""


@runtime_checkable
class DeterministicCode(Protocol):
    """An autoencoder with a deterministic code z = f(x) and no posterior."""

    def encode(self, x: Tensor) -> Tensor:
        """The code f(x) [N, d] for x [N, D]."""

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for x [N, D] and z [S, N, d]; returns [S, N]."""


class ForwardOutput(NamedTuple):
    """What an autoencoder's forward pass returns, per example (never one bare sum).

    distortion: [N] -log p(x|z) in nats, at the sampled (or deterministic) code.
    rate:       [N] KL(q(z|x) || p(z)) in nats; NaN for codes without a posterior.
    loss:       [N] the training objective, distortion plus the variant's regulariser.
    z:          [N, d] the code the decoder saw.
    """

    distortion: Tensor
    rate: Tensor
    loss: Tensor
    z: Tensor


@dataclass
class RunRecord:
    """One row of a results table: one run (model, seed) evaluated on one split. Nats throughout.

    Metrics that a run's kind does not define (the rate of a deterministic code, say) are NaN,
    never zero; a failed run keeps its configuration, ``status="failed"`` and the ``error``.
    """

    experiment: str
    run_id: str
    dataset: str
    kind: str
    posterior: str = ""
    latent_dim: int = 0
    beta: float = math.nan
    noise: float = math.nan
    sparsity: float = math.nan
    seed: int = 0
    split: str = "test"
    rate: float = math.nan  # E_x KL(q(z|x) || p(z))
    distortion: float = math.nan  # -E_x E_q log p(x|z)
    elbo: float = math.nan  # -(distortion + rate)
    iwae: float = math.nan  # importance-weighted lower bound on log p(x)
    mi_lower: float = math.nan  # lower bound on I(X;Z)
    mi_upper: float = math.nan  # upper bound on I(X;Z)
    active_units: float = math.nan  # latent dims with Var_x E_q[z] > 0.01
    status: str = "ok"  # ok | failed | diverged
    error: str = ""
    train_seconds: float = math.nan
    extra: dict = field(default_factory=dict)  # experiment-specific columns

    def to_row(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        row.update(self.extra)
        return row


RESULT_COLUMNS = tuple(f.name for f in fields(RunRecord) if f.name != "extra")


def is_stochastic(model) -> bool:
    """True when ``model`` follows the latent-variable protocol (has a posterior)."""
    return callable(getattr(model, "posterior", None)) and callable(getattr(model, "prior", None))


__all__ = [
    "LatentVariableModel",
    "DeterministicCode",
    "ForwardOutput",
    "RunRecord",
    "RESULT_COLUMNS",
    "is_stochastic",
]
