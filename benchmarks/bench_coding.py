"""Bits-back coding through batched chains against a bare single-chain loop, and channel simulation, in one run.

An MNIST-sized Bernoulli VAE (784-128-128-16, trained briefly: throughput does not depend on how well) codes --rows
test rows: ``ibkit.coding.bits_back`` (encode, decode and the round-trip check, --chains chains, so each network call
sees one row of every chain) against a bare loop written here with constriction alone: one chain, one network call
per row, the same bins, encode then decode. Prints rows/s of each and their ratio (target: >= 5x), then
``channel_simulation`` rows/s of a digits VAE with d = 8. Uses the real MNIST test images from ../shared/data/mnist
or $IBKIT_DATA when present, random binary images otherwise.

    python benchmarks/bench_coding.py [--rows 500] [--chains 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import ibkit
from ibkit.coding import _means, _prior_loc_scale, _standard_bins, _table, bits_back, channel_simulation
from ibkit.distributions import diagonal_normal


def mnist_rows(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    for folder in (os.environ.get("IBKIT_DATA"), shared):
        if folder and Path(folder).exists():
            ds = ibkit.data.load("mnist", path=folder, download=False)
            return ds.train, ds.test[:n], f"MNIST ({folder})"
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2000 + n, 784, generator=g) > 0.87).float()
    return x[:2000], x[2000:], "random binary images (no MNIST found)"


def bare_single_chain(model, x: torch.Tensor, bins: int = 4096) -> np.ndarray:
    """BB-ANS with one constriction chain and one network call per row (the same bins and tables as ibkit's):
    encode every row, then decode them all."""
    import constriction

    stream = constriction.stream
    categorical, bernoulli = stream.model.Categorical(perfect=False), stream.model.Bernoulli(perfect=False)
    uniform = stream.model.Uniform(bins)
    edges, medians = _standard_bins(bins)
    loc, scale = _prior_loc_scale(model.prior())
    prior = (loc[None], scale[None])
    coder = stream.stack.AnsCoder(np.arange(1, 17, dtype=np.uint32))
    symbols = x.numpy().astype(np.int32)

    def table(row: torch.Tensor) -> np.ndarray:
        q_loc, q_scale = diagonal_normal(model.posterior(row))
        return _table(prior, (q_loc.double(), q_scale.double()), edges)[0]

    def latent(codes: np.ndarray) -> torch.Tensor:
        return loc + scale * medians[torch.as_tensor(codes, dtype=torch.long)]

    with torch.no_grad():
        for i in range(len(x)):
            codes = coder.decode(categorical, table(x[i:i + 1]))
            coder.encode_reverse(symbols[i], bernoulli, _means(model, latent(codes)[None])[0])
            coder.encode_reverse(codes.astype(np.int32), uniform)
        decoded = np.zeros_like(symbols)
        for i in reversed(range(len(x))):
            codes = coder.decode(uniform, len(loc))
            decoded[i] = coder.decode(bernoulli, _means(model, latent(codes)[None])[0])
            coder.encode_reverse(codes.astype(np.int32), categorical,
                                 table(torch.as_tensor(decoded[i:i + 1], dtype=torch.float32)))
    return decoded


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train, x, source = mnist_rows(args.rows)
    model = ibkit.build_model("vae", 784, 16, hidden=(128, 128))
    ibkit.fit(model, train, epochs=1, progress=False)
    model.eval()
    print(f"data: {source}, {len(x)} rows; torch {torch.__version__}, {torch.get_num_threads()} threads")
    assert np.array_equal(bare_single_chain(model, x), x.numpy().astype(np.int32))  # the yardstick is right too
    batched, bare = [], []
    for _ in range(args.repeats):  # alternating, so drifts of a noisy machine hit both alike
        batched.append(timed(lambda: bits_back(model, x, chains=args.chains)))
        bare.append(timed(lambda: bare_single_chain(model, x)))
    b, s = statistics.median(batched), statistics.median(bare)
    runs = {name: ", ".join(f"{t:.3f}" for t in times) for name, times in (("batched", batched), ("bare", bare))}
    print(f"bits_back, {args.chains} chains   {len(x) / b:8.0f} rows/s  (runs: {runs['batched']} s)")
    print(f"bare loop, 1 chain       {len(x) / s:8.0f} rows/s  (runs: {runs['bare']} s)")
    print(f"ratio batched / bare = {s / b:.2f}x  (target >= 5x)")
    digits = ibkit.data.load("digits")
    small = ibkit.build_model("vae", digits.input_dim, 8, hidden=(128, 128))
    ibkit.fit(small, digits.train, epochs=30, progress=False)
    seconds = statistics.median(timed(lambda: channel_simulation(small, digits.test)) for _ in range(args.repeats))
    code = channel_simulation(small, digits.test)
    print(f"channel_simulation, d = 8: {len(digits.test) / seconds:.0f} rows/s; {code.bits.mean():.2f} bits per row "
          f"for KL {code.kl_bits.mean():.2f} bits (bound {code.bound_bits.mean():.2f})")


if __name__ == "__main__":
    main()
