"""Training step time of the full-covariance posterior against the diagonal one, same network, one process.

784-512-512-16 VAE on MNIST-sized input (real MNIST test images when present), batch 128; the two families
alternate so machine drift hits them alike. Targets: full <= 1.3x and IAF (2 steps) <= 2x diagonal.

Also times the IAF's log_prob over a 1,000 x 1,000 matrix of pairs q(z_i|x_j) (what mi_bounds evaluates).

    python benchmarks/bench_posteriors.py [--steps 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_train import load_images

import ibkit


def step_seconds(model, x, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for i in range(steps):
        batch = x[(i * 128) % (len(x) - 128):][:128]
        loss = model(batch).loss.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x, source = load_images(4000)
    models = {family: ibkit.build_model("vae", 784, 16, hidden=(512, 512), posterior=family)
              for family in ("diagonal", "full", "iaf")}
    times = {family: [] for family in models}
    for model in models.values():  # warm-up
        step_seconds(model, x, 5)
    for rep in range(args.repeats):
        order = list(models) if rep % 2 == 0 else list(reversed(models))
        for family in order:
            times[family].append(step_seconds(models[family], x, args.steps))
    med = {family: statistics.median(t) for family, t in times.items()}
    print(f"data: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for family, t in med.items():
        print(f"{family:9s} {1e3 * t:.2f} ms/step")
    print(f"ratio full / diagonal = {med['full'] / med['diagonal']:.3f}  (target <= 1.3)")
    start = time.perf_counter()
    bounds = ibkit.estimators.mi_bounds(models["iaf"], x[:1000])
    pairs = time.perf_counter() - start
    print(f"iaf log_prob over the 1,000 x 1,000 pair matrix (mi_bounds, d = 16): {pairs:.1f} s "
          f"(infonce {bounds['infonce']:.3f} <= log N {bounds['log_n']:.3f})")
    print(f"ratio iaf (2 steps) / diagonal = {med['iaf'] / med['diagonal']:.3f}  (target <= 2)")


if __name__ == "__main__":
    main()
