"""scikit-learn's 8x8 digits, the default dataset: bundled with scikit-learn, so it needs no files."""

from __future__ import annotations

import numpy as np

from ibkit.data._split import binarize_pixels, check_image_options, split_dataset
from ibkit.data.dataset import Dataset


def load_digits(*, binarize: str = "threshold", test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, grey levels 0..16) scaled to [0, 1]: D = 64.

    binarize:      "threshold" (pixel > 0.5), "stochastic" (Bernoulli(pixel), seeded by ``seed``)
                   or "none" (grey levels; likelihood "gaussian").
    test_fraction: share of the 1,797 images held out for test, in (0, 1).
    seed:          the split permutation (``split_indices``) and the stochastic binarisation.
    """
    check_image_options(binarize, test_fraction, seed)
    from sklearn.datasets import load_digits as _sklearn_digits  # lazy: sklearn is slow to import

    bunch = _sklearn_digits()
    x, likelihood = binarize_pixels(np.asarray(bunch.data, dtype=np.float64) / 16.0, binarize, seed)
    return split_dataset("digits", x, np.asarray(bunch.target), likelihood, test_fraction, seed,
                         source="scikit-learn's 1,797 digits", provenance={"binarize": binarize})
