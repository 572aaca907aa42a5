"""Many models of one architecture trained as one batched model (``fit_many``).

The K models become one stacked model: each linear layer a ``StackedLinear`` holding the K weight matrices
[K, in, out] (one batched matmul; models that share a seed share their minibatch, as a stride-0 view), every other
parameter and each differing hyper-parameter buffer (beta, noise, sparsity) stacked as [K, 1, ...]. The model's
own ``forward`` then runs unchanged on tensors with a leading model axis ([K, B, ...]) and one Adam step updates
every model. Adam is element-wise, so each model follows the trajectory its own ``fit`` would (same seed: the same
minibatch order and the same channel noise, drawn from a generator per model) up to floating-point rounding.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ibkit.checks import check_model_data, check_number
from ibkit.config import TrainingConfig, knob_fields
from ibkit.estimators._common import unit_count
from ibkit.models.networks import ImageConvs
from ibkit.train import (
    Callback,
    DivergenceError,
    check_run,
    check_trainable,
    fit,
    resolve_device,
    train_epochs,
    trainable_parameters,
    training_of,
)

if TYPE_CHECKING:
    import pandas as pd


def varying(config) -> tuple[str, ...]:
    """What may differ between the models of one batch: the config's knobs (fields marked ``knob``) and the seed.

    Args:
        config: a model's config.

    Returns:
        the names of the knob fields, then "seed".
    """
    return (*knob_fields(config), "seed")


def architecture(model: nn.Module) -> tuple:
    """What must be equal for models to train as one batch: class and config apart from its knobs and seed, and
    the shape and trainability of every parameter.

    Args:
        model: an ibkit model (with a dataclass ``config``).

    Returns:
        (class name, the config's other fields, (name, shape, requires_grad) of every parameter).

    Raises:
        ValueError: a model without a dataclass config.
    """
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"fit_many needs ibkit models (with a config); got {type(model).__name__}")
    fixed = {k: v for k, v in dataclasses.asdict(config).items() if k not in varying(config)}
    shapes = tuple((n, tuple(p.shape), p.requires_grad) for n, p in model.named_parameters())
    return type(model).__name__, tuple(sorted(fixed.items())), shapes


def fit_many(models: Sequence[nn.Module], x_train, training: TrainingConfig | None = None, *,
             seed: int | Sequence[int] = 0, trainable: str = "all", max_models: int | None = None, x_monitor=None,
             callbacks: Sequence[Callback] = (), progress: bool = True,
             **settings) -> list[pd.DataFrame | DivergenceError]:
    """Train K models of one architecture (different beta, noise, sparsity, seed) together; in place.

    Equivalent to ``[fit(m, x_train, training, seed=s, ...) for m, s in zip(models, seeds)]`` up to floating-point
    rounding, in one batched forward and backward pass per step.

    Args:
        models: K models of one architecture (only their knobs and seeds may differ).
        x_train: [N, D] training data.
        training: the settings (``TrainingConfig``), as in ``fit``; ``**settings`` replace its fields.
        seed: one seed for all or one per model (minibatch order and channel noise, as in ``fit``).
        trainable: "all" or "encoder", as in ``fit``.
        max_models: how many train at once (default: as many as fit a memory budget; see ``models_per_batch``);
            more are trained in consecutive groups.
        x_monitor: held-out data measured after every epoch, as in ``fit``.
        callbacks: functions called as ``callback(epoch, metrics, index)`` once per model and epoch (``Callback``):
            ``index`` is the model's position in ``models`` (0..K-1, across the groups of ``max_models``),
            ``metrics`` a copy of that model's history row for the epoch; models of one group are called in index
            order after each epoch, and a model whose loss became NaN or infinite is not called for that epoch or
            after. E.g. ``TensorBoardCallback([folder_of_model_0, folder_of_model_1, ...])``.
        progress: as in ``fit``.
        **settings: fields of ``TrainingConfig`` replacing those of ``training`` (epochs=50, lr=1e-3, ...).

    Returns:
        one entry per model: its per-epoch history (as ``fit`` returns it), or, for a model whose loss became NaN
            or infinite, the ``DivergenceError`` ``fit`` would have raised (its ``history`` holds the epochs
            before). The other models are unaffected by one that diverges.

    Raises:
        ValueError: no models, models of different architectures, a number of seeds that is neither one nor one
            per model, or a setting ``fit`` refuses.
    """
    models = list(models)
    if not models:
        raise ValueError("models is empty; fit_many needs at least one model")
    seeds = [seed] * len(models) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(models):
        raise ValueError(f"seed has {len(seeds)} values for {len(models)} models; give one seed or one per model")
    config = training_of(training, settings, "fit_many")
    callbacks = check_run(seeds, trainable, callbacks)
    for m in models:
        check_trainable(m)
    first = architecture(models[0])
    for i, m in enumerate(models[1:], start=1):
        if architecture(m) != first:
            raise ValueError(f"fit_many needs models of one architecture; model {i} differs from model 0 in "
                             f"{_difference(models[0], m)} (only {', '.join(varying(models[0].config))} may differ)")
    device = resolve_device(config.device)
    x = check_model_data(models[0], x_train, "x_train").to(device)
    monitor = None if x_monitor is None else check_model_data(models[0], x_monitor, "x_monitor").to(device)
    if max_models is None:
        max_models = models_per_batch(models[0], config.batch_size, device)
    check_number("max_models", max_models, low=1, integer=True)
    if getattr(models[0].config, "aggressive", False):  # its steps follow its own loss: one model at a time
        run = dict(trainable=trainable, x_monitor=monitor, progress=progress)
        return [_fit_alone(m, x, config, seed=s, callbacks=[partial(_at_index, cb, i) for cb in callbacks], **run)
                for i, (m, s) in enumerate(zip(models, seeds, strict=True))]
    out = []
    for i in range(0, len(models), max_models):
        hooks = [partial(_offset_index, cb, i) for cb in callbacks]  # the group's j is models' i + j
        out += _fit_group(models[i: i + max_models], seeds[i: i + max_models], x, config,
                          trainable=trainable, monitor=monitor, hooks=hooks, progress=progress)
    return out


def _at_index(callback: Callback, index: int, epoch: int, metrics: dict) -> None:
    """A fit_many callback as ``fit`` calls its own (epoch, metrics), for the model at ``index``."""
    callback(epoch, metrics, index)


def _offset_index(callback: Callback, offset: int, epoch: int, metrics: dict, j: int) -> None:
    """A fit_many callback for a group starting at model ``offset``: its model j is model offset + j."""
    callback(epoch, metrics, offset + j)


def _difference(a: nn.Module, b: nn.Module) -> str:
    config = getattr(a, "config")  # noqa: B009 (an nn.Module attribute: typed Any, not Tensor | Module)
    ca, cb = dataclasses.asdict(config), dataclasses.asdict(getattr(b, "config"))  # noqa: B009
    keys = [k for k in ca if k not in varying(config) and ca[k] != cb.get(k)]
    if type(a) is not type(b):
        return f"class: {type(a).__name__} vs {type(b).__name__}"
    if keys:
        return ", ".join(f"{k}: {ca[k]!r} vs {cb[k]!r}" for k in keys)
    return "parameter shapes or which parameters train"


def models_per_batch(model: nn.Module, batch_size: int, device: torch.device, budget: int | None = None) -> int:
    """How many copies of ``model`` train at once within ``budget`` bytes (default: 2 GiB on the CPU, half the
    free memory of a GPU): per model, the weights with their gradients and Adam's two moments (4 copies) and the
    activations of a minibatch, forward and backward (about 4 floats per unit of every layer's width).

    Args:
        model: one of the models.
        batch_size: rows per minibatch.
        device: where they train.
        budget: bytes, or None for the default above.

    Returns:
        the number of models per batch, at least 1.
    """
    if budget is None:
        budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 2 * 2**30
    weights = sum(p.numel() for p in model.parameters())
    per_model = 4 * (4 * weights + 4 * batch_size * unit_count(model))
    return max(1, budget // per_model)


class StackedLinear(nn.Module):
    """K linear maps as one module: weight [K, in, out], bias [K, 1, out], and the mask [in, out] of a masked
    layer (MADE), computed in the input's dtype: one batched matmul. Input [..., K, B, in], or [B, in] shared by
    the K models; output [..., K, B, out]."""

    mask: Tensor | None

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        first = layers[0]
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().T for layer in layers]).contiguous(),
                                   requires_grad=first.weight.requires_grad)
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).unsqueeze(1),
                                 requires_grad=first.bias.requires_grad)
        mask = getattr(first, "mask", None)
        self.register_buffer("mask", None if mask is None else mask.T.contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight if self.mask is None else self.weight * self.mask
        weight, bias = (weight, self.bias) if x.dtype == weight.dtype else (weight.to(x.dtype), self.bias.to(x.dtype))
        k, n_in, n_out = weight.shape
        if x.dim() == 2:  # [B, in], the same for every model (a stride-0 view, not a copy)
            x = x.expand(k, *x.shape)
        if x.dim() == 3:  # [K, B, in]: the training step's case, without reshapes
            return torch.baddbmm(bias, x, weight)
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:]).movedim(0, 1).reshape(k, -1, n_in)  # [K, S * B, in]
        out = torch.baddbmm(bias, flat, weight)
        return out.view(k, -1, x.shape[-2], n_out).movedim(0, 1).reshape(*lead, k, x.shape[-2], n_out)

    def unstack_into(self, layers: Sequence[nn.Linear]) -> None:
        with torch.no_grad():
            for k, layer in enumerate(layers):
                layer.weight.copy_(self.weight[k].T)
                layer.bias.copy_(self.bias[k, 0])


class StackedImageConvs(nn.Module):
    """K ``ImageConvs`` of one shape as one module: each convolution a grouped one (groups = K) whose K groups are
    the K models' layers, so one call convolves every model's images. Input [..., K, B, in] (a model axis third
    from last, as ``StackedLinear`` gives it), or [B, in] shared by the K models; output [..., K, B, out]."""

    def __init__(self, stacks: Sequence[ImageConvs]):
        super().__init__()
        first, self.k = stacks[0], len(stacks)
        self.in_shape, self.out_shape = first.in_shape, first.out_shape
        self.convs = nn.Sequential(*(_grouped([s.convs[i] for s in stacks]) for i in range(len(first.convs))))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # [B, in], the same for every model
            x = x.expand(self.k, *x.shape)
        lead, b = x.shape[:-3], x.shape[-2]
        per_model = x.movedim(-3, 0).reshape(self.k, -1, *self.in_shape)  # [K, M, C, H, W]
        images = per_model.transpose(0, 1).reshape(per_model.shape[1], -1, *self.in_shape[1:])  # [M, K*C, H, W]
        out = self.convs(images).reshape(images.shape[0], self.k, -1).transpose(0, 1)  # [K, M, F]
        return out.reshape(self.k, *lead, b, -1).movedim(0, -3)

    def unstack_into(self, stacks: Sequence[ImageConvs]) -> None:
        with torch.no_grad():
            for i, grouped in enumerate(self.convs):
                for name, p in grouped.named_parameters():
                    for k, part in enumerate(p.chunk(self.k)):
                        stacks[k].convs[i].get_parameter(name).copy_(part)


def _grouped(layers: Sequence[Any]) -> nn.Module:
    """K copies of one layer as one: a convolution (or transposed one) with groups = K whose weight and bias are
    the K layers' concatenated; any other layer (a ReLU) as it is."""
    first, k = layers[0], len(layers)
    if not isinstance(first, (nn.Conv2d, nn.ConvTranspose2d)):
        return copy.deepcopy(first)
    grouped = copy.deepcopy(first)  # weight [out, in, kh, kw], or [in, out, kh, kw] transposed: K-fold on dim 0
    grouped.in_channels, grouped.out_channels, grouped.groups = k * first.in_channels, k * first.out_channels, k
    grouped.weight = nn.Parameter(torch.cat([layer.weight.detach() for layer in layers]),
                                  requires_grad=first.weight.requires_grad)
    if first.bias is not None:
        grouped.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]),
                                    requires_grad=first.bias.requires_grad)
    return grouped


STACKED = (StackedLinear, StackedImageConvs)  # the modules that stack their K models' parameters their own way


def stack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One model whose forward computes all K ``models`` at once: a copy of the first with every ``nn.Linear``
    replaced by a ``StackedLinear`` of the K layers, and every other parameter, and every buffer whose value
    differs between the models, stacked as [K, 1, *shape] (a model axis and a singleton example axis).

    Args:
        models: K models of one architecture (``architecture``).

    Returns:
        the stacked model.
    """
    stacked = copy.deepcopy(models[0])
    for name, module in list(stacked.named_modules()):
        if isinstance(module, nn.ReLU):  # on a fresh matmul output that backward does not need: in place
            module.inplace = True
        if isinstance(module, (nn.Linear, ImageConvs)):
            parent, _, leaf = name.rpartition(".")
            kind = StackedLinear if isinstance(module, nn.Linear) else StackedImageConvs
            setattr(stacked.get_submodule(parent), leaf, kind(_layers(models, name)))
    for name, p in list(stacked.named_parameters()):
        if not _in_stacked(stacked, name):
            value = torch.stack([m.get_parameter(name).detach() for m in models]).unsqueeze(1)
            _set(stacked, name, nn.Parameter(value, requires_grad=p.requires_grad))
    for name, _ in list(stacked.named_buffers()):
        if not _in_stacked(stacked, name):
            values = [m.get_buffer(name) for m in models]
            if any(not torch.equal(v, values[0]) for v in values[1:]):
                _set(stacked, name, torch.stack(values).unsqueeze(1))
    return stacked


def unstack_into(stacked: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy the trained weights of ``stack_models(models)`` back into each of ``models``.

    Args:
        stacked: the model ``stack_models(models)`` made.
        models: the K models, in the same order.
    """
    with torch.no_grad():
        for name, module in stacked.named_modules():
            if isinstance(module, STACKED):
                module.unstack_into(_layers(models, name))
        for name, p in stacked.named_parameters():
            if not _in_stacked(stacked, name):
                for k, m in enumerate(models):
                    m.get_parameter(name).copy_(p[k, 0])


def _layers(models: Sequence[nn.Module], name: str) -> list:
    """The layer ``name`` (an ``nn.Linear`` or ``ImageConvs``) of each model."""
    return [m.get_submodule(name) for m in models]


def _in_stacked(stacked: nn.Module, name: str) -> bool:
    """Whether the parameter or buffer ``name`` lies inside a ``StackedLinear`` or ``StackedImageConvs`` (stacked
    already, its own way)."""
    parts = name.split(".")[:-1]
    return any(isinstance(stacked.get_submodule(".".join(parts[:i])), STACKED) for i in range(1, len(parts) + 1))


def _set(module: nn.Module, name: str, value) -> None:
    parent, _, leaf = name.rpartition(".")
    owner = module.get_submodule(parent)
    if isinstance(value, nn.Parameter):
        delattr(owner, leaf)
        owner.register_parameter(leaf, value)
    else:
        owner.register_buffer(leaf, value, persistent=False)


def _fit_alone(model: nn.Module, x: Tensor, training: TrainingConfig, **run):
    """``fit`` of one model, its ``DivergenceError`` returned rather than raised."""
    try:
        return fit(model, x, training, **run)
    except DivergenceError as e:
        return e


def _fit_group(models: list, seeds: list[int], x: Tensor, training: TrainingConfig, *, trainable: str,
               monitor: Tensor | None, hooks: list, progress: bool) -> list:
    """Stack the group, train it (``train_epochs``, one ``train_step`` per minibatch, ``hooks(epoch, row, j)`` after
    each epoch for its model j) and copy the weights back."""
    stacked = stack_models(models).to(x.device)
    optimizer = torch.optim.Adam([p for _, p in trainable_parameters(stacked, trainable)], lr=training.lr, fused=True)
    outcomes = train_epochs(stacked, optimizer, x, seeds, training=training, stacked=True, progress=progress,
                            desc=f"fit_many ({len(models)} models)",
                            monitor=monitor, on_epoch=hooks)
    unstack_into(stacked, models)
    for m in models:
        m.eval()
    return outcomes
