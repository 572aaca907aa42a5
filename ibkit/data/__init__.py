"""Datasets: digits (bundled with scikit-learn, the default), MNIST (IDX files), linear-Gaussian data.

``load(name, **options) -> Dataset`` is the one entry point; ``DATASETS`` (``ibkit.registry.DATASETS``) is its
registry, one loader per source, each registered below with its image shape and committed reference sweep
(``register_dataset``):

- ``digits`` (``digits.py``): scikit-learn's 8x8 digits (1,797 images), scaled to [0, 1]; needs no files.
- ``mnist`` (``mnist.py``, reading ``idx.py``'s format): the 28x28 MNIST digits (LeCun, Cortes & Burges) read
  from IDX files in a folder (the ``path`` option, else ``$IBKIT_DATA``, else the user cache, which it can fill
  by download).
- ``fashion_mnist`` (``mnist.py`` too): Zalando's Fashion-MNIST, the same IDX format with its own checksums and
  folder (``fashion-mnist/``), grey by default.
- ``images`` (``images.py``): a folder of PNG or JPEG files read with Pillow (``path``), RGB rows in [0, 1],
  centre-cropped and resized to ``size``, with their ``image_shape`` and each file's SHA-256.
- ``cifar10`` (``cifar10.py``): CIFAR-10's binary batches (never the pickled version), the official split.
- ``gaussian`` (the package ``gaussian/``): synthetic x = W z + b + sigma eps with closed-form log p(x), h(X),
  I(X;Z) and the exact posterior p(z|x) (Tipping & Bishop 1999, probabilistic PCA), so estimators can be checked
  against true answers; with ``latent_dims=(d1, d2)`` a two-layer source z2 -> z1 -> x with the same closed forms
  per layer. The dataset's ``.truth`` is the ``LinearGaussianChain`` that generated it.

Every loader returns the ``Dataset`` record (``dataset.py``); the image loaders share the split and
binarisation in ``_split.py``. Nothing happens at import: no files are read, nothing is downloaded, no seeds
are set.
"""

from __future__ import annotations

import inspect

from ibkit.checks import check_choice
from ibkit.data._split import BINARIZE, split_indices
from ibkit.data.cifar10 import CIFAR10_TEST, CIFAR10_TRAIN, load_cifar10, read_cifar10_batch
from ibkit.data.dataset import Dataset
from ibkit.data.digits import load_digits
from ibkit.data.gaussian import LinearGaussianDataset, LinearGaussianModel, load_gaussian
from ibkit.data.idx import IDX_DTYPES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, parse_idx, read_idx
from ibkit.data.images import IMAGE_SUFFIXES, load_images
from ibkit.data.mnist import (
    DOWNLOAD_TIMEOUT,
    FASHION_MNIST_MD5,
    MIRROR,
    MIRRORS,
    MNIST_FILES,
    MNIST_MD5,
    cache_dir,
    load_fashion_mnist,
    load_mnist,
)
from ibkit.registry import DATASETS, LIKELIHOODS, register_dataset

register_dataset("digits", image_shape=(1, 8, 8), reference="rate_distortion")(load_digits)
register_dataset("mnist", image_shape=(1, 28, 28), reference="rate_distortion_mnist")(load_mnist)
register_dataset("fashion_mnist", image_shape=(1, 28, 28))(load_fashion_mnist)
register_dataset("gaussian")(load_gaussian)
register_dataset("images")(load_images)  # its image_shape depends on size: each Dataset carries its own
register_dataset("cifar10", image_shape=(3, 32, 32))(load_cifar10)


def options(name: str) -> dict[str, object]:
    """The options ``load(name, ...)`` accepts, with their defaults.

    Args:
        name: a registered dataset (``DATASETS``).

    Returns:
        {option: default} of the dataset's loader.

    Raises:
        ValueError: an unknown name, with the valid ones.
    """
    check_choice("name", name, DATASETS)
    return {p.name: p.default for p in inspect.signature(DATASETS[name]).parameters.values()}


def load(name: str = "digits", **opts) -> Dataset:
    """Load a dataset by registry name: ``load("digits")``, ``load("mnist", path=...)``, ``load("gaussian")``.

    Unknown names and unknown options are refused with a ValueError listing the valid ones.

    Args:
        name: a registered dataset (``DATASETS``: "digits", "mnist", "gaussian", ...).
        **opts: the loader's options (``options(name)``), e.g. ``binarize``, ``test_fraction``, ``seed``.

    Returns:
        the ``Dataset``: ``.train`` and ``.test`` float32 [N, D], their labels, ``.likelihood``.

    Raises:
        ValueError: an unknown name or option, listing the valid ones.
    """
    valid = options(name)
    for key in opts:
        if key not in valid:
            raise ValueError(
                f"load({name!r}) got an unknown option {key!r}; valid options are: {', '.join(valid)}"
            )
    return DATASETS[name](**opts)


__all__ = [
    "Dataset",
    "LinearGaussianDataset",
    "LinearGaussianModel",
    "DATASETS",
    "load",
    "options",
    "load_digits",
    "load_mnist",
    "load_gaussian",
    "load_images",
    "IMAGE_SUFFIXES",
    "load_cifar10",
    "load_fashion_mnist",
    "FASHION_MNIST_MD5",
    "read_cifar10_batch",
    "CIFAR10_TRAIN",
    "CIFAR10_TEST",
    "split_indices",
    "parse_idx",
    "read_idx",
    "cache_dir",
    "MIRROR",
    "MIRRORS",
    "MNIST_MD5",
    "MNIST_FILES",
    # re-exported so that every name ``ibkit.data`` had as one module stays importable from it
    "BINARIZE",
    "LIKELIHOODS",
    "DOWNLOAD_TIMEOUT",
    "IDX_DTYPES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
]
