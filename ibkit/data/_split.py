"""What the image loaders share: option checks, the seeded train/test split and binarisation of pixels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ibkit.checks import check_choice, check_number
from ibkit.data.dataset import Dataset

BINARIZE = ("threshold", "stochastic", "none")  # pixel > 0.5 | Bernoulli(pixel) | keep grey levels


def check_seed(seed) -> None:
    check_number("seed", seed, low=0, integer=True)


def check_fraction(test_fraction) -> None:
    check_number("test_fraction", test_fraction, low=0, low_open=True, high=1)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction={test_fraction!r} must be < 1 (it is the share of rows held out for test)")


def check_image_options(binarize, test_fraction, seed) -> None:
    check_choice("binarize", binarize, BINARIZE)
    check_fraction(test_fraction)
    check_seed(seed)


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic train/test split of ``n`` rows: (train_idx, test_idx), disjoint, covering 0..n-1.

    A fixed permutation ``np.random.default_rng(seed).permutation(n)``; its first
    ``n - round(n * test_fraction)`` entries are train, the rest test. Loaders use this, so
    ``full[train_idx] == ds.train`` undoes the shuffle.

    Args:
        n: the number of rows.
        test_fraction: the share of rows held out for test, in (0, 1).
        seed: seeds the permutation.

    Returns:
        (train_idx, test_idx), int arrays.

    Raises:
        ValueError: ``test_fraction`` or ``seed`` out of range, or a fraction that leaves a split empty.
    """
    check_fraction(test_fraction)
    check_seed(seed)
    n_test = int(round(n * test_fraction))
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"test_fraction={test_fraction!r} leaves {n_test} of {n} rows for test; "
            "choose a fraction that leaves at least one row in each split"
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    return perm[: n - n_test], perm[n - n_test :]


def binarize_pixels(x: np.ndarray, mode: str, seed: int) -> tuple[np.ndarray, str]:
    """Binarise pixels in [0, 1]: returns (float32 array of x's shape, likelihood name).

    threshold:  x > 0.5.
    stochastic: one Bernoulli(x) draw per pixel (Salakhutdinov & Murray 2008's dynamic MNIST, frozen),
                from its own stream ``default_rng([seed, 1])`` so it does not shift the split.
    none:       x unchanged; the likelihood is then "gaussian".
    """
    if mode == "threshold":
        return (x > 0.5).astype(np.float32), "bernoulli"
    if mode == "stochastic":
        rng = np.random.default_rng([int(seed), 1])
        return (rng.random(x.shape, dtype=np.float64) < x).astype(np.float32), "bernoulli"
    return x.astype(np.float32), "gaussian"


def split_dataset(name: str, x: np.ndarray, y: np.ndarray, *, likelihood: str, test_fraction, seed,
                  source: str, provenance: dict | None = None) -> Dataset:
    """A ``Dataset`` of rows x [N, D] float32 and labels y [N], split by ``split_indices(N, test_fraction, seed)``;
    its provenance's ``split`` names the ``source`` (e.g. "t10k") and the sizes."""
    train_idx, test_idx = split_indices(len(x), test_fraction, seed)
    split = f"{source} split {len(train_idx):,}/{len(test_idx):,} (test_fraction {test_fraction:g}, seed {seed})"
    return Dataset(
        name=name,
        train=torch.from_numpy(np.ascontiguousarray(x[train_idx])),
        test=torch.from_numpy(np.ascontiguousarray(x[test_idx])),
        likelihood=likelihood,
        train_labels=torch.from_numpy(y[train_idx].astype(np.int64)),
        test_labels=torch.from_numpy(y[test_idx].astype(np.int64)),
        provenance={**(provenance or {}), "split": split},
    )


def file_sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
