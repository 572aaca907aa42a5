"""Convolutional VAEs (``network="conv"``): ibkit.fit against a bare PyTorch loop of the identical network, and K of
them trained as one batch (``fit_many``, grouped convolutions) against one at a time, side by side in one run.

MNIST-sized input (1x28x28; two 4x4 stride-2 convolutions of 32 and 64 channels, one hidden layer of 256 each way,
d = 16, Bernoulli decoder, batch 128, Adam 1e-3). Uses the real MNIST test images from ../shared/data/mnist or
$IBKIT_DATA when present, random binary images otherwise. Each timed run starts from fresh weights and a fresh
Adam state; the two kinds of run alternate, so drifts of a noisy machine hit both alike. Prints the median seconds
per epoch and the ratio (target: ibkit / bare <= 1.10), then the batched sweep's median seconds against one at a
time and their ratio (aim: 2x or more on two cores).

    python benchmarks/bench_conv.py [--epochs 2] [--repeats 3] [--n 8000] [--k 8] [--sweep-n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from bench_train import alternate, load_images, print_ratio, side_by_side
from torch import nn

import ibkit

D, LATENT, HIDDEN, CHANNELS = 784, 16, (256,), (32, 64)


def build(seed: int, beta: float = 1.0):
    return ibkit.build_model("vae", D, LATENT, network="conv", channels=CHANNELS, hidden=HIDDEN, beta=beta,
                             seed=seed)


class BareConvVAE(nn.Module):
    """build(seed) written out by hand."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 2 * LATENT))
        self.dec = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 64 * 7 * 7), nn.ReLU(),
                                 nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(32, 1, 4, 2, 1, bias=False), nn.Flatten())
        self.bias = nn.Parameter(torch.zeros(D))

    def loss(self, x):
        mu, logvar = self.enc(x.view(-1, 1, 28, 28)).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(self.dec(z) + self.bias, x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return (rec + kl).mean()


def sweep_times(x, k: int, epochs: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of training k conv VAEs (betas 0.5..2, one seed each) with fit_many and with k fits, alternating."""
    betas = torch.logspace(-0.3, 0.3, k).tolist()

    def batched(rep):
        models = [build(rep * k + i, b) for i, b in enumerate(betas)]
        start = time.perf_counter()
        ibkit.fit_many(models, x, epochs=epochs, seed=list(range(k)), progress=False, device="cpu")
        return time.perf_counter() - start

    def alone(rep):
        models = [build(rep * k + i, b) for i, b in enumerate(betas)]
        start = time.perf_counter()
        for i, m in enumerate(models):
            ibkit.fit(m, x, epochs=epochs, seed=i, progress=False, device="cpu")
        return time.perf_counter() - start

    return alternate({"batched": batched, "alone": alone}, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed training run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating")
    parser.add_argument("--n", type=int, default=8000, help="images for the fit-against-bare comparison")
    parser.add_argument("--k", type=int, default=8, help="models in the batched sweep")
    parser.add_argument("--sweep-n", type=int, default=2000, help="images for the sweep comparison")
    args = parser.parse_args()
    x, source = load_images(args.n)
    assert sum(p.numel() for p in BareConvVAE().parameters()) == sum(p.numel() for p in build(0).parameters())
    print(f"data: {source}, {len(x)} images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"conv VAE: channels {CHANNELS}, hidden {HIDDEN}, d = {LATENT}")
    print_ratio(side_by_side(build, BareConvVAE, x, args.epochs, args.repeats), args.epochs)
    times = sweep_times(x[: args.sweep_n], args.k, args.epochs, args.repeats)
    batched, alone = statistics.median(times["batched"]), statistics.median(times["alone"])
    print(f"\n{args.k} conv VAEs, {args.sweep_n} images, {args.epochs} epochs: fit_many {batched:.2f} s, one at a "
          f"time {alone:.2f} s (runs: {', '.join(f'{t:.2f}' for t in times['batched'])} / "
          f"{', '.join(f'{t:.2f}' for t in times['alone'])})")
    print(f"ratio one at a time / batched = {alone / batched:.2f}x  (aim >= 2x on two cores)")


if __name__ == "__main__":
    main()
