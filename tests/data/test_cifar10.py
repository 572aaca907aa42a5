"""ibkit.data.load("cifar10"): the binary batches, read from small synthetic files in the real format."""

import numpy as np
import pytest
import torch

import ibkit
from ibkit.data import CIFAR10_TEST, CIFAR10_TRAIN

RECORD = 3073


def batch(labels: list[int], first: int) -> bytes:
    """Records with these labels; record j's pixel bytes are (first + j + position) mod 256."""
    records = []
    for j, label in enumerate(labels):
        pixels = (first + j + np.arange(3072)) % 256
        records.append(np.concatenate([[label], pixels]).astype(np.uint8))
    return np.concatenate(records).tobytes()


@pytest.fixture
def folder(tmp_path):
    """cifar-10-batches-bin/ with two images in each training batch and three in the test batch."""
    inner = tmp_path / "cifar-10-batches-bin"
    inner.mkdir()
    for i, name in enumerate(CIFAR10_TRAIN):
        (inner / name).write_bytes(batch([i, 9 - i], first=10 * i))
    (inner / CIFAR10_TEST).write_bytes(batch([3, 1, 4], first=100))
    return tmp_path


def test_the_batches_read_as_channels_first_rows_with_the_official_split(folder):
    ds = ibkit.data.load("cifar10", path=folder)
    assert (len(ds.train), len(ds.test), ds.input_dim) == (10, 3, 3072) and ds.image_shape == (3, 32, 32)
    assert ds.train_labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and ds.test_labels.tolist() == [3, 1, 4]
    image = ds.test[1].reshape(3, 32, 32) * 255  # test record 1: bytes (101 + position) mod 256
    assert image[1, 2, 3].round() == (101 + 1024 + 2 * 32 + 3) % 256  # green, row 2, column 3
    assert torch.all((ds.train >= 0) & (ds.train <= 1)) and ds.likelihood == "gaussian"
    assert [f["file"] for f in ds.provenance["files"]] == [*CIFAR10_TRAIN, CIFAR10_TEST]


def test_a_missing_or_malformed_batch_is_named(folder):
    inner = folder / "cifar-10-batches-bin"
    (inner / CIFAR10_TEST).write_bytes(b"\x00" * (RECORD + 5))
    with pytest.raises(ValueError, match="test_batch.bin is 3078 bytes, not a whole number of CIFAR-10 records"):
        ibkit.data.load("cifar10", path=inner)
    (inner / CIFAR10_TEST).write_bytes(batch([12], first=0))
    with pytest.raises(ValueError, match="test_batch.bin has a label 12"):
        ibkit.data.load("cifar10", path=folder)
    (inner / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3.bin"):
        ibkit.data.load("cifar10", path=folder)
