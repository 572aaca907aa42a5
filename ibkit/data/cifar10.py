"""CIFAR-10 from its binary version (Krizhevsky 2009; ``cifar-10-binary.tar.gz``, never the pickled one): 32x32
RGB images in [0, 1], rows [N, 3072] channels first, the official 50,000/10,000 split, labels 0-9."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ibkit.data._split import file_sha256
from ibkit.data.dataset import Dataset

CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_SUBFOLDER = "cifar-10-batches-bin"  # what the archive unpacks to
CIFAR10_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
RECORD = 1 + 3 * 32 * 32  # bytes per image: its label, then 1,024 red, 1,024 green and 1,024 blue bytes, row-major


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: (pixels uint8 [n, 3072] channels first, labels int64 [n]).

    Raises:
        ValueError: a file whose length is not a whole number of 3,073-byte records, or a label above 9.
    """
    data = np.frombuffer(path.read_bytes(), np.uint8)
    if not len(data) or len(data) % RECORD:
        raise ValueError(f"{path} is {len(data)} bytes, not a whole number of CIFAR-10 records ({RECORD} bytes "
                         "each: a label byte and 3,072 pixel bytes); is it the binary version?")
    records = data.reshape(-1, RECORD)
    if records[:, 0].max() > 9:
        raise ValueError(f"{path} has a label {int(records[:, 0].max())}; CIFAR-10's labels are 0-9")
    return records[:, 1:], records[:, 0].astype(np.int64)


def _scaled(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels as float32 in [0, 1]."""
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def _folder(path: str | os.PathLike | None) -> Path:
    """The folder of the batches: ``path`` (or its cifar-10-batches-bin/), else $IBKIT_DATA's cifar-10-batches-bin/."""
    if path is None:
        if not os.environ.get("IBKIT_DATA"):
            raise FileNotFoundError(f"no CIFAR-10 folder: pass load('cifar10', path=FOLDER) or set IBKIT_DATA to a "
                                    f"folder holding {CIFAR10_SUBFOLDER}/ (unpack {CIFAR10_SOURCE})")
        path = Path(os.environ["IBKIT_DATA"]) / CIFAR10_SUBFOLDER
    folder = Path(path).expanduser()
    if (folder / CIFAR10_SUBFOLDER).is_dir():
        folder = folder / CIFAR10_SUBFOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; unpack {CIFAR10_SOURCE} and point path at it")
    return folder


def load_cifar10(*, path: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10's binary batches as a dataset: train = data_batch_1..5.bin, test = test_batch.bin (the official
    split), pixels / 255 as float32 rows [N, 3072] in the files' channels-first order, labels 0-9, ``image_shape``
    (3, 32, 32), each file's SHA-256 in the provenance. The likelihood is "gaussian" (grey levels).

    Args:
        path: the folder of the .bin files, or one holding cifar-10-batches-bin/; None: $IBKIT_DATA's.

    Returns:
        the ``Dataset`` "cifar10".

    Raises:
        FileNotFoundError: no folder, or a batch missing from it (named).
        ValueError: a batch that is not in the binary format (named).
    """
    folder = _folder(path)
    missing = [name for name in (*CIFAR10_TRAIN, CIFAR10_TEST) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; unpack {CIFAR10_SOURCE} there (the binary "
                                "version: the pickled python version is not read)")
    train = [read_cifar10_batch(folder / name) for name in CIFAR10_TRAIN]
    test = read_cifar10_batch(folder / CIFAR10_TEST)
    files = [{"file": name, "sha256": file_sha256(folder / name)}
             for name in (*CIFAR10_TRAIN, CIFAR10_TEST)]
    train_x = np.concatenate([x for x, _ in train])
    return Dataset(name="cifar10", train=_scaled(train_x), test=_scaled(test[0]), likelihood="gaussian",
                   train_labels=torch.from_numpy(np.concatenate([y for _, y in train])),
                   test_labels=torch.from_numpy(test[1]),
                   provenance={"folder": str(folder.resolve()), "files": files,
                               "split": f"the official split {len(train_x):,}/{len(test[0]):,}"},
                   image_shape=CIFAR10_SHAPE)
