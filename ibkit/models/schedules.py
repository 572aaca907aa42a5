"""KL schedules: how the rate enters a model's training loss, epoch by epoch. Pure tensor functions that a
stacked batch of models (``fit_many``: every knob [K, 1]) runs unchanged.

    warm-up    beta_t = beta min(1, t / warmup_epochs)                 Bowman et al. 2016; Sønderby et al. 2016
    capacity   loss = D + gamma |R - C_t|, C_t = C min(1, t / capacity_epochs)           Burgess et al. 2018
    free bits  each group's minibatch-mean KL clipped below at lambda (its size times lambda)  Kingma et al. 2016

t is the training progress in epochs (fractional: epoch - 1 + the fraction of its minibatches already seen), set by
the trainer before each step (``set_progress``). The rate is always the true one in reports and histories; only the
loss sees the clipped rate and the scheduled weights.

Capacity uses the batch-mean KL, gamma |mean_i R_i - C_t| (Burgess et al.'s objective as disentanglement_lib
implements it). pythae takes gamma |R_i - C_t| per example before averaging, a different objective: it pulls every
example's rate to C_t, where the batch-mean form lets informative and uninformative examples share the budget C_t,
which is what "a channel of capacity C" means for the rate R = E_x KL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ibkit.models.base import StochasticAutoencoder
from ibkit.models.config import ModelConfig


def ramp(progress: Tensor, epochs: Tensor) -> Tensor:
    """min(1, t / epochs), or 1 where ``epochs`` is 0 (no ramp): the linear rise of a warm-up or a capacity.
    Broadcasts the scalar ``progress`` against ``epochs`` ([] alone, [K, 1] in a stack)."""
    return torch.where(epochs > 0, (progress / epochs.clamp(min=1e-12)).clamp(max=1.0), torch.ones_like(epochs))


def free_bits_rate(terms: Tensor, floors: Tensor) -> Tensor:
    """The rate the loss uses under free bits, [..., N]: per example the sum over groups g of its KL term
    terms[..., n, g], where the group's minibatch mean is at least its floor, and of the floor (a constant: no
    gradient) where it is not. Its minibatch mean is sum_g max(mean_n terms[n, g], floor_g), Kingma et al. 2016's
    objective. terms [..., N, G]; floors [G] or [..., 1, G] (0: that group is not clipped)."""
    mean = terms.mean(-2, keepdim=True)
    keep = (mean >= floors) | (floors <= 0)
    return torch.where(keep, terms, floors.expand_as(terms).to(terms.dtype)).sum(-1)


def rate_penalty(rate: Tensor, beta: Tensor, progress: Tensor, *, warmup_epochs: Tensor, capacity: Tensor,
                 gamma: Tensor, capacity_epochs: Tensor) -> Tensor:
    """The rate's part of each example's loss [..., N] for the rate R [..., N] (clipped by free bits, if any).

    beta_t R_n with beta_t = beta ramp(t, warmup_epochs); or, where ``capacity`` is set (not NaN),
    gamma sign(mean R - C_t) (R_n - C_t), whose minibatch mean is gamma |mean R - C_t| and whose gradient is that
    of the batch-mean objective. Knobs: [] alone or [K, 1] in a stack."""
    weighted = beta * ramp(progress, warmup_epochs) * rate
    target = torch.nan_to_num(capacity) * ramp(progress, capacity_epochs)
    side = torch.sign(rate.mean(-1, keepdim=True) - target).detach()
    return torch.where(torch.isnan(capacity), weighted, gamma * side * (rate - target))


def used_values(beta: Tensor, progress: Tensor, *, warmup_epochs: Tensor, capacity: Tensor,
                capacity_epochs: Tensor) -> tuple[Tensor, Tensor]:
    """(beta_t, C_t) at progress t, each [] or [K]: what the history records as beta_used and capacity_used
    (beta_t is NaN under a capacity target, which replaces beta; C_t is NaN without one)."""
    beta_t = torch.where(torch.isnan(capacity), beta * ramp(progress, warmup_epochs), torch.nan)
    return beta_t.reshape(-1), (capacity * ramp(progress, capacity_epochs)).reshape(-1)


@dataclass(frozen=True)
class ScheduledConfig(ModelConfig):
    """The fields of every kind whose loss weighs a KL rate: beta and the KL schedules. The schedules are knobs
    (they sweep, are results columns, and enter a run id when a spec sets them); ``quiet`` ones are left out of a
    summary table where every run has them at their default (off); ``aggressive`` changes the training loop
    itself, so models with it train one at a time.

    Args:
        beta: weight of the rate in the loss, >= 0.
        warmup_epochs: beta rises linearly from 0 over this many epochs (0: no warm-up).
        capacity: None: off; else the loss is D + gamma |R - C_t|, C_t rising linearly to it over capacity_epochs
            (nats).
        gamma: weight of the rate's distance from its capacity target, > 0.
        capacity_epochs: the epochs over which C_t rises to ``capacity``.
        free_bits: lambda, nats per latent unit: each group's minibatch-mean KL counts as at least lambda times its
            size.
        aggressive: He et al. 2019: encoder-only steps until its loss stops improving, then one decoder step, while
            MI rises.

    Raises:
        ValueError: a ``capacity`` with a beta other than 1 (and the shared fields' checks).
    """

    beta: float = field(default=1.0, metadata={"knob": True, "symbol": "β", "low": 0,
                                               "help": "weight of the rate in the loss"})  # weight of the rate
    # beta rises linearly from 0 over this many epochs (0: no warm-up)
    warmup_epochs: float = field(default=0.0, metadata={"knob": True, "id": "warmup", "low": 0, "quiet": True})
    # None: off; else the loss is D + gamma |R - C_t|, C_t rising linearly to it over capacity_epochs (nats)
    capacity: float | None = field(default=None, metadata={"knob": True, "symbol": "C", "low": 0, "quiet": True})
    gamma: float = field(default=1000.0, metadata={"knob": True, "symbol": "γ", "low": 0, "low_open": True,
                                                   "quiet": True, "help": "weight of the rate's distance from "
                                                   "its capacity target"})
    capacity_epochs: float = field(default=0.0, metadata={"knob": True, "id": "cepochs", "low": 0, "quiet": True})
    # lambda, nats per latent unit: each group's minibatch-mean KL counts as at least lambda times its size
    free_bits: float = field(default=0.0, metadata={"knob": True, "id": "freebits", "symbol": "λ", "low": 0,
                                                    "quiet": True, "help": "free bits, nats per latent unit"})
    # He et al. 2019: encoder-only steps until its loss stops improving, then one decoder step, while MI rises
    aggressive: bool = field(default=False, metadata={"id": "aggressive"})

    def __post_init__(self):
        super().__post_init__()
        if self.capacity is not None and self.beta != 1.0:
            raise ValueError(f"beta={self.beta!r} with capacity={self.capacity!r}: a capacity target replaces beta "
                             "(the loss is D + gamma |R - C|); leave beta at 1 or unset capacity")


class RateScheduled(StochasticAutoencoder):
    """A stochastic autoencoder whose loss is D + the scheduled rate penalty (``rate_penalty``): beta R with
    warm-up, or gamma |R - C_t|, on the rate its free bits clip (``free_bits_rate``). The trainer sets the progress
    t before each step (``set_progress``) and records ``schedule_values``."""

    config: ScheduledConfig
    beta: Tensor  # the knobs' buffers: [] alone, [K, 1] in fit_many's stacked model
    warmup_epochs: Tensor
    capacity: Tensor
    gamma: Tensor
    capacity_epochs: Tensor
    free_bits: Tensor
    progress: Tensor  # [] epochs of training done, the same for every model of a stack

    def __init__(self, config: ScheduledConfig):
        super().__init__(config)
        self.register_buffer("progress", torch.zeros(()), persistent=False)

    def rate_groups(self) -> Tensor:
        """The number of latent units in each group of the rate [G] (``kl_terms``' groups), which free bits clip
        at lambda times that size: here one group of all d.

        Returns:
            [G] the group sizes.
        """
        return torch.tensor([float(self.config.latent_dim)])

    def set_progress(self, epochs: float) -> None:
        """Set the training progress t, in epochs, that the schedules read.

        Args:
            epochs: t, fractional epochs of training done.
        """
        self.progress.fill_(epochs)

    def _plain(self) -> bool:
        """No warm-up and no capacity in any model (a knob shared by a stack is a scalar equal to the config's):
        the penalty is beta R, without the schedules' extra operations in every step."""
        return (not self.warmup_epochs.dim() and self.config.warmup_epochs == 0
                and not self.capacity.dim() and self.config.capacity is None)

    def schedule_values(self) -> tuple[Tensor, Tensor]:
        """(beta_t, C_t) [K] now, as the loss uses them (``used_values``).

        Returns:
            (beta_t [K], C_t [K]); K = 1 for a model alone.
        """
        if self._plain():
            return self.beta.reshape(-1), torch.full_like(self.beta.reshape(-1), torch.nan)
        return used_values(self.beta, self.progress, warmup_epochs=self.warmup_epochs, capacity=self.capacity,
                           capacity_epochs=self.capacity_epochs)

    def trained_rate(self, rate_terms: Tensor) -> Tensor:
        if self.config.free_bits == 0 and not self.free_bits.dim():
            return rate_terms.sum(-1)
        floors = self.free_bits.unsqueeze(-1) * self.rate_groups().to(rate_terms)  # [G] or [K, 1, G]
        return free_bits_rate(rate_terms, floors)

    def regularizer(self, z: Tensor, rate: Tensor) -> Tensor:
        if self._plain():
            return self.beta * rate
        return rate_penalty(rate, self.beta, self.progress, warmup_epochs=self.warmup_epochs, capacity=self.capacity,
                            gamma=self.gamma, capacity_epochs=self.capacity_epochs)


__all__ = ["ramp", "free_bits_rate", "rate_penalty", "used_values", "ScheduledConfig", "RateScheduled"]
