"""mi_bounds on N = 10,000 points with a d = 16 latent: seconds and peak memory (target < 20 s, < 1 GB).

The model is a VAE of MNIST's size (784-512-512-16) on the real MNIST test images when present (random binary
images otherwise); the N x N matrix of log q(z_i|x_j) is built in row blocks. Peak memory is the process's
resident set growth during the call, measured in a fresh subprocess.

    python benchmarks/bench_mi.py [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, torch, ibkit
    from ibkit import estimators as E
    sys.path.insert(0, "benchmarks")
    from bench_train import load_images
    n = int(sys.argv[1])
    x, source = load_images(n)
    if len(x) < n:
        x = torch.cat([x] * (n // len(x) + 1))[:n]
    m = ibkit.build_model("vae", 784, 16, hidden=(512, 512))
    E.mi_bounds(m, x[:50])  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    bounds = E.mi_bounds(m, x)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(source=source, n=len(x), seconds=seconds, base_mb=base / 1024, peak_mb=peak / 1024,
                          bounds=bounds)))
    """
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.n)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"data: {r['source']}, N = {r['n']}, d = 16")
    print(f"mi_bounds: {r['seconds']:.2f} s (target < 20 s); peak resident memory {r['peak_mb']:.0f} MB, "
          f"{r['peak_mb'] - r['base_mb']:.0f} MB above the process before the call (target < 1 GB)")
    b = r["bounds"]
    print(f"infonce {b['infonce']:.3f} <= log N {b['log_n']:.3f}; loo {b['loo']:.3f}; rate {b['rate']:.3f} nats")


if __name__ == "__main__":
    main()
