"""One trainer: minibatch Adam on the model's per-example loss, with a per-epoch history; ``fit`` (one model) and
``ibkit.batched.fit_many`` (K models as one stack) share its epochs and its step."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ibkit.checks import check_choice, check_model_data, check_number, resolve_device
from ibkit.config import TrainingConfig
from ibkit.interface import is_stochastic
from ibkit.models.schedules import RateScheduled
from ibkit.progress import Progress
from ibkit.seeding import seeded

if TYPE_CHECKING:
    import pandas as pd

Callback = Callable[..., None]
"""A training hook, called after each epoch a model finishes with a finite loss: ``callback(epoch, metrics)`` in
``fit``, ``callback(epoch, metrics, index)`` in ``ibkit.fit_many`` (``index``: the model's position in ``models``).
``epoch`` counts from 1; ``metrics`` is a copy of that epoch's history row (dict: epoch, loss, rate, distortion,
seconds, and the monitor_* columns with ``x_monitor``, ...), the row the returned history holds."""


class DivergenceError(ValueError):
    """Training produced a NaN or infinite loss. ``history`` holds the epochs finished before it.

    Args:
        message: what happened and what to do.
        epoch: the epoch whose loss became NaN or infinite.
        history: the epochs finished before it, one row each (as ``fit`` returns).
    """

    def __init__(self, message: str, epoch: int, history: pd.DataFrame):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


def divergence(epoch: int, loss: float, rows: list[dict], lr: float) -> DivergenceError:
    """The error for a loss that became ``loss`` (NaN or infinite) in ``epoch``, after the history ``rows``."""
    import pandas as pd

    last = f"{rows[-1]['loss']:.6g}" if rows else "none (it diverged in the first epoch)"
    return DivergenceError(f"training diverged: the loss became {loss} in epoch {epoch}; last finite epoch loss: "
                           f"{last}. Lower lr (now {lr}) or check the data.", epoch, pd.DataFrame(rows))


def trainable_parameters(model: nn.Module, trainable: str) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs that training moves. "all": every parameter that requires grad; "encoder": those
    of q(z|x) only, the encoder and the posterior family's own (an IAF's steps), not the decoder or likelihood."""
    check_choice("trainable", trainable, ("all", "encoder"))
    inference = ("encoder.", "family.")
    return [(name, p) for name, p in model.named_parameters()
            if p.requires_grad and (trainable == "all" or name.startswith(inference))]


def check_trainable(model) -> None:
    """Refuse a model ``fit`` cannot train, saying what it needs: a torch module whose ``forward(x, eps)`` returns
    the per-example loss, rate and distortion (``ForwardOutput``), as every registered kind's does. A model with
    only the measuring protocol (posterior, prior, log_likelihood) can be measured by every estimator, not trained
    here."""
    own_forward = isinstance(model, nn.Module) and type(model).forward is not nn.Module.forward
    if not own_forward:
        raise ValueError(
            f"model {type(model).__name__} cannot be trained by fit: fit needs a torch.nn.Module whose forward(x, eps)"
            " returns per-example loss, rate and distortion (ibkit.interface.ForwardOutput), as ibkit.build_model's "
            "kinds do (subclass ibkit.models.StochasticAutoencoder, or register a kind); a model with only "
            "posterior, prior and log_likelihood is measured by ibkit.estimators but trained elsewhere")


def training_of(training: TrainingConfig | None, settings: dict, caller: str) -> TrainingConfig:
    """The ``TrainingConfig`` a ``fit``/``fit_many`` call means: ``training`` (default ``TrainingConfig()``; an
    experiment's config gives its training fields) with the keyword ``settings`` (epochs=..., lr=...) replacing
    its fields, validated. A keyword that is no training setting is refused with the ones there are."""
    if training is not None and not isinstance(training, TrainingConfig):
        raise ValueError(f"{caller}: training={training!r} must be an ibkit.config.TrainingConfig, e.g. "
                         "TrainingConfig(epochs=50), or leave it out and pass epochs=50")
    names = [f.name for f in dataclasses.fields(TrainingConfig)]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise ValueError(f"{caller} got unknown argument(s) {unknown}; its training settings: {', '.join(names)}")
    if "seeds" in settings:
        raise ValueError(f"{caller} trains with seed=...; seeds={settings['seeds']!r} is a grid's (one run per seed)")
    if isinstance(settings.get("device"), torch.device):
        settings = {**settings, "device": str(settings["device"])}
    return (training or TrainingConfig()).training.replace(**settings)


def check_run(seeds, trainable: str, callbacks: Sequence[Callback] = ()) -> list:
    """Refuse bad per-run arguments, each named (shared by ``fit`` and ``fit_many``); returns the callbacks as a
    list."""
    check_choice("trainable", trainable, ("all", "encoder"))
    for s in seeds:
        check_number("seed", s, low=0, integer=True)
    if callable(callbacks) or isinstance(callbacks, (str, bytes)):
        raise ValueError(f"callbacks={callbacks!r} must be a list of callables, e.g. callbacks=[my_callback]")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise ValueError(f"callbacks[{i}]={cb!r} is not callable; a callback is a function (epoch, metrics) -> "
                             "None (fit_many: (epoch, metrics, index))")
    return callbacks


def fit(model: nn.Module, x_train, training: TrainingConfig | None = None, *, seed: int = 0, trainable: str = "all",
        x_monitor=None, callbacks: Sequence[Callback] = (), progress: bool = True, **settings) -> pd.DataFrame:
    """Train ``model`` (an ibkit autoencoder: ``forward`` returns per-example ``loss, rate, distortion``)
    with Adam on minibatches of ``x_train`` [N, D], minimising the mean per-example loss.

    ``fit(m, x, epochs=50)`` and ``fit(m, x, TrainingConfig(epochs=50))`` are the same call.

    Args:
        model: the model, trained in place.
        x_train: [N, D] training data in the model's support.
        training: the settings (``ibkit.config.TrainingConfig``: epochs=10, batch_size=128, lr=1e-3,
            device="auto"); its ``seeds``, ``batched``, ``curves`` and ``log`` are a sweep's and unused here.
        seed: the minibatch order and the model's noise (the global random state is left as it was), so the same
            seed gives the same numbers on the CPU.
        trainable: "all", or "encoder": only q(z|x) learns (the encoder and the posterior family's own parameters,
            e.g. an IAF's steps), the decoder and prior stay as they are (to measure inference on a fixed
            generative model, e.g. ``ibkit.models.generating``).
        x_monitor: held-out data [M, D] (e.g. the test split) whose mean loss, rate and distortion are measured
            after every epoch, as the history's columns monitor_loss, monitor_rate and monitor_distortion: learning
            curves that tell over-fitting from slow training. Its noise comes from a generator of its own, so
            monitoring leaves the training trajectory as it was.
        callbacks: functions called as ``callback(epoch, metrics)`` after each epoch, in order, with a copy of the
            epoch's history row (``Callback``; e.g. ``TensorBoardCallback(log_dir)``); not for an epoch whose loss
            became NaN or infinite.
        progress: a bar on a terminal (stderr), and a line on the "ibkit" log at least every 30 s
            (``ibkit.progress``); False for neither.
        **settings: fields of ``TrainingConfig`` replacing those of ``training`` (epochs=50, lr=1e-3, ...).

    Returns:
        the per-epoch history: epoch, loss, rate, distortion (means over the epoch's examples, nats) and seconds.

    Raises:
        DivergenceError: a NaN or infinite loss, naming the epoch and the last finite loss.
    """
    config = training_of(training, settings, "fit")
    callbacks = check_run([seed], trainable, callbacks)
    check_trainable(model)
    device = resolve_device(config.device)
    x = check_model_data(model, x_train, "x_train")
    monitor = None if x_monitor is None else check_model_data(model, x_monitor, "x_monitor").to(device)
    model.to(device)
    optimizer = torch.optim.Adam([p for _, p in trainable_parameters(model, trainable)], lr=config.lr)
    hooks = [lambda epoch, row, _, cb=cb: cb(epoch, row) for cb in callbacks]
    (outcome,) = train_epochs(model, optimizer, x.to(device), [seed], training=config, stacked=False,
                              progress=progress, desc="fit", monitor=monitor, on_epoch=hooks)
    if isinstance(outcome, DivergenceError):
        raise outcome
    return outcome


def tensorboard_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a ValueError saying how to install the ``tensorboard`` extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("TensorBoard logging needs the tensorboard package; install the extra: "
                         "pip install 'ibkit[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


class TensorBoardCallback:
    """A training hook (``Callback``) that writes each epoch's metrics as TensorBoard scalars.

    ``log_dir``: one folder (for ``fit``) or one per model (for ``fit_many``, a list indexed by the callback's
    ``index``, the model's position in ``models``). Every number of the epoch's history row but the epoch itself
    (loss, rate, distortion, seconds, monitor_loss, beta_used, ...; booleans as 0 or 1) becomes the scalar of that
    name at step = epoch, flushed at once, so ``tensorboard --logdir`` shows a run while it trains. A folder is
    made when its first epoch is written. ``close()`` (or the end of a ``with`` block) closes the event files.
    Needs the ``tensorboard`` extra (``torch.utils.tensorboard``).

    Args:
        log_dir: one folder, or a sequence of folders, one per model of ``fit_many``.

    Raises:
        ValueError: an empty sequence of folders, or no ``tensorboard`` package.
    """

    def __init__(self, log_dir: str | Path | Sequence[str | Path]):
        dirs = [log_dir] if isinstance(log_dir, (str, Path)) else list(log_dir)
        if not dirs:
            raise ValueError("log_dir is empty; give a folder, or one per model for fit_many")
        self._writer_class = tensorboard_writer_class()
        self.log_dirs = [Path(d) for d in dirs]
        self._writers: dict[int, Any] = {}  # index -> its SummaryWriter, made on its first epoch

    def __call__(self, epoch: int, metrics: dict, index: int = 0) -> None:
        if not 0 <= index < len(self.log_dirs):
            raise ValueError(f"TensorBoardCallback has {len(self.log_dirs)} log folders; got the metrics of model "
                             f"index={index} (give fit_many one folder per model)")
        if index not in self._writers:
            self._writers[index] = self._writer_class(log_dir=str(self.log_dirs[index]))
        writer = self._writers[index]
        for name, value in metrics.items():
            if name != "epoch" and isinstance(value, (int, float)):  # bool is an int: 0 or 1
                writer.add_scalar(name, float(value), epoch)
        writer.flush()

    def close(self) -> None:
        """Close the event files written so far."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardCallback:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, xb: Tensor, eps: Tensor | None, *,
               frozen: Sequence[nn.Parameter] = ()) -> Tensor:
    """One Adam step on each model's mean per-example loss; the one step ``fit`` and ``fit_many`` share.

    ``net(xb, eps)`` returns per-example fields [b] (one model) or [K, b] (``fit_many``'s stack of K models, where
    the sum of the K means gives each model the gradient of its own mean). The ``frozen`` parameters keep their
    values and their Adam moments (no gradient: Adam skips them), for aggressive training's encoder-only and
    decoder-only steps. Returns the batch's sums of (loss, rate, distortion, trained rate): [4] or [K, 4].
    """
    flags = [p.requires_grad for p in frozen]
    for p in frozen:  # no gradient computed for them at all (an encoder step skips the decoder's weight gradients)
        p.requires_grad_(False)
    try:
        out = net(xb, eps)
        net.zero_grad(set_to_none=True)
        out.loss.mean(-1).sum().backward()
    finally:
        for p, flag in zip(frozen, flags, strict=True):
            p.requires_grad_(flag)
    optimizer.step()
    trained = out.rate if out.trained_rate is None else out.trained_rate
    with torch.no_grad():
        return torch.stack((out.loss.sum(-1), out.rate.sum(-1), out.distortion.sum(-1), trained.sum(-1)), dim=-1)


def train_epochs(net: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, seeds: list[int], *,
                 training: TrainingConfig, stacked: bool, progress: bool, desc: str, monitor: Tensor | None = None,
                 on_epoch: Sequence[Callback] = ()) -> list[pd.DataFrame | DivergenceError]:
    """The epochs of ``fit`` (one model, ``stacked=False``) or of ``fit_many`` (``net`` a stack of len(seeds)
    models): per model, its minibatch order and channel noise from its seed (models sharing one seed share them),
    one ``train_step`` per minibatch of x [N, D], and after each epoch the means over ``monitor`` [M, D], if given
    (``monitor_losses``), and ``hook(epoch, row, j)`` for each of ``on_epoch`` with a copy of model j's history
    row. Returns per model its history, or the ``DivergenceError`` of the epoch its loss became NaN or infinite;
    training stops once every model has diverged. ``training``: its ``epochs`` and ``batch_size`` (the optimiser holds
    the step size); ``progress``: the bar and log lines of ``ibkit.progress``."""
    import pandas as pd

    epochs, batch_size = training.epochs, training.batch_size
    k, n, device = len(seeds), x.shape[0], x.device
    shared = len(set(seeds)) == 1  # one minibatch order and one noise stream serve every model
    streams = seeds[:1] if shared else seeds
    orders = [torch.Generator().manual_seed(s) for s in streams]
    noises = [torch.Generator(device).manual_seed(s) for s in streams]
    latent_dim = getattr(net, "latent_dim", 0) if is_stochastic(net) else 0  # 0: a deterministic code, no noise
    lr = optimizer.param_groups[0]["lr"]
    scheduled = net if isinstance(net, RateScheduled) else None  # a kind with KL schedules (warm-up, capacity, ...)
    aggressive = Aggressive(net, x, orders[0]) if getattr(getattr(net, "config", None), "aggressive", False) else None
    if aggressive is not None and k > 1:
        raise ValueError("aggressive=True trains one model at a time (its steps depend on that model's own loss); "
                         "fit_many trains such models one by one")
    histories: list[list[dict]] = [[] for _ in range(k)]
    diverged: list[DivergenceError | None] = [None] * k

    def noise_for(b: int) -> Tensor | None:  # [1, 1 or K, b, d]: what each model's own rsample would draw
        if not latent_dim:
            return None
        eps = torch.stack([torch.empty(1, b, latent_dim, device=device).normal_(generator=g) for g in noises], 1)
        return eps if stacked else eps[:, 0]

    with seeded(seeds[0], device), Progress(desc, epochs, "epochs", show=progress) as bar:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            net.train()
            totals = torch.zeros(k, 4, device=device)
            used = torch.zeros(k, 2, device=device)  # beta_t and C_t, weighted by minibatch size
            perms = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)  # [K or 1, n]
            for i in range(0, n, batch_size):
                idx = perms[:, i: i + batch_size]
                xb = x[idx[0]] if shared or not stacked else x[idx]  # [b, D] shared, or [K, b, D]
                if scheduled is not None:
                    scheduled.set_progress(epoch - 1 + i / n)
                    used += torch.stack(scheduled.schedule_values(), -1).expand(k, 2) * idx.shape[1]
                frozen: Sequence[nn.Parameter] = ()
                if aggressive is not None and aggressive.on:
                    frozen = aggressive.encoder_steps(optimizer, batch_size, noise_for)  # then a decoder step
                totals += train_step(net, optimizer, xb, noise_for(idx.shape[1]), frozen=frozen)
            seconds = (time.perf_counter() - start) / k
            monitored = [{}] * k if monitor is None else monitor_losses(
                net, monitor, seed=seeds[0], latent_dim=latent_dim, k=k, stacked=stacked)
            extra: list[dict] = [{} for _ in range(k)]
            if scheduled is not None:
                for j, (beta_t, capacity_t) in enumerate((used / n).tolist()):
                    extra[j].update(beta_used=beta_t, capacity_used=capacity_t, trained_rate=float(totals[j, 3] / n))
            if aggressive is not None:
                extra[0].update(aggressive.end_epoch(seeds[0]))
            for j, (loss, rate, distortion, _) in enumerate((totals / n).tolist()):
                if diverged[j] is None and not math.isfinite(loss):
                    diverged[j] = divergence(epoch, loss, histories[j], lr)
                elif diverged[j] is None:
                    histories[j].append(dict(epoch=epoch, loss=loss, rate=rate, distortion=distortion,
                                             seconds=seconds, **extra[j], **monitored[j]))
                    for hook in on_epoch:
                        hook(epoch, dict(histories[j][-1]), j)
            bar.set_postfix(loss=f"{totals[:, 0].mean().item() / n:.3f}")
            bar.update(1)
            if all(d is not None for d in diverged):
                break
    net.eval()
    return [diverged[j] or pd.DataFrame(histories[j]) for j in range(k)]


class Aggressive:
    """He et al. 2019's aggressive training against a lagging inference network ("Lagging inference networks and
    posterior collapse in VAEs", Algorithm 1). While on, each decoder step follows encoder-only steps on fresh
    random minibatches, up to ``MAX_STEPS``, until the encoder's mean loss over the last ``CHECK_EVERY`` steps
    stops improving; after each epoch the mutual information I(X;Z) is estimated (InfoNCE, ``mi_bounds``, on the
    first ``MI_ROWS`` training rows at a fixed seed) and training turns plain once it stops rising.
    """

    MAX_STEPS = 100
    CHECK_EVERY = 15
    MI_ROWS = 1000

    def __init__(self, net: nn.Module, x: Tensor, order: torch.Generator):
        self.net, self.x, self.order = net, x, order
        self.on, self.steps, self.mi = True, 0, -math.inf
        inference = {id(p) for _, p in trainable_parameters(net, "encoder")}
        self.encoder = [p for p in net.parameters() if id(p) in inference]
        self.decoder = [p for p in net.parameters() if id(p) not in inference]

    def encoder_steps(self, optimizer: torch.optim.Optimizer, batch_size: int, noise_for) -> list[nn.Parameter]:
        """Encoder-only steps until their loss stops improving; returns what the next step keeps still (the
        encoder: the step after these is the decoder's)."""
        best, total, seen = math.inf, 0.0, 0
        for step in range(1, self.MAX_STEPS + 1):
            idx = torch.randint(len(self.x), (min(batch_size, len(self.x)),), generator=self.order).to(self.x.device)
            total += float(train_step(self.net, optimizer, self.x[idx], noise_for(len(idx)), frozen=self.decoder)[0])
            seen += len(idx)
            self.steps += 1
            if step % self.CHECK_EVERY == 0:
                if total / seen > best:
                    break
                best, total, seen = total / seen, 0.0, 0
        return self.encoder

    def end_epoch(self, seed: int) -> dict:
        """The epoch's history columns (aggressive, encoder_steps, mi); turns aggressive training off once the MI
        estimate stops rising."""
        from ibkit.estimators import mi_bounds  # lazy: the estimators import the models, which import this

        row = dict(aggressive=self.on, encoder_steps=self.steps)
        mi = mi_bounds(self.net, self.x[: self.MI_ROWS], seed=seed)["infonce"]
        self.net.train()
        self.on = self.on and mi > self.mi  # off for good once the estimate falls (He et al.: cur_mi < pre_mi)
        self.mi, self.steps = mi, 0
        return {**row, "mi": mi}


def monitor_losses(net: nn.Module, x: Tensor, *, seed: int, latent_dim: int, k: int, stacked: bool,
                   chunk: int = 1024) -> list[dict]:
    """Per model of ``net`` (one, or ``stacked``: a stack of k): the mean loss, rate and distortion over x [M, D],
    as columns monitor_loss, monitor_rate, monitor_distortion. One draw of the code's noise per row, from a
    generator seeded by ``seed`` (the same draws every epoch, so the curve moves with the model alone; the training
    noise is untouched)."""
    noise = torch.Generator(x.device).manual_seed(seed)
    totals = torch.zeros(k, 3, dtype=torch.float64, device=x.device)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = x[i: i + chunk]
            eps = None
            if latent_dim:  # [1, b, d], or [1, 1, b, d] broadcast over a stack's models
                shape = (1, 1, len(xb), latent_dim) if stacked else (1, len(xb), latent_dim)
                eps = torch.empty(shape, device=x.device).normal_(generator=noise)
            out = net(xb, eps)
            totals += torch.stack((out.loss.sum(-1), out.rate.sum(-1), out.distortion.sum(-1)), -1).reshape(k, 3)
    net.train(was_training)
    return [dict(monitor_loss=loss, monitor_rate=rate, monitor_distortion=distortion)
            for loss, rate, distortion in (totals / len(x)).tolist()]
