"""Blahut-Arimoto on N = M rows of D = 784 (MNIST, or random binary images where absent), side by side with the
bare cost of one iteration, and its peak memory, in one run.

The bare iteration is what any implementation must do per pass: the [N, M] cross term x @ y^T (the matmul) and a
log-sum-exp over each row. ``ibkit.frontier.blahut_arimoto`` keeps the float32 [N, M] costs when they fit its
memory budget (computed once), so its iterations do the log-sum-exp and the marginal's update alone. Prints
iterations per second of each, their ratio (target: >= 0.7), the one-off cost matrix time and the process's peak
resident memory (``resource.getrusage``), then the rate at each of --lambdas on the rows (every rate <= log N).

    python benchmarks/bench_frontier.py [--rows 10000] [--iterations 5] [--lambdas 8]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

import ibkit
from ibkit.frontier import blahut_arimoto


def rows(n: int) -> tuple[torch.Tensor, str]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    for folder in (os.environ.get("IBKIT_DATA"), shared):
        if folder and Path(folder).exists():
            ds = ibkit.data.load("mnist", path=folder, download=False)
            x = torch.cat([ds.train, ds.test])[:n].double()
            return x, f"MNIST ({len(x)} rows)"
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 784, generator=g) > 0.87).double(), "random binary images (no MNIST found)"


def bare_iteration(x: torch.Tensor, block: int = 2048) -> float:
    """Seconds of one bare pass: x @ x^T and a row log-sum-exp, in blocks of rows, float64."""
    start = time.perf_counter()
    for i in range(0, len(x), block):
        torch.logsumexp(-(x[i: i + block] @ x.T), dim=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--lambdas", type=int, default=8)
    args = parser.parse_args()
    x, source = rows(args.rows)
    print(f"data: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    start = time.perf_counter()
    blahut_arimoto(x, 0.05, max_iter=1, tol=0.0)  # one iteration: the costs once, one pass, the final pass
    one = time.perf_counter() - start
    start = time.perf_counter()
    blahut_arimoto(x, 0.05, max_iter=1 + args.iterations, tol=0.0)
    per_iteration = (time.perf_counter() - start - one) / args.iterations
    bare = min(bare_iteration(x) for _ in range(2))
    print(f"blahut_arimoto: {1 / per_iteration:.3f} iterations/s ({per_iteration:.2f} s each; the first call, costs "
          f"and two passes: {one:.1f} s)")
    print(f"bare matmul + logsumexp: {1 / bare:.3f} iterations/s ({bare:.2f} s each)")
    print(f"ratio blahut_arimoto / bare = {bare / per_iteration:.2f} (target >= 0.7)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    print(f"peak resident memory of this process: {peak:.2f} GiB (the data {x.numel() * 8 / 2**30:.2f} GiB)")
    log_n = math.log(len(x))
    for lam in np.geomspace(0.01, 1.0, args.lambdas):
        point = blahut_arimoto(x, float(lam), max_iter=50, tol=1e-5)
        print(f"lam {lam:.4f}: rate {point.rate:.3f} nats (log N = {log_n:.3f}), distortion {point.distortion:.2f}, "
              f"{point.iterations} iterations, last change {point.change:.1e}")
        assert point.rate <= log_n + 1e-9


if __name__ == "__main__":
    main()
