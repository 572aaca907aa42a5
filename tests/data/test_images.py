"""ibkit.data.load("images"): a folder of PNG and JPEG files read with Pillow, against pixels written by hand."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

import ibkit


def write(folder, name: str, pixels: np.ndarray) -> None:
    """pixels [H, W, 3] uint8 as the image file ``name`` (PNG or JPEG by its suffix)."""
    Image.fromarray(pixels, "RGB").save(folder / name)


@pytest.fixture
def folder(tmp_path):
    """Five 6x4 PNGs; image i is uniform except its pixel (row 1, column 2), which is (i, 2i, 3i)."""
    for i in range(5):
        pixels = np.full((4, 6, 3), 200, np.uint8)
        pixels[1, 2] = (i, 2 * i, 3 * i)
        write(tmp_path, f"im{i}.png", pixels)
    return tmp_path


def test_a_folder_reads_as_rgb_rows_channels_first_with_its_shape_and_checksums(folder):
    ds = ibkit.data.load("images", path=folder, test_fraction=0.4)
    assert ds.image_shape == (3, 4, 6) and ds.input_dim == 72 and (len(ds.train), len(ds.test)) == (3, 2)
    assert ds.likelihood == "gaussian" and ds.train_labels is None
    rows = torch.cat([ds.train, ds.test]).reshape(-1, 3, 4, 6)
    marks = sorted((rows[:, :, 1, 2] * 255).round().tolist())
    assert marks == [[i, 2 * i, 3 * i] for i in range(5)]  # the marked pixel of each image, in its channels
    assert torch.all(rows[:, :, 0, 0] == 200 / 255)
    listing = ds.provenance["files"]
    assert [f["file"] for f in listing] == [f"im{i}.png" for i in range(5)]
    assert listing[3]["sha256"] == hashlib.sha256((folder / "im3.png").read_bytes()).hexdigest()


def test_size_crops_the_central_square_and_resizes_mixed_sizes(tmp_path):
    """A 12x8 image whose central 8x8 square is blue and whose side bands are red reads as pure blue."""
    wide = np.zeros((8, 12, 3), np.uint8)
    wide[:, :, 0] = 255
    wide[:, 2:10] = (0, 0, 255)
    write(tmp_path, "a.png", wide)
    write(tmp_path, "b.jpg", np.full((10, 10, 3), 128, np.uint8))
    ds = ibkit.data.load("images", path=tmp_path, size=4, test_fraction=0.5)
    assert ds.image_shape == (3, 4, 4) and ds.provenance["size"] == 4
    rows = torch.cat([ds.train, ds.test]).reshape(-1, 3, 4, 4)
    blue = next(r for r in rows if r[2].mean() > 0.9)
    assert torch.equal(blue[0], torch.zeros(4, 4)) and torch.equal(blue[2], torch.ones(4, 4))


def test_bad_folders_are_refused_naming_the_file(tmp_path, folder):
    with pytest.raises(ValueError, match="needs path=FOLDER"):
        ibkit.data.load("images")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="holds 0 PNG or JPEG image"):
        ibkit.data.load("images", path=tmp_path / "nothing")
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        ibkit.data.load("images", path=folder)
    (folder / "broken.png").unlink()
    write(folder, "big.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="im0.png is 6x4 but .*big.png is 5x5; pass size=S"):
        ibkit.data.load("images", path=folder)
    assert ibkit.data.load("images", path=folder, size=3).image_shape == (3, 3, 3)
    with pytest.raises(ValueError, match="size=0 must be >= 1"):
        ibkit.data.load("images", path=folder, size=0)
