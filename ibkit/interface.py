"""The model protocol and the result records. This module imports nothing else from ibkit.

Any object with ``posterior``, ``prior`` and ``log_likelihood`` is a latent-variable model to ibkit
(``LatentVariableModel``), so users can measure their own models without subclassing anything. A deterministic
code needs only ``encode`` (``DeterministicCode``; ``ibkit.estimators.probe`` turns it into a latent-variable
model). Everything else an estimator may use is optional, each part its own small protocol below: the decoder's
``log_likelihood`` for a code (``HasLogLikelihood``), its mean ``decode`` (``HasDecode``, for ``mse``), the data
width ``input_dim`` (``HasInputDim``), a data check ``check_data`` (``HasCheckData``) or else a ``support``
(``HasSupport``), and the variational parameters ``posterior_params`` / ``posterior_from_params``
(``HasPosteriorParams``, for ``amortization_gap``). Estimators read nothing else from a model; they check the
shapes below at their entry and refuse, with the fix, what does not match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from torch import Tensor
from torch.distributions import Distribution
from torch.distributions.constraints import Constraint

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd


@runtime_checkable
class LatentVariableModel(Protocol):
    """A model p(x, z) = p(z) p(x|z) with an (amortised) posterior q(z|x): what every estimator takes.

    The shapes are checked at each estimator's entry. A diagonal Gaussian posterior is
    ``Independent(Normal(mu, sigma), 1)`` with mu, sigma [N, d]: a bare ``Normal(mu, sigma)`` has batch_shape
    [N, d] and event_shape [] and is refused (it would make each latent dimension a data point of its own).
    """

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x) for x [N, D]: batch_shape [N], event_shape [d].

        Args:
            x: [N, D] data.

        Returns:
            q(z|x), a ``torch.distributions`` object with batch_shape [N] and event_shape [d].
        """
        ...

    def prior(self) -> Distribution:
        """p(z): batch_shape [], event_shape [d].

        Returns:
            p(z), a ``torch.distributions`` object with batch_shape [] and event_shape [d].
        """
        ...

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for x [N, D] and z [S, N, d]: [S, N] (summed over the D data dimensions), finite.

        Args:
            x: [N, D] data.
            z: [S, N, d] codes, S per row.

        Returns:
            [S, N] log p(x|z) in nats.
        """
        ...


@runtime_checkable
class DeterministicCode(Protocol):
    """A code z = f(x) with no posterior (a deterministic or sparse autoencoder's encoder). A decoder is optional
    (``HasLogLikelihood``, ``HasDecode``); the code's width d is read from what ``encode`` returns."""

    def encode(self, x: Tensor) -> Tensor:
        """The code f(x) [N, d] for x [N, D].

        Args:
            x: [N, D] data.

        Returns:
            [N, d] the code.
        """
        ...


@runtime_checkable
class HasLogLikelihood(Protocol):
    """The decoder's density, for a deterministic code whose distortion -log p(x|f(x)) is wanted."""

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for x [N, D] and z [S, N, d]: [S, N].

        Args:
            x: [N, D] data.
            z: [S, N, d] codes.

        Returns:
            [S, N] log p(x|z) in nats.
        """
        ...


@runtime_checkable
class HasDecode(Protocol):
    """The decoder's mean, for the squared-error distortion ``estimators.mse``."""

    def decode(self, z: Tensor) -> Tensor:
        """E[x|z], the likelihood's mean, [..., N, D] for z [..., N, d].

        Args:
            z: [..., N, d] codes.

        Returns:
            [..., N, D] E[x|z].
        """
        ...


@runtime_checkable
class HasInputDim(Protocol):
    """The data width the model was built for; data of another width is refused before the model sees it."""

    @property
    def input_dim(self) -> int:
        """D."""
        ...


@runtime_checkable
class HasCheckData(Protocol):
    """The model's own check of the data it can score (used in place of ``HasSupport`` where both exist)."""

    def check_data(self, x: Tensor, name: str = "x") -> None:
        """Raise ValueError, naming ``name``, the values found and the fix, for x [N, D] outside the likelihood's
        support (e.g. pixels in [0, 255] under a Bernoulli likelihood).

        Args:
            x: [N, D] data.
            name: what the message calls x.

        Raises:
            ValueError: values outside the likelihood's support.
        """
        ...


@runtime_checkable
class HasSupport(Protocol):
    """The values one data dimension may take under the likelihood; data outside is refused with the range."""

    @property
    def support(self) -> Constraint:
        """A ``torch.distributions.constraints`` object: ``constraints.unit_interval`` for Bernoulli pixels,
        ``constraints.real`` for a Gaussian."""
        ...


@runtime_checkable
class HasPosteriorParams(Protocol):
    """The amortised variational parameters, for the per-datapoint optimisation of ``estimators.amortization_gap``:
    ``posterior(x)`` equals ``posterior_from_params(posterior_params(x))``."""

    def posterior_params(self, x: Tensor) -> Tensor:
        """The encoder's variational parameters h [N, P] for x [N, D].

        Args:
            x: [N, D] data.

        Returns:
            h [N, P].
        """
        ...

    def posterior_from_params(self, h: Tensor) -> Distribution:
        """q(z|x) for given parameters h [N, P]: batch_shape [N], event_shape [d].

        Args:
            h: [N, P] variational parameters.

        Returns:
            q(z|x), batch_shape [N], event_shape [d].
        """
        ...


class Experiment(Protocol):
    """What an experiment module defines (``ibkit.registry.experiment`` checks it when it loads one).

    An experiment is a package registered as an ``ibkit.experiments`` entry point; nothing runs at import.
    """

    NAME: str  # the name `ibkit run NAME` takes
    SUMMARY: str  # one line for `ibkit list`
    Config: type  # a frozen dataclass on ibkit.config.ExperimentConfig declaring only its grid fields
    QUICK: dict  # the overrides of --quick (about a minute on two CPU cores)

    def run(self, config: Any, out_dir: str | Path | None = None, executor: Any = None) -> pd.DataFrame:
        """Train and evaluate the grid of ``config``: one row per run and split (``RunRecord``).

        Args:
            config: the experiment's ``Config``.
            out_dir: the run folder the runs are stored in (``ibkit.sweep.run_grid``'s ``out_dir``).
            executor: where the training groups run (``ibkit.executors``; ``run_grid``'s default: this process).

        Returns:
            the results table.
        """
        ...

    def plot(self, run_dir: str | Path, command: str | Sequence[str] | None = None) -> list[Path]:
        """Draw the figures and findings from the tables stored in ``run_dir``, never retraining; their paths.
        ``command`` is the command line findings.md names as its writer (``ibkit.results.write_findings``; None:
        this process's).

        Args:
            run_dir: a run folder ``run`` wrote.
            command: the command line findings.md names; None: this process's.

        Returns:
            the paths written.
        """
        ...


class ForwardOutput(NamedTuple):
    """What an autoencoder's forward pass returns, per example (never one bare sum).

    Attributes:
        distortion: [N] -log p(x|z) in nats, at the sampled (or deterministic) code.
        rate: [N] KL(q(z|x) || p(z)) in nats; NaN for codes without a posterior.
        loss: [N] the training objective, distortion plus the variant's regulariser.
        z: [N, d] the code the decoder saw.
        trained_rate: [N] the rate the loss used: ``rate``, except under free bits, which count a group of latents
            whose minibatch-mean KL is below its floor as the floor (``ibkit.models.schedules``); None: the rate
            itself. Reports use ``rate``.
    """

    distortion: Tensor
    rate: Tensor
    loss: Tensor
    z: Tensor
    trained_rate: Tensor | None = None


@dataclass
class RunRecord:
    """One row of a results table: one run (model, seed) evaluated on one split. Nats throughout.

    Metrics that a run's kind does not define (the rate of a deterministic code, say) are NaN,
    never zero; a failed run keeps its configuration, ``status="failed"`` and the ``error``. ``knobs`` holds
    one value per knob of every registered kind (beta, noise, sparsity, ...; NaN where the run's kind has none):
    columns that come from the model configs, placed after ``latent_dim``.

    Attributes:
        experiment: the experiment's name.
        run_id: the run's id (e.g. "vae-d8-beta1.0-seed0").
        dataset: the dataset's name.
        kind: the model kind.
        posterior: the posterior family ("" where the kind has none).
        latent_dim: d.
        knobs: knob name -> value, from the model configs.
        seed: the run's seed.
        split: the split evaluated (e.g. "test").
        rate: E_x KL(q(z|x) || p(z)).
        distortion: -E_x E_q log p(x|z).
        elbo: -(distortion + rate).
        iwae: importance-weighted lower bound on log p(x).
        mi_lower: lower bound on I(X;Z).
        mi_upper: upper bound on I(X;Z).
        active_units: latent dims with Var_x E_q[z] > 0.01.
        status: ok | failed | diverged.
        error: the failure's message ("" for ok).
        train_seconds: the wall time of the training call of the run's batch (fit_many of K models, or fit of one)
            divided by K: a share of the batch's time, the same for each of its runs; building and evaluation not
            counted.
        extra: experiment-specific columns.
    """

    experiment: str
    run_id: str
    dataset: str
    kind: str
    posterior: str = ""
    latent_dim: int = 0
    knobs: dict = field(default_factory=dict)  # knob name -> value, from the model configs
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
    # the wall time of the training call of the run's batch (fit_many of K models, or fit of one) divided by K:
    # a share of the batch's time, the same for each of its runs; building and evaluation not counted
    train_seconds: float = math.nan
    extra: dict = field(default_factory=dict)  # experiment-specific columns

    def to_row(self) -> dict:
        """The flat row of a results table: the fields, the knobs after ``latent_dim``, the extra columns last.

        Returns:
            {column: value}.
        """
        row = {}
        for f in fields(self):
            if f.name not in ("knobs", "extra"):
                row[f.name] = getattr(self, f.name)
            if f.name == "latent_dim":
                row.update(self.knobs)
        row.update(self.extra)
        return row


RESULT_COLUMNS = tuple(f.name for f in fields(RunRecord) if f.name not in ("knobs", "extra"))  # knobs: see above


def is_stochastic(model) -> bool:
    """True when ``model`` follows the latent-variable protocol (has a posterior).

    Args:
        model: any object.

    Returns:
        whether it has callable ``posterior`` and ``prior``.
    """
    return callable(getattr(model, "posterior", None)) and callable(getattr(model, "prior", None))


__all__ = [
    "LatentVariableModel",
    "DeterministicCode",
    "HasLogLikelihood",
    "HasDecode",
    "HasInputDim",
    "HasCheckData",
    "HasSupport",
    "HasPosteriorParams",
    "Experiment",
    "ForwardOutput",
    "RunRecord",
    "RESULT_COLUMNS",
    "is_stochastic",
]
