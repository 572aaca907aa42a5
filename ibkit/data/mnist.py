"""MNIST (LeCun, Cortes & Burges) and Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 images read from IDX
files in a folder. The two use the same file names and format; each has its own checksums, mirrors and folder.

The folder is the ``path`` option, else ``$IBKIT_DATA`` (or its ``mnist/``, ``fashion-mnist/`` subfolder), else
the user cache (``cache_dir(name)``), the only folder ever downloaded into, each file checked against its MD5. The
settings below (``MIRROR``, ``MIRRORS``, ``MNIST_MD5``, ``FASHION_MNIST_MD5``, ``DOWNLOAD_TIMEOUT``) are read from
this module at call time; tests patch them here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ibkit.atomic import atomic_open
from ibkit.data._split import binarize_pixels, check_image_options, file_sha256, split_dataset
from ibkit.data.dataset import Dataset
from ibkit.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx

log = logging.getLogger(__name__)

MNIST_FILES = {  # role -> file name without the optional ".gz"
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_MD5 = {  # md5 of the canonical .gz downloads (the values torchvision checks)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (  # known copies of the canonical files, tried after MIRROR on network errors
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRROR = MIRRORS[0]  # tried first; tests point it at a file:// folder
FASHION_MNIST_MD5 = {  # md5 of Zalando Research's .gz files (the values torchvision checks)
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
DOWNLOAD_TIMEOUT = 60.0  # seconds per connection attempt


@dataclasses.dataclass(frozen=True)
class IdxSource:
    """One dataset of IDX files named as MNIST's (``MNIST_FILES``): its registry name, its name in messages, the
    subfolder it is looked for in (and cached under), its files' MD5s and its mirrors in the order tried."""

    name: str
    label: str
    subfolder: str
    md5: dict
    mirrors: tuple[str, ...]


def _source(name: str) -> IdxSource:
    """The source ``name`` ("mnist", "fashion_mnist"), its settings read now (tests patch them)."""
    if name == "mnist":
        return IdxSource(name="mnist", label="MNIST", subfolder="mnist", md5=MNIST_MD5,
                         mirrors=(MIRROR, *(m for m in MIRRORS if m != MIRROR)))
    return IdxSource(name="fashion_mnist", label="Fashion-MNIST", subfolder="fashion-mnist", md5=FASHION_MNIST_MD5,
                     mirrors=FASHION_MNIST_MIRRORS)


# ----------------------------------------------------------------------------------------------
# Where the files are


def cache_dir(name: str = "mnist") -> Path:
    """The folder ibkit downloads a source into: ``$XDG_CACHE_HOME/ibkit/SUBFOLDER`` or ``~/.cache/ibkit/SUBFOLDER``
    (``mnist``, ``fashion-mnist``).

    Args:
        name: "mnist" or "fashion_mnist".

    Returns:
        the folder's path (it may not exist yet).
    """
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "ibkit" / _source(name).subfolder


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _resolve_user_folder(folder: Path, origin: str, source: IdxSource) -> Path:
    """The folder holding the files, or its subfolder: ``mnist/`` where the folder holds no IDX files,
    ``fashion-mnist/`` wherever it exists (the two sources' files share their names)."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{origin}={str(folder)!r} is not a folder; point it at the folder holding the {source.label} IDX files"
        )
    inner = folder / source.subfolder
    if inner.is_dir() and (source.name != "mnist" or not _holds_files(folder)):  # MNIST: the folder's own first
        return inner
    return folder


def _holds_files(folder: Path) -> bool:
    """Whether ``folder`` holds any of the IDX files (``MNIST_FILES``, gzipped or not)."""
    return any(_find(folder, stem) for stem in MNIST_FILES.values())


def _idx_folder(path: str | os.PathLike | None, source: IdxSource) -> tuple[Path, str]:
    """(folder, origin): the ``path`` option, else ``$IBKIT_DATA``, else ``cache_dir()``; origin names which."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path={path!r} must be a folder path (str or os.PathLike)")
        return _resolve_user_folder(Path(path).expanduser(), "path", source), "path"
    if os.environ.get("IBKIT_DATA"):
        folder = Path(os.environ["IBKIT_DATA"]).expanduser()
        return _resolve_user_folder(folder, "IBKIT_DATA", source), "IBKIT_DATA"
    return cache_dir(source.name), "cache"


def _where_to_put_files(source: IdxSource) -> str:
    names = ", ".join(f"{stem}[.gz]" for stem in MNIST_FILES.values())
    return (
        f"Put the {source.label} IDX files ({names}; the t10k pair alone is enough) in a folder and pass "
        f"load({source.name!r}, path=FOLDER) or set the environment variable IBKIT_DATA=FOLDER "
        f"(or a folder with a {source.subfolder}/ subfolder); sources: {', '.join(source.mirrors)}"
    )


def _no_files_error(folder: Path, origin: str, source: IdxSource) -> FileNotFoundError:
    if origin == "cache":
        hint = " and download=False, so nothing was fetched"
    else:
        hint = (
            f" (set by {origin}; ibkit downloads only into its cache {cache_dir(source.name)}, "
            "used when neither path nor IBKIT_DATA is given)"
        )
    return FileNotFoundError(f"no {source.label} IDX files in {folder}{hint}. " + _where_to_put_files(source))


# ----------------------------------------------------------------------------------------------
# The download


def _download(filename: str, folder: Path, source: IdxSource) -> Path:
    """Fetch ``filename`` into ``folder`` from the source's mirrors (the next on a network error).

    The bytes go to a temporary file in ``folder``; its MD5 is checked against the source's and only
    then is it moved into place with ``os.replace`` (atomic). A mismatch deletes it and raises.
    """
    expected = source.md5[filename]
    urls = [m.rstrip("/") + "/" + filename for m in source.mirrors]
    failures = []
    for url in urls:
        md5 = hashlib.md5(usedforsecurity=False)
        try:  # the bytes go to a temp file, renamed into place only once its checksum matched
            with atomic_open(folder / filename, binary=True, suffix=".part") as out, \
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                while chunk := response.read(1 << 20):
                    md5.update(chunk)
                    out.write(chunk)
                if md5.hexdigest() != expected:
                    raise ValueError(
                        f"checksum mismatch for {filename} downloaded from {url}: expected md5 {expected}, got "
                        f"{md5.hexdigest()}; the file was deleted. Try again later, or fetch the files by hand. "
                        + _where_to_put_files(source))
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            failures.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        log.info("downloaded %s into %s", url, folder)
        return folder / filename
    raise ConnectionError(
        f"could not download {filename} into the cache {folder} ({'; '.join(failures)}). " + _where_to_put_files(source)
    )


def _find_files(folder: Path, download: bool, source: IdxSource) -> dict[str, Path | None]:
    """role (a key of ``MNIST_FILES``) -> its file in ``folder``, or None; with ``download``, when any of the
    four is missing, the missing ones are fetched into ``folder`` first."""
    found = {role: _find(folder, stem) for role, stem in MNIST_FILES.items()}
    if download and not all(found.values()):
        folder.mkdir(parents=True, exist_ok=True)
        for role, stem in MNIST_FILES.items():
            if found[role] is None:
                found[role] = _download(stem + ".gz", folder, source)
    return found


# ----------------------------------------------------------------------------------------------
# Reading the files


def _read_mnist_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, rows * cols] uint8 and labels [N] int64 from one IDX pair, checked against each other."""
    images = read_idx(images_path, expected_magic=IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "they must come from the same split (one label per image)"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be digits 0..9; got a label {int(labels.max())}")
    return images.reshape(len(images), -1), labels.astype(np.int64)


def _read_pairs(folder: Path, found: dict[str, Path | None]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split ("train", "test") -> (images [N, 784] uint8, labels [N] int64), for each split whose two files
    are both present; half a pair is refused, naming the missing file."""
    pairs = {}
    for split in ("train", "test"):
        images_path, labels_path = found[f"{split}_images"], found[f"{split}_labels"]
        present = images_path or labels_path
        if present is None:
            continue
        if images_path is None or labels_path is None:
            missing = MNIST_FILES[f"{split}_labels" if labels_path is None else f"{split}_images"]
            raise FileNotFoundError(
                f"{folder} holds {present.name} but not its partner {missing}[.gz]; add it, or remove {present.name}"
            )
        pairs[split] = _read_mnist_pair(images_path, labels_path)
    return pairs


def _train_test_dataset(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], found: dict[str, Path | None], *,
    binarize: str, seed: int, name: str,
) -> Dataset:
    """The canonical split: train = the train pair, test = the t10k pair, binarised together."""
    (train_x, train_y), (test_x, test_y) = train, test
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"the train images in {found['train_images']} have {train_x.shape[1]} pixels but the test images in "
            f"{found['test_images']} have {test_x.shape[1]}; both must be the same size"
        )
    x, likelihood = binarize_pixels(np.concatenate([train_x, test_x]) / 255.0, binarize, seed)
    return Dataset(
        name=name,
        train=torch.from_numpy(np.ascontiguousarray(x[: len(train_x)])),
        test=torch.from_numpy(np.ascontiguousarray(x[len(train_x) :])),
        likelihood=likelihood,
        train_labels=torch.from_numpy(train_y),
        test_labels=torch.from_numpy(test_y),
    )


# ----------------------------------------------------------------------------------------------
# The loader


def load_mnist(
    *,
    path: str | os.PathLike | None = None,
    binarize: str = "threshold",
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
) -> Dataset:
    """MNIST from IDX files: 28x28 digits scaled to [0, 1] (bytes / 255), flattened to D = 784.

    Args:
        path: folder holding the files (or an ``mnist/`` subfolder of it); else ``$IBKIT_DATA``; else
            ``cache_dir()``. Only the cache is ever downloaded into.
        binarize: "threshold" (pixel > 0.5), "stochastic" (Bernoulli(pixel), seeded) or "none" (gaussian).
        test_fraction: used only when one pair of files is present (e.g. the 10,000-image t10k set alone): that
            pair is split with ``split_indices``. With both pairs train = train, test = t10k.
        seed: the split, and the stochastic binarisation.
        download: when reading the cache and any of the four files is missing, fetch the missing ones from
            MIRROR, checking each against ``MNIST_MD5``.

    Returns:
        the ``Dataset`` "mnist" with labels; its provenance names the folder, its origin and the files'
            SHA-256.

    Raises:
        FileNotFoundError: no MNIST files where they were looked for, or a file without its partner.
        ConnectionError: a missing file that no mirror could send.
        ValueError: an unknown ``binarize``, an option out of range, a damaged file or a download whose checksum
            does not match.
    """
    return _load_idx(_source("mnist"), path=path, binarize=binarize, test_fraction=test_fraction, seed=seed,
                     download=download)


def load_fashion_mnist(
    *,
    path: str | os.PathLike | None = None,
    binarize: str = "none",
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from IDX files, as ``load_mnist`` reads MNIST: 28x28 grey
    images of clothing in ten classes, bytes / 255, D = 784; grey by default (``binarize="none"``, a Gaussian
    decoder). The folder: ``path`` (or its ``fashion-mnist/`` subfolder), else ``$IBKIT_DATA/fashion-mnist``, else
    ``cache_dir("fashion_mnist")``; downloads are checked against ``FASHION_MNIST_MD5``.

    Args:
        path: folder holding the files; else ``$IBKIT_DATA``; else the cache.
        binarize: "none" (grey levels, gaussian), "threshold" or "stochastic".
        test_fraction: used only when one pair of files is present; with both, train = train, test = t10k.
        seed: the split, and the stochastic binarisation.
        download: when reading the cache, fetch missing files from ``FASHION_MNIST_MIRRORS``.

    Returns:
        the ``Dataset`` "fashion_mnist" with labels, its provenance naming the folder and the files' SHA-256.

    Raises:
        FileNotFoundError, ConnectionError, ValueError: as ``load_mnist``.
    """
    return _load_idx(_source("fashion_mnist"), path=path, binarize=binarize, test_fraction=test_fraction,
                     seed=seed, download=download)


def _load_idx(source: IdxSource, *, path, binarize: str, test_fraction: float, seed: int, download: bool) -> Dataset:
    """A source of IDX files as a ``Dataset``: both pairs as the canonical split, one pair split by
    ``split_indices``."""
    check_image_options(binarize, test_fraction, seed)
    if not isinstance(download, bool):
        raise ValueError(f"download={download!r} must be True or False")
    folder, origin = _idx_folder(path, source)
    found = _find_files(folder, origin == "cache" and download, source)
    pairs = _read_pairs(folder, found)
    if not pairs:
        raise _no_files_error(folder, origin, source)
    provenance = dict(folder=str(folder), origin=origin, binarize=binarize,
                      files={p.name: file_sha256(p) for p in found.values() if p is not None})
    if len(pairs) == 1:  # one pair only: split it
        ((which, (images, labels)),) = pairs.items()
        x, likelihood = binarize_pixels(images / 255.0, binarize, seed)
        return split_dataset(source.name, x, labels, likelihood=likelihood, test_fraction=test_fraction, seed=seed,
                             source="t10k" if which == "test" else "train", provenance=provenance)
    ds = _train_test_dataset(pairs["train"], pairs["test"], found, binarize=binarize, seed=seed, name=source.name)
    split = f"train {len(ds.train):,} / t10k {len(ds.test):,} (the canonical split)"
    return dataclasses.replace(ds, provenance={**provenance, "split": split})
