"""A folder of PNG or JPEG images as a dataset (Pillow): RGB rows [N, 3 H W] in [0, 1], channels first."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ibkit.checks import check_number
from ibkit.data._split import file_sha256, split_indices
from ibkit.data.dataset import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what the folder is searched for (case-insensitive), not recursively


def _square(image, size: int):
    """The central square of ``image`` (side min(W, H)), resized to size x size (bicubic)."""
    from PIL import Image

    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def _read(path: Path, size: int | None) -> np.ndarray:
    """One image as float32 [3, H, W] in [0, 1]; a file Pillow cannot read is a ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); remove it from the folder or replace it") from None
    if size is not None:
        rgb = _square(rgb, size)
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0


def load_images(*, path: str | os.PathLike | None = None, size: int | None = None, test_fraction: float = 0.2,
                seed: int = 0) -> Dataset:
    """The PNG and JPEG images of a folder (``IMAGE_SUFFIXES``, sorted by name, not recursive) as RGB rows in
    [0, 1]: each image [3, H, W] flattened channels first to 3 H W, its ``image_shape`` (3, H, W) on the dataset.
    With ``size`` each is centre-cropped to a square and resized (bicubic) to size x size; without it all must
    have one size. The provenance lists every file with its SHA-256. Unlabelled; the likelihood is "gaussian".

    Args:
        path: the folder.
        size: the side in pixels to crop and resize to; None: keep the images' own (equal) size.
        test_fraction: the share of images held out, in (0, 1).
        seed: the random split's seed.

    Returns:
        the ``Dataset`` "images", train and test float32 [N, 3 H W], ``image_shape`` (3, H, W).

    Raises:
        ValueError: no folder given, a folder without images, a file Pillow cannot read, images of mixed sizes
            without ``size``, or an option out of range.
    """
    if path is None:
        raise ValueError("load('images') needs path=FOLDER, a folder of PNG or JPEG files")
    if size is not None:
        check_number("size", size, low=1, integer=True)
    check_number("test_fraction", test_fraction, low=0, low_open=True, high=1)
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"path={str(path)!r} is not a folder; give a folder of PNG or JPEG files")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"{folder} holds {len(files)} PNG or JPEG image(s) ({', '.join(IMAGE_SUFFIXES)}); a train "
                         "and a test split need at least 2")
    images = [_read(f, size) for f in files]
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        odd, shape = next((f, a.shape) for f, a in zip(files, images, strict=True) if a.shape != images[0].shape)
        raise ValueError(f"the images differ in size: {odd} is {shape[2]}x{shape[1]} but {files[0]} is "
                         f"{images[0].shape[2]}x{images[0].shape[1]}; pass size=S to crop and resize them all")
    x = np.stack(images).reshape(len(images), -1)
    train_idx, test_idx = split_indices(len(x), test_fraction, seed)
    listing = [{"file": f.name, "sha256": file_sha256(f)} for f in files]
    return Dataset(name="images", train=torch.from_numpy(np.ascontiguousarray(x[train_idx])),
                   test=torch.from_numpy(np.ascontiguousarray(x[test_idx])), likelihood="gaussian",
                   provenance={"folder": str(folder.resolve()), "files": listing, "size": size,
                               "split": f"{folder.name} split {len(train_idx):,}/{len(test_idx):,} (test_fraction "
                                        f"{test_fraction:g}, seed {seed})"},
                   image_shape=tuple(images[0].shape))

