"""ibkit.fit against a bare PyTorch loop of the identical VAE, loss and batch size, in one process.

MNIST-sized input (784-512-512-16, Bernoulli decoder, diagonal posterior, batch 128, Adam 1e-3). Uses the
real MNIST test images from ../shared/data/mnist or $IBKIT_DATA when present, random binary images otherwise.
Each timed run starts from fresh weights and a fresh Adam state and trains --epochs epochs, as a user's
``fit`` call does; the two kinds of run alternate, so drifts of a noisy machine hit both alike. Prints the
median seconds per epoch of each and the ratio (target: ibkit / bare <= 1.10).

    python benchmarks/bench_train.py [--epochs 3] [--repeats 4] [--n 8000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import ibkit


def load_images(n: int) -> tuple[torch.Tensor, str]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    for folder in (os.environ.get("IBKIT_DATA"), shared):
        if folder and Path(folder).exists():
            ds = ibkit.data.load("mnist", path=folder, download=False, test_fraction=0.2)
            return ds.train[:n], f"MNIST ({folder})"
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 784, generator=g) > 0.87).float(), "random binary images (no MNIST found)"


class BareVAE(nn.Module):
    """The same network as ibkit.build_model("vae", 784, 16, hidden=(512, 512)), written out by hand."""

    def __init__(self, d=784, h=512, k=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2 * k))
        self.dec = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))

    def loss(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return (rec + kl).mean()


def bare_epoch(model, opt, x, batch_size, gen):
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch_size):
        loss = model.loss(x[perm[i : i + batch_size]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed training run")
    parser.add_argument("--repeats", type=int, default=4, help="timed runs of each, alternating")
    parser.add_argument("--n", type=int, default=8000)
    args = parser.parse_args()
    x, source = load_images(args.n)
    reference = ibkit.build_model("vae", 784, 16, hidden=(512, 512))
    assert sum(p.numel() for p in BareVAE().parameters()) == sum(p.numel() for p in reference.parameters())
    times = side_by_side(lambda rep: ibkit.build_model("vae", 784, 16, hidden=(512, 512), seed=rep), BareVAE, x,
                         args.epochs, args.repeats)
    print(f"data: {source}, {len(x)} images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print_ratio(times, args.epochs)


def side_by_side(make_model, make_bare, x, epochs: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per epoch of ``ibkit.fit`` on ``make_model(rep)`` and of the bare loop (``bare_epoch``) on
    ``make_bare()``, each run from fresh weights and optimiser state (what a user's fit call does): one warm-up of
    each, not counted, then ``repeats`` runs of each, alternating which goes first so neither always follows."""
    def ibkit_run(rep):
        model = make_model(rep)
        start = time.perf_counter()
        ibkit.fit(model, x, epochs=epochs, seed=rep, progress=False, device="cpu")
        return (time.perf_counter() - start) / epochs

    def bare_run(rep):
        torch.manual_seed(rep)
        bare = make_bare()
        opt = torch.optim.Adam(bare.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(rep)
        start = time.perf_counter()
        for _ in range(epochs):
            bare_epoch(bare, opt, x, 128, gen)
        return (time.perf_counter() - start) / epochs

    bare_run(999)
    ibkit_run(999)
    return alternate({"ibkit": ibkit_run, "bare": bare_run}, repeats)


def alternate(runs: dict, repeats: int) -> dict[str, list[float]]:
    """``repeats`` timed runs of each of ``runs`` (name -> fn(rep) returning seconds), alternating which goes first,
    so that drifts of a noisy machine hit each alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(repeats):
        order = list(runs.items())
        for name, run in order if rep % 2 == 0 else order[::-1]:
            times[name].append(run(rep))
    return times


def print_ratio(times: dict[str, list[float]], epochs: int, target: float = 1.10) -> None:
    """The medians of ``side_by_side``'s runs and their ratio, against ``target``."""
    ib, br = statistics.median(times["ibkit"]), statistics.median(times["bare"])
    print(f"{len(times['ibkit'])} runs of {epochs} epochs each, from fresh weights and optimiser state, alternating")
    print(f"ibkit.fit  {ib:.3f} s/epoch  (runs: {', '.join(f'{t:.3f}' for t in times['ibkit'])})")
    print(f"bare loop  {br:.3f} s/epoch  (runs: {', '.join(f'{t:.3f}' for t in times['bare'])})")
    print(f"ratio ibkit / bare = {ib / br:.3f}  (target <= {target:.2f})")

if __name__ == "__main__":
    main()
