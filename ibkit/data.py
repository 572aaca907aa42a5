"""Datasets: digits (bundled with scikit-learn, the default), MNIST (IDX files), linear-Gaussian data.

``load(name, **options) -> Dataset`` is the one entry point; ``DATASETS`` is its registry.

- ``digits``: scikit-learn's 8x8 digits (1,797 images), scaled to [0, 1]; needs no files.
- ``mnist``: the 28x28 MNIST digits (LeCun, Cortes & Burges) read from IDX files in a folder
  (the ``path`` option, else ``$IBKIT_DATA``, else the user cache, which it can fill by download).
- ``gaussian``: synthetic x = W z + b + sigma eps with closed-form log p(x), h(X), I(X;Z) and the
  exact posterior p(z|x) (Tipping & Bishop 1999, probabilistic PCA), so estimators can be checked
  against true answers.

Nothing happens at import: no files are read, nothing is downloaded, no seeds are set.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ibkit.checks import check_choice, check_data, check_number

log = logging.getLogger(__name__)

LIKELIHOODS = ("bernoulli", "gaussian")
BINARIZE = ("threshold", "stochastic", "none")  # pixel > 0.5 | Bernoulli(pixel) | keep grey levels


# ----------------------------------------------------------------------------------------------
# The record every loader returns


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of flattened inputs, with labels where the source has them.

    name:         the registry name it was loaded under ("digits", "mnist", "gaussian").
    train:        [N_train, D] float32.
    test:         [N_test, D] float32.
    likelihood:   "bernoulli" (binary pixels) or "gaussian" (real values); the decoder to use.
    train_labels: [N_train] int64, or None.
    test_labels:  [N_test] int64, or None.

    Equality is identity (``eq=False``): comparing tensors element-wise has no single truth value.
    """

    name: str
    train: Tensor
    test: Tensor
    likelihood: str
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    def __post_init__(self):
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        for split in ("train", "test"):
            x = getattr(self, split)
            if not isinstance(x, Tensor) or x.dim() != 2 or x.dtype != torch.float32:
                got = f"{type(x).__name__} {list(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"Dataset.{split} must be a float32 tensor [N, D]; got {got}")
            y = getattr(self, f"{split}_labels")
            if y is not None and (not isinstance(y, Tensor) or y.shape != (x.shape[0],) or y.dtype != torch.int64):
                got = f"{list(y.shape)} {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
                raise ValueError(
                    f"Dataset.{split}_labels must be an int64 tensor [{x.shape[0]}] (one per {split} row); got {got}"
                )
        if self.train.shape[1] != self.test.shape[1]:
            raise ValueError(
                f"Dataset.train has width {self.train.shape[1]} but Dataset.test has width {self.test.shape[1]}; "
                "both splits must have the same input_dim"
            )

    @property
    def input_dim(self) -> int:
        """D, the width of one flattened input."""
        return int(self.train.shape[1])

    def __repr__(self) -> str:
        labels = "labelled" if self.train_labels is not None else "unlabelled"
        return (
            f"{type(self).__name__}(name={self.name!r}, train={list(self.train.shape)}, "
            f"test={list(self.test.shape)}, likelihood={self.likelihood!r}, {labels})"
        )


# ----------------------------------------------------------------------------------------------
# Shared helpers: validation, splitting, binarisation


def _check_seed(seed) -> None:
    check_number("seed", seed, low=0, integer=True)


def _check_fraction(test_fraction) -> None:
    check_number("test_fraction", test_fraction, low=0, low_open=True, high=1)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction={test_fraction!r} must be < 1 (it is the share of rows held out for test)")


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic train/test split of ``n`` rows: (train_idx, test_idx), disjoint, covering 0..n-1.

    A fixed permutation ``np.random.default_rng(seed).permutation(n)``; its first
    ``n - round(n * test_fraction)`` entries are train, the rest test. Loaders use this, so
    ``full[train_idx] == ds.train`` undoes the shuffle.
    """
    _check_fraction(test_fraction)
    _check_seed(seed)
    n_test = int(round(n * test_fraction))
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"test_fraction={test_fraction!r} leaves {n_test} of {n} rows for test; "
            "choose a fraction that leaves at least one row in each split"
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    return perm[: n - n_test], perm[n - n_test :]


def _binarize(x: np.ndarray, mode: str, seed: int) -> tuple[np.ndarray, str]:
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


def _check_image_options(binarize, test_fraction, seed) -> None:
    check_choice("binarize", binarize, BINARIZE)
    _check_fraction(test_fraction)
    _check_seed(seed)


def _split_dataset(name: str, x: np.ndarray, y: np.ndarray, likelihood: str, test_fraction, seed) -> Dataset:
    train_idx, test_idx = split_indices(len(x), test_fraction, seed)
    return Dataset(
        name=name,
        train=torch.from_numpy(np.ascontiguousarray(x[train_idx])),
        test=torch.from_numpy(np.ascontiguousarray(x[test_idx])),
        likelihood=likelihood,
        train_labels=torch.from_numpy(y[train_idx].astype(np.int64)),
        test_labels=torch.from_numpy(y[test_idx].astype(np.int64)),
    )


# ----------------------------------------------------------------------------------------------
# digits


def load_digits(*, binarize: str = "threshold", test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, grey levels 0..16) scaled to [0, 1]: D = 64.

    binarize:      "threshold" (pixel > 0.5), "stochastic" (Bernoulli(pixel), seeded by ``seed``)
                   or "none" (grey levels; likelihood "gaussian").
    test_fraction: share of the 1,797 images held out for test, in (0, 1).
    seed:          the split permutation (``split_indices``) and the stochastic binarisation.
    """
    _check_image_options(binarize, test_fraction, seed)
    from sklearn.datasets import load_digits as _sklearn_digits  # lazy: sklearn is slow to import

    bunch = _sklearn_digits()
    x, likelihood = _binarize(np.asarray(bunch.data, dtype=np.float64) / 16.0, binarize, seed)
    return _split_dataset("digits", x, np.asarray(bunch.target), likelihood, test_fraction, seed)


# ----------------------------------------------------------------------------------------------
# IDX files (LeCun's format for MNIST): magic [0, 0, dtype, ndim], ndim big-endian uint32 sizes, data

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions [N, rows, cols]
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension [N]


def parse_idx(raw: bytes, *, source: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file into an array of the declared shape.

    Checks the magic number (against ``expected_magic`` when given) and that the byte count equals
    the header plus the product of the declared dimensions; errors are ValueErrors naming ``source``.
    """
    if len(raw) < 4:
        raise ValueError(f"{source}: {len(raw)} bytes is too short for an IDX header (at least 4 bytes expected)")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{source}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {expected_magic & 0xFF}-D); this is not the IDX file it is named as"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(
            f"{source}: magic number 0x{magic:08x} is not an IDX header "
            f"(expected 0x0000TTNN with type TT in {[hex(t) for t in IDX_DTYPES]})"
        )
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{source}: truncated IDX header: expected {header} bytes for {ndim} dimensions, got {len(raw)} bytes"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing data in"
        raise ValueError(
            f"{source}: {what} IDX file: the header declares shape {shape}, so expected {expected} bytes, "
            f"got {len(raw)} bytes; replace the file with a complete copy"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file, gzip-compressed or not (detected from its first bytes), with ``parse_idx``'s checks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: not a readable gzip file ({err}); replace it with a complete copy") from None
    return parse_idx(raw, source=str(path), expected_magic=expected_magic)


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


# ----------------------------------------------------------------------------------------------
# mnist: files, folders and the download

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
DOWNLOAD_TIMEOUT = 60.0  # seconds per connection attempt


def cache_dir() -> Path:
    """The folder ibkit downloads MNIST into: ``$XDG_CACHE_HOME/ibkit/mnist`` or ``~/.cache/ibkit/mnist``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "ibkit" / "mnist"


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _resolve_user_folder(folder: Path, origin: str) -> Path:
    """The folder holding the files, or its ``mnist/`` subfolder when only that holds them."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{origin}={str(folder)!r} is not a folder; point it at the folder holding the MNIST IDX files"
        )
    if not any(_find(folder, stem) for stem in MNIST_FILES.values()) and (folder / "mnist").is_dir():
        return folder / "mnist"
    return folder


def _where_to_put_files() -> str:
    names = ", ".join(f"{stem}[.gz]" for stem in MNIST_FILES.values())
    return (
        f"Put the MNIST IDX files ({names}; the t10k pair alone is enough) in a folder and pass "
        "load('mnist', path=FOLDER) or set the environment variable IBKIT_DATA=FOLDER "
        f"(or a folder with an mnist/ subfolder); sources: {', '.join(MIRRORS)}"
    )


def _download(filename: str, folder: Path) -> Path:
    """Fetch ``filename`` into ``folder`` from MIRROR (then the other MIRRORS on network errors).

    The bytes go to a temporary file in ``folder``; its MD5 is checked against ``MNIST_MD5`` and only
    then is it moved into place with ``os.replace`` (atomic). A mismatch deletes it and raises.
    """
    expected = MNIST_MD5[filename]
    urls = [m.rstrip("/") + "/" + filename for m in (MIRROR, *(m for m in MIRRORS if m != MIRROR))]
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                while chunk := response.read(1 << 20):
                    md5.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            os.remove(tmp)
            failures.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        except BaseException:
            os.remove(tmp)
            raise
        got = md5.hexdigest()
        if got != expected:
            os.remove(tmp)
            raise ValueError(
                f"checksum mismatch for {filename} downloaded from {url}: expected md5 {expected}, got {got}; "
                "the file was deleted. Try again later, or fetch the files by hand. " + _where_to_put_files()
            )
        os.replace(tmp, folder / filename)
        log.info("downloaded %s into %s", url, folder)
        return folder / filename
    raise ConnectionError(
        f"could not download {filename} into the cache {folder} ({'; '.join(failures)}). " + _where_to_put_files()
    )


def load_mnist(
    *,
    path: str | os.PathLike | None = None,
    binarize: str = "threshold",
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
) -> Dataset:
    """MNIST from IDX files: 28x28 digits scaled to [0, 1] (bytes / 255), flattened to D = 784.

    path:          folder holding the files (or an ``mnist/`` subfolder of it); else ``$IBKIT_DATA``;
                   else ``cache_dir()``. Only the cache is ever downloaded into.
    binarize:      "threshold" (pixel > 0.5), "stochastic" (Bernoulli(pixel), seeded) or "none" (gaussian).
    test_fraction: used only when one pair of files is present (e.g. the 10,000-image t10k set alone):
                   that pair is split with ``split_indices``. With both pairs train = train, test = t10k.
    seed:          the split, and the stochastic binarisation.
    download:      when reading the cache and any of the four files is missing, fetch the missing ones
                   from MIRROR, checking each against ``MNIST_MD5``.
    """
    _check_image_options(binarize, test_fraction, seed)
    if not isinstance(download, bool):
        raise ValueError(f"download={download!r} must be True or False")
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path={path!r} must be a folder path (str or os.PathLike)")
        folder, origin = _resolve_user_folder(Path(path).expanduser(), "path"), "path"
    elif os.environ.get("IBKIT_DATA"):
        folder, origin = _resolve_user_folder(Path(os.environ["IBKIT_DATA"]).expanduser(), "IBKIT_DATA"), "IBKIT_DATA"
    else:
        folder, origin = cache_dir(), "cache"

    found = {role: _find(folder, stem) for role, stem in MNIST_FILES.items()}
    if origin == "cache" and download and not all(found.values()):
        folder.mkdir(parents=True, exist_ok=True)
        for role, stem in MNIST_FILES.items():
            if found[role] is None:
                found[role] = _download(stem + ".gz", folder)

    pairs = {}
    for split in ("train", "test"):
        images, labels = found[f"{split}_images"], found[f"{split}_labels"]
        if (images is None) != (labels is None):
            missing = MNIST_FILES[f"{split}_labels" if labels is None else f"{split}_images"]
            present = images or labels
            raise FileNotFoundError(
                f"{folder} holds {present.name} but not its partner {missing}[.gz]; add it, or remove {present.name}"
            )
        if images is not None:
            pairs[split] = _read_mnist_pair(images, labels)
    if not pairs:
        if origin == "cache":
            hint = " and download=False, so nothing was fetched"
        else:
            hint = (
                f" (set by {origin}; ibkit downloads only into its cache {cache_dir()}, "
                "used when neither path nor IBKIT_DATA is given)"
            )
        raise FileNotFoundError(f"no MNIST IDX files in {folder}{hint}. " + _where_to_put_files())

    if len(pairs) == 1:  # one pair only: split it
        (images, labels), = pairs.values()
        x, likelihood = _binarize(images / 255.0, binarize, seed)
        return _split_dataset("mnist", x, labels, likelihood, test_fraction, seed)

    (train_x, train_y), (test_x, test_y) = pairs["train"], pairs["test"]
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"the train images in {found['train_images']} have {train_x.shape[1]} pixels but the test images in "
            f"{found['test_images']} have {test_x.shape[1]}; both must be the same size"
        )
    x, likelihood = _binarize(np.concatenate([train_x, test_x]) / 255.0, binarize, seed)
    return Dataset(
        name="mnist",
        train=torch.from_numpy(np.ascontiguousarray(x[: len(train_x)])),
        test=torch.from_numpy(np.ascontiguousarray(x[len(train_x) :])),
        likelihood=likelihood,
        train_labels=torch.from_numpy(train_y),
        test_labels=torch.from_numpy(test_y),
    )


# ----------------------------------------------------------------------------------------------
# gaussian: the linear-Gaussian source (probabilistic PCA) and its closed forms

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True, eq=False, repr=False)
class LinearGaussianModel:
    """p(z) = N(0, I_k), p(x|z) = N(W z + b, sigma^2 I_D): the true model behind ``load("gaussian")``.

    Follows the ibkit model protocol (``posterior``, ``prior``, ``log_likelihood``) with the exact
    posterior, so an estimator run on it gives the true rate, ELBO = log p(x), and so on. All it
    returns is float32; the closed forms are computed in float64 from the float32 parameters.

    W:     [D, k] float32 loading matrix.
    b:     [D] float32 offset.
    noise: sigma > 0, the observation noise standard deviation.
    """

    W: Tensor
    b: Tensor
    noise: float

    def __post_init__(self):
        if not isinstance(self.W, Tensor) or self.W.dim() != 2:
            raise ValueError(f"W must be a tensor [D, k]; got {getattr(self.W, 'shape', type(self.W).__name__)}")
        if not isinstance(self.b, Tensor) or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"b must be a tensor [D] = [{self.W.shape[0]}]; got {getattr(self.b, 'shape', self.b)}")
        check_number("noise", self.noise, low=0, low_open=True)
        object.__setattr__(self, "W", self.W.to(torch.float32))
        object.__setattr__(self, "b", self.b.to(torch.float32))
        object.__setattr__(self, "noise", float(self.noise))

    @property
    def input_dim(self) -> int:
        return int(self.W.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.W.shape[1])

    def __repr__(self) -> str:
        return f"LinearGaussianModel(input_dim={self.input_dim}, latent_dim={self.latent_dim}, noise={self.noise})"

    def _covariance64(self) -> Tensor:
        W = self.W.double()
        return W @ W.T + self.noise**2 * torch.eye(self.input_dim, dtype=torch.float64)

    def covariance(self) -> Tensor:
        """C = W W^T + sigma^2 I: [D, D] float32, the covariance of the marginal p(x) = N(b, C)."""
        return self._covariance64().float()

    def log_px(self, x: Tensor) -> Tensor:
        """log p(x) = log N(x; b, C) per row, in float64 via a Cholesky factor: x [N, D] -> [N] float32."""
        x = check_data(x, "x", self.input_dim).double()
        L = torch.linalg.cholesky(self._covariance64())
        r = torch.linalg.solve_triangular(L, (x - self.b.double()).T, upper=False)  # [D, N]
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return (-0.5 * (self.input_dim * _LOG_2PI + logdet + r.pow(2).sum(0))).float()

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e C) in nats."""
        logdet = torch.linalg.slogdet(self._covariance64())[1]
        return float(0.5 * (self.input_dim * (_LOG_2PI + 1) + logdet))

    def mutual_information(self) -> float:
        """I(X;Z) = h(X) - h(X|Z) = 1/2 log det(I_k + W^T W / sigma^2) in nats."""
        return float(0.5 * torch.linalg.slogdet(self._precision64())[1])

    def _precision64(self) -> Tensor:
        """M = I_k + W^T W / sigma^2 [k, k] float64, the posterior precision."""
        W = self.W.double()
        return torch.eye(self.latent_dim, dtype=torch.float64) + W.T @ W / self.noise**2

    def posterior(self, x: Tensor) -> MultivariateNormal:
        """The exact p(z|x) = N(M^{-1} W^T (x - b) / sigma^2, M^{-1}), M = I + W^T W / sigma^2
        (Tipping & Bishop 1999, eq. 6-7): x [N, D] -> batch_shape [N], event_shape [k], float32."""
        x = check_data(x, "x", self.input_dim).double()
        cov = torch.cholesky_inverse(torch.linalg.cholesky(self._precision64()))  # M^{-1} [k, k]
        mean = (x - self.b.double()) @ self.W.double() @ cov / self.noise**2  # [N, k]
        scale_tril = torch.linalg.cholesky(cov).float().expand(x.shape[0], -1, -1)
        return MultivariateNormal(mean.float(), scale_tril=scale_tril)

    def prior(self) -> MultivariateNormal:
        """p(z) = N(0, I_k), as a MultivariateNormal so that KL(posterior || prior) is analytic."""
        k = self.latent_dim
        return MultivariateNormal(torch.zeros(k), scale_tril=torch.eye(k))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) = sum_d log N(x_d; (W z + b)_d, sigma^2): x [N, D], z [S, N, k] -> [S, N] float32."""
        x = check_data(x, "x", self.input_dim)
        if not isinstance(z, Tensor) or z.dim() < 2 or z.shape[-1] != self.latent_dim or z.shape[-2] != x.shape[0]:
            raise ValueError(
                f"z must have shape [S, N, k] = [S, {x.shape[0]}, {self.latent_dim}]; "
                f"got {list(z.shape) if isinstance(z, Tensor) else type(z).__name__}"
            )
        mean = z.to(torch.float32) @ self.W.T + self.b  # [S, N, D]
        r = (x - mean) / self.noise
        return -0.5 * r.pow(2).sum(-1) - self.input_dim * (math.log(self.noise) + 0.5 * _LOG_2PI)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class LinearGaussianDataset(Dataset):
    """Samples of x = W z + b + sigma eps, z ~ N(0, I_k), eps ~ N(0, I_D), with the closed forms.

    W: [D, k] float32; b: [D] float32; noise: sigma. The methods are those of ``true_model()``.
    """

    W: Tensor
    b: Tensor
    noise: float

    def true_model(self, posterior: str | None = None, hidden: tuple[int, ...] = (64,), seed: int = 0,
                   beta: float = 1.0):
        """The generating model.

        posterior=None: a ``LinearGaussianModel`` following the ibkit protocol with the exact posterior.
        posterior="diagonal" | "full": an ibkit VAE whose linear decoder, noise scale and prior are the generating
        ones, frozen, and whose encoder (widths ``hidden``, weights from ``seed``) is fresh (``beta`` weighs the
        KL in its training loss; 1 is the negative ELBO): train it with
        ``fit(..., trainable="encoder")`` to measure what a posterior family costs when the generative model is
        held fixed (a learned decoder could rotate its latents until the exact posterior is diagonal).
        """
        if posterior is None:
            return LinearGaussianModel(self.W, self.b, self.noise)
        from ibkit.models import build_model  # data does not depend on models otherwise

        D, k = self.W.shape
        model = build_model("vae", D, k, hidden=tuple(hidden), decoder_hidden=(), likelihood="gaussian",
                            posterior=posterior, seed=seed, beta=beta)
        with torch.no_grad():
            model.decoder[0].weight.copy_(self.W)
            model.decoder[0].bias.copy_(self.b)
            model.likelihood.log_scale.fill_(math.log(self.noise))
        for part in (model.decoder, model.likelihood):
            part.requires_grad_(False)
        return model

    def covariance(self) -> Tensor:
        """C = W W^T + sigma^2 I: [D, D] float32."""
        return self.true_model().covariance()

    def log_px(self, x: Tensor) -> Tensor:
        """log N(x; b, C) per row: x [N, D] -> [N] float32 (computed in float64)."""
        return self.true_model().log_px(x)

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e C) in nats."""
        return self.true_model().entropy()

    def mutual_information(self) -> float:
        """I(X;Z) = 1/2 log det(I + W^T W / sigma^2) in nats."""
        return self.true_model().mutual_information()

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        """p(z|x): batch_shape [N], event_shape [k]; see ``LinearGaussianModel.posterior``."""
        return self.true_model().posterior(x)


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix [d, d]: QR of a Gaussian matrix with R's diagonal made positive."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def load_gaussian(
    *,
    input_dim: int | None = None,
    latent_dim: int = 2,
    noise: float | None = None,
    n_train: int = 5000,
    n_test: int = 5000,
    seed: int = 0,
    eigenvalues=None,
) -> LinearGaussianDataset:
    """Linear-Gaussian data x = W z + b + sigma eps with W ~ N(0, 1) [D, k], b ~ N(0, 1) [D].

    input_dim:   D; 8 when None (or len(eigenvalues) when those are given).
    latent_dim:  k, the dimension of z.
    noise:       sigma > 0; 0.5 when None (or sqrt(min(eigenvalues)) when those are given).
    n_train, n_test: rows sampled for each split.
    seed:        all randomness (W, b, rotation, samples) comes from ``np.random.default_rng(seed)``.
    eigenvalues: (l_1..l_D) > 0: instead a source with covariance C = Q diag(l) Q^T for a random
                 rotation Q, b = 0: sigma^2 = min(l) and W = Q[:, :k] diag(sqrt(l_i - sigma^2)) for the
                 k largest; the other D - k eigenvalues must equal min(l) (an isotropic noise floor).
    """
    check_number("latent_dim", latent_dim, low=1, integer=True)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        check_number(name, value, low=1, integer=True)
    _check_seed(seed)
    if input_dim is not None:
        check_number("input_dim", input_dim, low=1, integer=True)
    if noise is not None:
        check_number("noise", noise, low=0, low_open=True)
    k, rng = int(latent_dim), np.random.default_rng(int(seed))

    if eigenvalues is None:
        D, sigma = int(input_dim or 8), float(noise if noise is not None else 0.5)
        W = rng.standard_normal((D, k))
        b = rng.standard_normal(D)
    else:
        try:
            lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
        except (TypeError, ValueError):
            raise ValueError(f"eigenvalues={eigenvalues!r} must be a sequence of positive numbers") from None
        if lam.size == 0 or not np.all(np.isfinite(lam)) or lam[-1] <= 0:
            raise ValueError(f"eigenvalues={eigenvalues!r} must be a non-empty sequence of finite numbers > 0")
        D = lam.size
        if input_dim is not None and input_dim != D:
            raise ValueError(
                f"input_dim={input_dim} but {D} eigenvalues were given; pass one eigenvalue per input dimension"
            )
        if k > D:
            raise ValueError(f"latent_dim={k} exceeds the {D} eigenvalues given; choose latent_dim <= {D}")
        floor = lam[-1]
        if not np.allclose(lam[k:], floor, rtol=1e-9, atol=0):
            above = int(np.sum(~np.isclose(lam, floor, rtol=1e-9, atol=0)))
            raise ValueError(
                f"eigenvalues={eigenvalues!r} with latent_dim={k}: a linear-Gaussian source has covariance "
                f"W W^T + sigma^2 I, so its {D - k} smallest eigenvalues must all equal the noise floor "
                f"sigma^2 = min(eigenvalues) = {floor:g}; pass latent_dim={above} or make the smallest "
                f"{D - k} eigenvalues equal"
            )
        sigma = math.sqrt(floor)
        if noise is not None and not math.isclose(noise, sigma, rel_tol=1e-9):
            raise ValueError(
                f"noise={noise!r} but eigenvalues fix sigma = sqrt(min(eigenvalues)) = {sigma:g}; leave noise unset"
            )
        W = _random_rotation(rng, D)[:, :k] * np.sqrt(lam[:k] - floor)
        b = np.zeros(D)

    W32, b32 = torch.from_numpy(W.astype(np.float32)), torch.from_numpy(b.astype(np.float32))
    W64, b64 = W32.numpy().astype(np.float64), b32.numpy().astype(np.float64)  # sample the float32 model exactly

    def sample(n: int) -> Tensor:
        z = rng.standard_normal((n, k))
        eps = rng.standard_normal((n, D))
        return torch.from_numpy((z @ W64.T + b64 + sigma * eps).astype(np.float32))

    train = sample(int(n_train))
    test = sample(int(n_test))
    return LinearGaussianDataset(
        name="gaussian", train=train, test=test, likelihood="gaussian", W=W32, b=b32, noise=sigma
    )


# ----------------------------------------------------------------------------------------------
# The registry and the entry point

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "gaussian": load_gaussian,
}


def options(name: str) -> dict[str, object]:
    """The options ``load(name, ...)`` accepts, with their defaults."""
    check_choice("name", name, DATASETS)
    return {p.name: p.default for p in inspect.signature(DATASETS[name]).parameters.values()}


def load(name: str = "digits", **opts) -> Dataset:
    """Load a dataset by registry name: ``load("digits")``, ``load("mnist", path=...)``, ``load("gaussian")``.

    Unknown names and unknown options are refused with a ValueError listing the valid ones.
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
    "split_indices",
    "parse_idx",
    "read_idx",
    "cache_dir",
    "MIRROR",
    "MIRRORS",
    "MNIST_MD5",
    "MNIST_FILES",
]
