"""One trainer: minibatch Adam on the model's per-example loss, with a per-epoch history."""

from __future__ import annotations

import math
import sys
import time

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ibkit.checks import check_choice, check_model_data, check_number
from ibkit.seeding import seeded


class DivergenceError(ValueError):
    """Training produced a NaN or infinite loss. ``history`` holds the epochs finished before it."""

    def __init__(self, message: str, epoch: int, history: pd.DataFrame):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


def divergence(epoch: int, loss: float, rows: list[dict], lr: float) -> DivergenceError:
    """The error for a loss that became ``loss`` (NaN or infinite) in ``epoch``, after the history ``rows``."""
    last = f"{rows[-1]['loss']:.6g}" if rows else "none (it diverged in the first epoch)"
    return DivergenceError(f"training diverged: the loss became {loss} in epoch {epoch}; last finite epoch loss: "
                           f"{last}. Lower lr (now {lr}) or check the data.", epoch, pd.DataFrame(rows))


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


def trainable_parameters(model: nn.Module, trainable: str) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs that training moves. "all": every parameter that requires grad; "encoder": those
    of q(z|x) only, the encoder and the posterior family's own (an IAF's steps), not the decoder or likelihood."""
    check_choice("trainable", trainable, ("all", "encoder"))
    inference = ("encoder.", "family.")
    return [(name, p) for name, p in model.named_parameters()
            if p.requires_grad and (trainable == "all" or name.startswith(inference))]


def fit(
    model: nn.Module,
    x_train,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "auto",
    trainable: str = "all",
) -> pd.DataFrame:
    """Train ``model`` (an ibkit autoencoder: ``forward`` returns per-example ``loss, rate, distortion``)
    with Adam on minibatches of ``x_train`` [N, D], minimising the mean per-example loss.

    The minibatch order and the model's noise come from ``seed`` (the global random state is left as it
    was), so the same seed gives the same numbers on the CPU. Returns the per-epoch history: epoch, loss,
    rate, distortion (means over the epoch's examples, nats) and seconds. A NaN or infinite loss stops
    training with ``DivergenceError`` naming the epoch and the last finite loss.

    trainable: "all" (default) or "encoder": only q(z|x) learns (the encoder and the posterior family's own
    parameters, e.g. an IAF's steps), the decoder and prior stay as they are (to measure inference on a fixed
    generative model, e.g. ``load("gaussian").true_model(posterior=...)``).
    """
    params = [p for _, p in trainable_parameters(model, trainable)]  # the same objects after model.to(device)
    check_number("epochs", epochs, low=1, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("lr", lr, low=0, low_open=True)
    check_number("seed", seed, low=0, integer=True)
    device = resolve_device(device)
    x = check_model_data(model, x_train, "x_train")
    model.to(device)
    x = x.to(device)
    n = x.shape[0]
    optimizer = torch.optim.Adam(params, lr=lr)
    order = torch.Generator().manual_seed(seed)
    rows = []
    show = progress and sys.stderr.isatty()
    with seeded(seed, device):
        bar = tqdm(range(1, epochs + 1), desc="fit", unit="epoch", disable=not show, leave=False)
        for epoch in bar:
            start = time.perf_counter()
            totals = torch.zeros(3, device=device)  # loss, rate, distortion, summed over examples
            perm = torch.randperm(n, generator=order).to(device)
            model.train()
            for i in range(0, n, batch_size):
                out = model(x[perm[i : i + batch_size]])
                loss = out.loss.mean()
                model.zero_grad(set_to_none=True)  # frozen parts too: their gradients are never kept
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    totals += torch.stack((out.loss.sum(), out.rate.sum(), out.distortion.sum()))
            loss_mean, rate_mean, dist_mean = (totals / n).tolist()
            if not math.isfinite(loss_mean):
                raise divergence(epoch, loss_mean, rows, lr)
            rows.append(dict(epoch=epoch, loss=loss_mean, rate=rate_mean, distortion=dist_mean,
                             seconds=time.perf_counter() - start))
            if show:
                bar.set_postfix(loss=f"{loss_mean:.3f}")
    model.eval()
    return pd.DataFrame(rows)
