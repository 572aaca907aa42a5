"""scikit-learn's 8x8 digits, the default dataset: bundled with scikit-learn, so it needs no files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ibkit.data._split import binarize_pixels, check_image_options, split_dataset
from ibkit.data.dataset import Dataset


def load_digits(*, binarize: str = "threshold", test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, grey levels 0..16) scaled to [0, 1]: D = 64.

    Args:
        binarize: "threshold" (pixel > 0.5), "stochastic" (Bernoulli(pixel), seeded by ``seed``) or "none" (grey
            levels; likelihood "gaussian").
        test_fraction: share of the 1,797 images held out for test, in (0, 1).
        seed: the split permutation (``split_indices``) and the stochastic binarisation.

    Returns:
        the ``Dataset`` "digits" with labels, its likelihood "bernoulli" ("gaussian" with ``binarize="none"``).

    Raises:
        ValueError: an unknown ``binarize``, or ``test_fraction``, ``seed`` out of range.
    """
    check_image_options(binarize, test_fraction, seed)
    pixels, labels = read_digits()
    x, likelihood = binarize_pixels(pixels / 16.0, binarize, seed)
    return split_dataset("digits", x, labels, likelihood=likelihood, test_fraction=test_fraction, seed=seed,
                         source="scikit-learn's 1,797 digits", provenance={"binarize": binarize})


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as scikit-learn ships them: pixels [1797, 64] (float64, 0..16) and labels [1797] (int).

    Read straight from scikit-learn's ``datasets/data/digits.csv.gz`` (64 pixels and the label per line), which
    spares every process the 2 s import of ``sklearn.datasets``; ``sklearn.datasets.load_digits`` where the file
    is not at that place.

    Returns:
        (pixels [1797, 64] float64 in 0..16, labels [1797] int).
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    shipped = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if shipped is None or not shipped.is_file():
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
    table = np.loadtxt(shipped, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)
