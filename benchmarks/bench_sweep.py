"""A sweep of K VAEs trained as one batched model (``ibkit.fit_many``) against one at a time (``ibkit.fit``),
side by side in one process.

K digits-sized VAEs (64-H-H-8, Bernoulli decoder, diagonal posterior, batch 128, Adam 1e-3; K different
betas) on the digits training split, for H = 128 and 256. Each timed run starts from fresh weights and trains
--epochs epochs; the two kinds of run alternate, so drifts of a noisy machine hit both alike. Prints the median
seconds of each, their ratio (target at H = 128, K = 16: batched >= 4x faster), the batched run's achieved
GFLOP/s and a large-matmul peak measured in the same run (the room left). ``--seeds shared`` gives every model
seed 0 (one minibatch order and noise stream, the case of a sweep over beta at one seed); ``distinct`` gives
model k seed k (each its own minibatches).

    python benchmarks/bench_sweep.py [--k 16] [--epochs 5] [--repeats 5] [--seeds shared|distinct] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import ibkit


def models(k: int, width: int, input_dim: int, device) -> list:
    betas = torch.logspace(-1, 1, k).tolist()
    return [ibkit.build_model("vae", input_dim, 8, hidden=(width, width), beta=b, seed=i).to(device)
            for i, b in enumerate(betas)]


def flops_per_epoch(width: int, input_dim: int, n: int) -> float:
    """Multiply-adds of one epoch of one model, forward and backward (about 3x the forward), as FLOPs."""
    latent = 8
    macs = input_dim * width + width * width + width * 2 * latent + latent * width + width * width + width * input_dim
    return 3 * 2 * macs * n


def matmul_peak(device, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matmul, the best of ``repeats``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", choices=("shared", "distinct"), default="shared")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = ibkit.checks.resolve_device(args.device)
    ds = ibkit.data.load("digits")
    x = ds.train.to(device)
    seeds = [0] * args.k if args.seeds == "shared" else list(range(args.k))
    print(f"device {device}, torch threads {torch.get_num_threads()}, K = {args.k}, {args.epochs} epochs of "
          f"{len(x)} digits, batch 128, seeds {args.seeds}")
    peak = matmul_peak(device)
    print(f"large-matmul peak: {peak:.0f} GFLOP/s")
    for width in args.widths:
        one, many = [], []
        warm = models(2, width, ds.input_dim, device)  # first calls pay for allocations and lazy imports
        ibkit.fit_many(warm, x, epochs=1, progress=False, device=device)
        ibkit.fit(warm[0], x, epochs=1, progress=False, device=device)
        for _ in range(args.repeats):
            alone, batch = models(args.k, width, ds.input_dim, device), models(args.k, width, ds.input_dim, device)
            one.append(timed(lambda alone=alone: [ibkit.fit(m, x, epochs=args.epochs, seed=s, progress=False,
                                                            device=device) for m, s in zip(alone, seeds, strict=True)]))
            many.append(timed(lambda batch=batch: ibkit.fit_many(batch, x, epochs=args.epochs, seed=seeds,
                                                                 progress=False, device=device)))
        t_one, t_many = statistics.median(one), statistics.median(many)
        gflops = args.k * args.epochs * flops_per_epoch(width, ds.input_dim, len(x)) / t_many / 1e9
        print(f"64-{width}-{width}-8: one at a time {t_one:.2f} s, batched {t_many:.2f} s: {t_one / t_many:.2f}x; "
              f"batched {gflops:.0f} GFLOP/s ({100 * gflops / peak:.0f}% of the matmul peak)")


if __name__ == "__main__":
    main()
