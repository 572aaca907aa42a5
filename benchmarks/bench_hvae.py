"""A two-layer hierarchical VAE: ibkit.fit against a bare PyTorch loop of the identical network, and the cost of
IWAE with k = 5,000 on 1,000 images.

MNIST-sized input (784-512-512, latent_dims (16, 8), 256 units between the latent layers, Bernoulli decoder, batch
128, Adam 1e-3), inferred top-down (default) or bottom-up. Uses the real MNIST test images from
../shared/data/mnist or $IBKIT_DATA when present, random binary images otherwise. Each timed run starts from
fresh weights and a fresh Adam state and trains --epochs epochs, as a user's ``fit`` call does; the two kinds of
run alternate, so drifts of a noisy machine hit both alike. Prints the median seconds per epoch of each and the
ratio (target: ibkit / bare <= 1.10). Then ``E.iwae(model, x[:1000], k=5000)`` runs in a fresh process, which
reports its seconds and its peak resident memory above what the process held before the call.

    python benchmarks/bench_hvae.py [--epochs 3] [--repeats 4] [--n 8000] [--inference top_down|bottom_up]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from bench_train import load_images, print_ratio, side_by_side
from torch import nn
from torch.distributions import Normal, kl_divergence

import ibkit

D, H, BETWEEN, DIMS = 784, 512, 256, (16, 8)


def mlp(*sizes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def normal(params: torch.Tensor) -> Normal:
    loc, logvar = params.chunk(2, dim=-1)
    return Normal(loc, torch.exp(0.5 * logvar))


class BareHVAE(nn.Module):
    """ibkit.build_model("hvae", 784, 24, latent_dims=(16, 8), hidden=(512, 512), layer_hidden=(256,)) by hand."""

    def __init__(self, inference: str):
        super().__init__()
        d1, d2 = DIMS
        self.top_down = inference == "top_down"
        if self.top_down:
            self.trunk1 = nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU())
            self.trunk2 = nn.Sequential(nn.Linear(H, BETWEEN), nn.ReLU())
            self.q1, self.q2 = nn.Linear(H + d2, 2 * d1), nn.Linear(BETWEEN, 2 * d2)
        else:
            self.q1, self.q2 = mlp(D, H, H, 2 * d1), mlp(d1, BETWEEN, 2 * d2)
        self.prior1 = mlp(d2, BETWEEN, 2 * d1)
        self.dec = mlp(d1, H, H, D)

    def loss(self, x):
        top = Normal(torch.zeros(DIMS[1]), torch.ones(DIMS[1]))
        if self.top_down:
            h1 = self.trunk1(x)
            q2 = normal(self.q2(self.trunk2(h1)))
            z2 = q2.rsample()
            q1, p1 = normal(self.q1(torch.cat([h1, z2], -1))), normal(self.prior1(z2))
            z1 = q1.rsample()
            kl = kl_divergence(q2, top).sum(-1) + kl_divergence(q1, p1).sum(-1)
        else:
            q1 = normal(self.q1(x))
            z1 = q1.rsample()
            q2 = normal(self.q2(z1))
            z2 = q2.rsample()
            p1 = normal(self.prior1(z2))
            kl = kl_divergence(q2, top).sum(-1) + (q1.log_prob(z1) - p1.log_prob(z1)).sum(-1)
        rec = F.binary_cross_entropy_with_logits(self.dec(z1), x, reduction="none").sum(-1)
        return (rec + kl).mean()


def build(inference: str, seed: int):
    return ibkit.build_model("hvae", D, sum(DIMS), latent_dims=DIMS, hidden=(H, H), layer_hidden=(BETWEEN,),
                             inference=inference, seed=seed)


def iwae_cost(inference: str, n: int, k: int) -> dict:
    """In this (fresh) process: seconds and peak resident memory above the baseline of E.iwae on n images."""
    x, _ = load_images(n)
    model = build(inference, 0)
    torch.zeros(1)  # allocator and threads up before the baseline
    base = _rss_now()
    start = time.perf_counter()
    value = ibkit.estimators.iwae(model, x, k)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return dict(seconds=seconds, peak_above_baseline=peak - base, iwae=value)


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed training run")
    parser.add_argument("--repeats", type=int, default=4, help="timed runs of each, alternating")
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--inference", default="top_down", choices=("top_down", "bottom_up"))
    parser.add_argument("--iwae-k", type=int, default=5000)
    parser.add_argument("--iwae-n", type=int, default=1000)
    parser.add_argument("--iwae-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.iwae_only:
        print(json.dumps(iwae_cost(args.inference, args.iwae_n, args.iwae_k)))
        return
    x, source = load_images(args.n)
    assert sum(p.numel() for p in BareHVAE(args.inference).parameters()) == \
        sum(p.numel() for p in build(args.inference, 0).parameters())
    times = side_by_side(lambda rep: build(args.inference, rep), lambda: BareHVAE(args.inference), x, args.epochs,
                         args.repeats)
    print(f"data: {source}, {len(x)} images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"two-layer hvae, {args.inference}, latent_dims {DIMS}, hidden ({H}, {H}), layer_hidden ({BETWEEN},)")
    print_ratio(times, args.epochs)
    child = subprocess.run([sys.executable, __file__, "--iwae-only", "--inference", args.inference,
                            "--iwae-k", str(args.iwae_k), "--iwae-n", str(args.iwae_n)],
                           capture_output=True, text=True, check=True)
    cost = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"iwae k={args.iwae_k} on {args.iwae_n} images (untrained model, fresh process): {cost['seconds']:.1f} s, "
          f"peak memory {cost['peak_above_baseline'] / 2**20:.0f} MiB above the process's baseline "
          f"(value {cost['iwae']:.2f} nats)")


if __name__ == "__main__":
    main()
