"""ibkit.fit against a bare PyTorch loop of the identical VAE, loss and batch size, in one process.

MNIST-sized input (784-512-512-16, Bernoulli decoder, diagonal posterior, batch 128, Adam 1e-3). Uses the
real MNIST test images from ../shared/data/mnist or $IBKIT_DATA when present, random binary images otherwise.
The two loops alternate, epoch by epoch, so drifts of a noisy machine hit both alike; prints the median
seconds per epoch of each and the ratio (target: ibkit / bare <= 1.10).

    python benchmarks/bench_train.py [--epochs 5] [--n 8000]
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
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n", type=int, default=8000)
    args = parser.parse_args()
    x, source = load_images(args.n)
    torch.manual_seed(0)
    bare = BareVAE()
    bare_opt = torch.optim.Adam(bare.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    model = ibkit.build_model("vae", 784, 16, hidden=(512, 512))
    assert sum(p.numel() for p in bare.parameters()) == sum(p.numel() for p in model.parameters())
    bare_epoch(bare, bare_opt, x, 128, gen)  # warm-up both paths
    ibkit.fit(model, x, epochs=1, progress=False, device="cpu")
    ib_times, bare_times = [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        ibkit.fit(model, x, epochs=1, seed=epoch, progress=False, device="cpu")
        ib_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_epoch(bare, bare_opt, x, 128, gen)
        bare_times.append(time.perf_counter() - start)
    ib, br = statistics.median(ib_times), statistics.median(bare_times)
    print(f"data: {source}, {len(x)} images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"ibkit.fit  {ib:.3f} s/epoch  (epochs: {', '.join(f'{t:.3f}' for t in ib_times)})")
    print(f"bare loop  {br:.3f} s/epoch  (epochs: {', '.join(f'{t:.3f}' for t in bare_times)})")
    print(f"ratio ibkit / bare = {ib / br:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
