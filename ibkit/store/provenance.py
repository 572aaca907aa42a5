"""Where a run folder's results came from: the code (git state), the machine and versions (environment), the data
(its record and split) and the command that wrote a generated file. ``RunFolder.write_manifest`` stores them in
``manifest.json``; ``data_of`` and ``quick_of`` read them back. Nothing here reads or writes a run folder itself."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

COMBINED = "compare"  # the manifest's experiment of a folder that ``combine`` wrote (``ibkit compare``)

# environment variables that change what a run reads or how it computes: the data folder, thread counts, devices
RUN_VARIABLES = ("IBKIT_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
                 "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_")


def git_state(exclude: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None) -> dict:
    """The commit and cleanliness of the git tree around ``cwd``.

    Changes under ``exclude`` (the run folder being written, when it lies in the tree) and under the tree's
    ``results/`` (other runs' stored outputs: data, not the code that runs) do not make it dirty.

    Args:
        exclude: a folder whose changes do not count, or None.
        cwd: a folder inside the tree (None: ibkit's source).

    Returns:
        {"commit": sha or None, "dirty": bool or None}; Nones outside a git tree or without git.
    """

    def git(*args) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd or Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10)

    try:
        sha, top = git("rev-parse", "HEAD"), git("rev-parse", "--show-toplevel")
        if sha.returncode != 0 or top.returncode != 0:
            return {"commit": None, "dirty": None}
        pathspec = [":(top)", ":(top,exclude)results"]
        if exclude is not None:
            try:
                inside = Path(exclude).resolve().relative_to(Path(top.stdout.strip()).resolve())
                pathspec.append(f":(top,exclude){inside.as_posix()}")
            except ValueError:
                pass  # the run folder lies outside the source tree
        status = git("status", "--porcelain", "--", *pathspec)
        return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict:
    """Versions and machine facts for the manifest: ibkit, Python, torch, numpy and pandas versions, the machine,
    CPU count, torch threads, the CUDA device, and the ``RUN_VARIABLES`` set in the environment."""
    import numpy
    import pandas as pd
    import torch

    import ibkit

    return {
        "ibkit": ibkit.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(RUN_VARIABLES)},
    }


def data_record(ds) -> dict:
    """The manifest's ``data`` record of a loaded ``ibkit.data.Dataset``: its name, its provenance (for IDX data the
    folder, where it was found and each file's SHA-256) and its split ("t10k split 8,000/2,000 (test_fraction 0.2,
    seed 0)")."""
    return {"name": ds.name, **ds.provenance, "split": ds.split}


def data_of(manifest: dict) -> str | None:
    """The data a manifest names, with its split: "mnist, t10k split 8,000/2,000 (test_fraction 0.2, seed 0)"; the
    config's dataset alone for a manifest written before manifests recorded the split; for a folder ``combine``
    wrote, each source's, named ("mine: digits, 359 rows; rate_distortion: digits, ..."); else None."""
    if manifest.get("experiment") == COMBINED:
        texts = [f"{s.get('source')}: {text}" for s in manifest.get("sources") or []
                 if (text := data_of(s.get("manifest") or {}))]
        return "; ".join(texts) or None
    data = manifest.get("data") or {}
    name = data.get("name") or manifest.get("config", {}).get("dataset")
    return f"{name}, {data['split']}" if name and data.get("split") else name


def quick_of(manifest: dict, folder: str | os.PathLike) -> bool:
    """Whether ``folder`` with this manifest holds a quick run (``ibkit run --quick``): the manifest says ``quick``,
    or, where it does not say, the folder's name ends in -quick (the default folder of a quick run)."""
    if "quick" in manifest:
        return bool(manifest["quick"])
    return Path(folder).name.endswith("-quick")


def writer_command(command: str | Sequence[str] | None = None) -> str:
    """The command writing results now, as a generated file names it: ``ibkit run rate-distortion --quick``,
    ``ibkit plot DIR``, or the script that called ibkit from Python.

    Args:
        command: the command line, as text or as its words (``["ibkit", "plot", "DIR"]``, quoted as a shell
            would need them); None: this process's own (``sys.argv``, the script by its file name).

    Returns:
        the command as one line of shell text.
    """
    if isinstance(command, str):
        return command
    argv = command or [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return shlex.join(argv)


__all__ = ["COMBINED", "RUN_VARIABLES", "git_state", "environment", "data_record", "data_of", "quick_of",
           "writer_command"]
