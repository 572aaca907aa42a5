"""IDX files, LeCun's format for MNIST: magic [0, 0, dtype, ndim], ndim big-endian uint32 sizes, then the data."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions [N, rows, cols]
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension [N]


def parse_idx(raw: bytes, *, source: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file into an array of the declared shape.

    Checks the magic number (against ``expected_magic`` when given) and that the byte count equals
    the header plus the product of the declared dimensions; errors are ValueErrors naming ``source``.

    Args:
        raw: the file's bytes, uncompressed.
        source: the name messages give the bytes (a path).
        expected_magic: the magic number the file must have (``IDX_IMAGES_MAGIC``, ``IDX_LABELS_MAGIC``), or None
            for any IDX type.

    Returns:
        the data, of the declared shape and type, in native byte order.

    Raises:
        ValueError: a header that is short, of another magic number or no IDX header, or a byte count that
            does not match the declared shape.
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
    """Read one IDX file, gzip-compressed or not (detected from its first bytes), with ``parse_idx``'s checks.

    Args:
        path: the file.
        expected_magic: the magic number the file must have, or None for any IDX type.

    Returns:
        the data, of the declared shape and type.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable gzip file, or ``parse_idx``'s checks.
    """
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
