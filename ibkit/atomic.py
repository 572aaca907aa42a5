"""Atomic file writes: a reader sees the old file or the whole new one, never half, and a process killed at any
instant leaves no partial file in its place (only a hidden temp file, which ``RunFolder.remove_stale_temps`` clears).
The new file gets the permissions any other new file would (0666 less the umask), not the temp file's 0600."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def umask_mode() -> int:
    """The mode a plain new file gets here: 0o666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, binary: bool = False, suffix: str = ".tmp") -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; when the block ends without an error it is flushed to disk,
    given the umask's mode and renamed onto ``path`` (``os.replace``, atomic); on any error (Ctrl-C included) it is
    removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
