"""Start-up time of ibkit's entry points against ``import torch``, each timed as a whole process.

Five command lines, each a fresh Python process: ``python -c "import torch"`` (the floor: ibkit cannot start faster
than torch imports), ``python -c "import ibkit"``, ``ibkit --help``, ``ibkit list`` and ``ibkit run
rate-distortion --help``. The ``ibkit`` console script beside the running interpreter is used (else the one on
PATH, else ``python -m ibkit.cli``). Every timed run of a command is paired with an ``import torch`` run right before
it, and the commands take turns within each repeat, so drifts of a noisy machine hit a command and its baseline
alike. One untimed round warms the file cache first. Prints each command's median seconds and the median of its
per-pair ratio to ``import torch``, against the aims (issue 34: import ibkit <= 1.10x, ibkit list <= 1.3x).

Where PYTHONDONTWRITEBYTECODE is set and the tree holds no ``__pycache__`` (these machines), every process compiles
ibkit's modules from source (about 0.1 s); ``--bytecode`` times the processes as an installed package starts, with
compiled modules cached under a temporary PYTHONPYCACHEPREFIX (written by the untimed round; the tree is untouched).

    python benchmarks/bench_startup.py [--repeats 7] [--bytecode] [--only "import ibkit"]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIMS = {"import ibkit": 1.10, "ibkit list": 1.30}  # ratio to `import torch`, issue 34


def ibkit_command() -> list[str]:
    """How to start the ``ibkit`` command: the console script beside this interpreter (a pyenv or conda shim on
    PATH would add its own start-up), else the one on PATH, else ``python -m ibkit.cli``.

    Returns:
        the argv prefix.
    """
    beside = Path(sys.executable).parent / "ibkit"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ibkit")
    return [found] if found else [sys.executable, "-m", "ibkit.cli"]


def commands() -> dict[str, list[str]]:
    """The timed command lines by label; the first is the baseline.

    Returns:
        {label: argv}.
    """
    ibkit = ibkit_command()
    return {"import torch": [sys.executable, "-c", "import torch"],
            "import ibkit": [sys.executable, "-c", "import ibkit"],
            "ibkit --help": [*ibkit, "--help"],
            "ibkit list": [*ibkit, "list"],
            "ibkit run rate-distortion --help": [*ibkit, "run", "rate-distortion", "--help"]}


def seconds(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one process running ``argv`` in the repository root, its output discarded.

    Args:
        argv: the command line.
        env: its environment (None: this process's).

    Returns:
        the seconds from start to exit.

    Raises:
        RuntimeError: a command that exits with a non-zero status (with its stderr's last line).
    """
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def measure(lines: dict[str, list[str]], repeats: int,
            env: dict[str, str] | None = None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``repeats`` rounds; in each, every command but the baseline runs right after a run of the baseline, and the
    commands' order turns by one each round.

    Args:
        lines: {label: argv}; the first is the baseline.
        repeats: timed rounds (one untimed round runs first).
        env: the processes' environment (None: this process's).

    Returns:
        (seconds per label, ratios per label): every run's seconds (the baseline's from all its pairs) and each
        pair's command / baseline.
    """
    baseline, *others = lines
    times: dict[str, list[float]] = {label: [] for label in lines}
    ratios: dict[str, list[float]] = {label: [] for label in others}
    for label in lines:  # warm-up: the file cache, .pyc files
        seconds(lines[label], env)
    for rep in range(repeats):
        turn = rep % len(others)
        for label in others[turn:] + others[:turn]:
            base, took = seconds(lines[baseline], env), seconds(lines[label], env)
            times[baseline].append(base)
            times[label].append(took)
            ratios[label].append(took / base)
    return times, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (each command, each after a baseline)")
    parser.add_argument("--bytecode", action="store_true", help="cache compiled modules (in a temporary "
                        "PYTHONPYCACHEPREFIX), as an installed package starts")
    parser.add_argument("--only", action="append", choices=list(commands())[1:], metavar="COMMAND",
                        help="time only this command against its baseline (repeatable), e.g. to rerun a noisy pair")
    args = parser.parse_args()
    lines = {label: argv for label, argv in commands().items()
             if args.only is None or label == "import torch" or label in args.only}
    with tempfile.TemporaryDirectory(prefix="bench-startup-pyc-") as cache:
        env = None
        if args.bytecode:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = cache
        times, ratios = measure(lines, args.repeats, env)
    compiled = "bytecode cached (--bytecode)" if args.bytecode else "PYTHONDONTWRITEBYTECODE set: modules without " \
        "a __pycache__ compile in every process" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "bytecode cached"
    print(f"{args.repeats} rounds, each command paired with `import torch` run right before it; median seconds, "
          f"median of the per-pair ratios; console script: {' '.join(ibkit_command())}; modules: {compiled}")
    print(f"{'command':34s} {'seconds':>8s} {'x torch':>8s}  aim")
    for label in lines:
        ratio = f"{statistics.median(ratios[label]):8.2f}" if label in ratios else f"{1:8.2f}"
        aim = f"<= {AIMS[label]:.2f}x" if label in AIMS else ""
        print(f"{label:34s} {statistics.median(times[label]):8.3f} {ratio}  {aim}")


if __name__ == "__main__":
    main()
