"""The pages run: every command and code block of README.md and docs/*.md, as a reader would run them, and the
numbers a page quotes are the ones its code returns.

How the blocks of a page are read (the convention for whoever writes one):

- A ```python block runs. The blocks of a page run in page order in one fresh Python process and namespace (a
  later block may use an earlier one's names), from the root of a fresh clone of this repository (its committed
  results/ included). A ```py block, or any other language (text, console, latex, toml, yaml), is shown only.
- A ```bash block runs line by line. An `ibkit ...` command runs through `ibkit.cli.main` and must succeed; an
  `ibkit run` gets CHEAP's training settings appended (the keys its experiment's Config has and the command does
  not set), so that it takes seconds, and must write its folder where the pages say (results/NAME-DATASET, with
  -quick for --quick). `pip install ...` and `pytest` (alone or before `&&`) are the environment this test runs
  in, not run. Any other command fails the test: show it in a skipped block. `IBKIT_DATA=... ibkit ...` runs with
  the shared MNIST test set, and is left out with a warning where that is absent.
- `<!-- skip: REASON -->` on the line before a fence: the block is shown and never run (it needs your own files,
  a cluster, the network, the full MNIST, or hours). `<!-- slow: REASON -->`: it runs only under `pytest -m slow`.
  `<!-- needs: MODULE -->`: it runs where MODULE is installed (an optional extra), and is left out with a warning
  elsewhere.
- A python line ending in `# → QUOTE` states what the expression on it (or the name it assigns) evaluates to:
  every number in QUOTE, up to its first "; " or ": ", must be one of the values it returns (a tuple's, a dict's,
  a table's or a tensor's, flattened) to the quoted number's last digit, give or take one in that digit.
- Every python block that runs checks something: a `# →` quote, an `assert` or a `print(...)`.
- After each page, no committed file of the clone has changed (a default results folder is never a committed
  reference folder), and the page wrote nothing outside results/ that git does not ignore.

The pages share one clone, in order, so a page's `ibkit run ... --quick` after an earlier page's is the
resumption the pages promise (it skips the finished runs). Run this file as a script (`python
tests/cli/test_readme.py PAGE`) to run one page in the current folder as the test does.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import linecache
import math
import os
import re
import shlex
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_MNIST = ROOT.parent / "shared" / "data"
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
CHEAP = {"epochs": "1", "seeds": "0", "hidden": "16", "iwae_k": "5", "eval_rows": "50", "iwae_rows": "50",
         "train_rows": "50", "decomposition_rows": "50", "correlation_k": "20", "amortization_max_steps": "20",
         "frozen_epochs": "1", "min_ess": "2", "layer_hidden": "8", "warmup_epochs": "1"}
ENVIRONMENT = ("pip", "pytest")  # commands of a bash block that are this test's own environment, not run
MARKER = re.compile(r"<!--\s*(skip|slow|needs)\s*:\s*(\S.*?)\s*-->")
FENCE = re.compile(r"^( *)```(\w*)((?:\s+\w+=\"[^\"]*\")*)\s*$")  # ```python title="my_file.py": a file, not run
QUOTE = re.compile(r"#\s*→\s*(.*)$")
NUMBER = re.compile(r"(?<![\w.])[-−]?(\d+)(?:\.(\d+))?(?:[eE]([-−+]?\d+))?(?![\w.])")
NOT_RUN = "NOT RUN: "  # how the page runner tells the test what it left out


@dataclasses.dataclass
class Block:
    page: str
    line: int  # of the first line of code, 1-based
    language: str
    code: str
    marker: str = ""  # "", "skip", "slow" or "needs"
    reason: str = ""
    attributes: str = ""  # title="FILE": the whole of a file a recipe writes (docs/extending.md), never run here

    @property
    def runs(self) -> bool:
        return self.language in ("python", "bash") and self.marker != "skip" and "title=" not in self.attributes

    @property
    def works(self) -> bool:
        """Runs something beyond this test's own environment (a bash block of `pip install` alone does not)."""
        return self.runs and (self.language == "python" or any(
            (command_name(words)[1] or [""])[0] not in ENVIRONMENT for _, words in shell_commands(self)))


def blocks(page: str) -> list[Block]:
    """The fenced blocks of a page, with the marker on the line before each."""
    lines = (ROOT / page).read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, language, attributes = len(fence.group(1)), fence.group(2), fence.group(3).strip()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{page}:{i + 1}: a code fence that is never closed"
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        code = "\n".join(line[indent:] for line in lines[i + 1:end])
        found.append(Block(page, i + 2, language, code, *(marker.groups() if marker else ("", "")),
                           attributes=attributes))
        i = end + 1
    return found


def shell_commands(block: Block) -> list[tuple[int, list[str]]]:
    """(line, words) of each command of a bash block: continuation lines joined, comments dropped, `&&` split."""
    commands, pending, start = [], "", 0
    for number, line in enumerate(block.code.splitlines(), block.line):
        if not pending:
            start = number
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words, pending = shlex.split(pending, comments=True), ""
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append((start, words[:cut]))
            words = words[cut + 1:]
    return commands


def command_name(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """The environment assignments before a command, and the command's words."""
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, value = words[0].split("=", 1)
        env[key], words = value, words[1:]
    return env, words


def python_checks(block: Block) -> bool:
    tree = ast.parse(block.code)
    return bool(QUOTE.search(block.code)) or any(
        isinstance(node, ast.Assert) or (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print")
        for node in ast.walk(tree))


# ---------------------------------------------------------------------------------------------------------------
# The static checks: every page follows the convention (fast, no clone).


def test_the_pages_follow_the_convention():
    problems = []
    for page in PAGES:
        for block in blocks(page):
            where = f"{block.page}:{block.line - 1}"
            if MARKER.search(block.code):
                problems.append(f"{where}: a marker inside a block")
            if not block.runs:
                continue
            if block.language == "python":
                try:
                    compile(block.code, where, "exec")
                except SyntaxError as error:
                    problems.append(f"{where}: {error}")
                    continue
                if not python_checks(block):
                    problems.append(f"{where}: a python block that runs checks nothing (no `# →` quote, assert or "
                                    "print); mark it <!-- skip: REASON --> if it cannot run")
            else:
                for line, words in shell_commands(block):
                    _, words = command_name(words)
                    if not words or (words[0] != "ibkit" and words[0] not in ENVIRONMENT):
                        problems.append(f"{block.page}:{line}: {shlex.join(words)!r} is not an ibkit command; put "
                                        "it in a block marked <!-- skip: REASON -->")
    assert not problems, "\n".join(problems)


def test_the_readme_is_a_front_page_whose_quick_start_runs():
    """At most about 8 KB, with the Quick start's command among those this test runs."""
    assert len((ROOT / "README.md").read_bytes()) <= 8192
    commands = [shlex.join(command_name(words)[1]) for block in blocks("README.md") if block.runs
                and block.language == "bash" for _, words in shell_commands(block)]
    assert "ibkit run rate-distortion --quick" in commands


def test_a_quote_is_checked_to_its_last_digit():
    assert matches("4.27, 15.29 nats", (4.265396, 15.290207)) == []
    assert matches("mi_lower 3.57 <= I(X;Z) (se 0.08)", {"mi_lower": 3.568, "se": 0.0792}) == []
    assert matches("-18.72; above -(R + D) = -19.56", -18.7154) == []
    assert matches("8: every unit", 8) == [] and matches("1e-4", [0.0001]) == []
    assert matches("4.27", 4.29) == ["4.27"] and matches("8", 10) == ["8"]


# ---------------------------------------------------------------------------------------------------------------
# Running the pages.


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of this repository (its committed results included), shared by the pages in turn."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: no fresh clone to make")
    path = tmp_path_factory.mktemp("pages") / "ibkit"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    return path


def page_params():
    params = []
    for page in PAGES:
        found = blocks(page)
        params.append(pytest.param(page, False, id=page))
        if any(b.marker == "slow" and b.runs for b in found):
            params.append(pytest.param(page, True, id=f"{page}-with-slow-blocks", marks=pytest.mark.slow))
    return params


@pytest.mark.parametrize(("page", "slow"), page_params())
def test_a_page_runs(clone, page, slow):
    if not any(b.works and (slow or b.marker != "slow") for b in blocks(page)):
        pytest.skip(f"{page} has no block that runs more than the environment (pip install, pytest)")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("IBKIT_DATA", None)
    done = subprocess.run([sys.executable, __file__, page, *(["--slow"] if slow else [])], cwd=clone, env=env,
                          capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    for line in output.splitlines():
        if line.startswith(NOT_RUN):
            warnings.warn(f"{page}: {line}", stacklevel=1)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    changed = [line for line in status if not (line.startswith("?? ") and line[3:].startswith("results/"))]
    assert not changed, f"{page} changed committed files or wrote outside results/:\n" + "\n".join(changed)


# ---------------------------------------------------------------------------------------------------------------
# The page runner: in a process of its own, from the clone's root.


def run_page(page: str, slow: bool) -> int:
    namespace: dict = {"__name__": "__main__"}
    for block in blocks(page):
        if not block.runs:
            continue
        if block.marker == "slow" and not slow:
            print(f"{NOT_RUN}{page}:{block.line - 1}: slow ({block.reason}); pytest -m slow runs it")
            continue
        if block.marker == "needs" and importlib.util.find_spec(block.reason) is None:
            print(f"{NOT_RUN}{page}:{block.line - 1}: {block.reason} is not installed")
            continue
        print(f"--- {page}:{block.line - 1} ({block.language})", flush=True)
        try:
            if block.language == "python":
                run_python(block, namespace)
            else:
                for line, words in shell_commands(block):
                    run_command(page, line, words)
        except Exception:
            traceback.print_exc()
            print(f"FAILED: the block of {page} at line {block.line - 1}", file=sys.stderr)
            return 1
    return 0


def run_python(block: Block, namespace: dict) -> None:
    source = block.code.splitlines()
    filename = str(ROOT / block.page)
    linecache.cache[filename] = (0, None, [line + "\n" for line in (ROOT / block.page).read_text().splitlines()],
                                 filename)
    tree = ast.parse(block.code)
    ast.increment_lineno(tree, block.line - 1)
    statements = tree.body
    for i, statement in enumerate(statements):
        end = statement.end_lineno or statement.lineno
        quote = QUOTE.search(source[end - block.line])
        if quote and i + 1 < len(statements) and statements[i + 1].lineno == end:
            quote = None  # a quote on a line of several statements belongs to the last
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), filename, "eval"), namespace)
        else:
            exec(compile(ast.Module([statement], []), filename, "exec"), namespace)
            value = None
            if quote:
                targets = statement.targets if isinstance(statement, ast.Assign) else []
                if len(targets) != 1 or not isinstance(targets[0], ast.Name):
                    raise ValueError(f"{block.page}:{end}: a `# →` quote follows an expression or `name = ...`")
                value = namespace[targets[0].id]
        if quote:
            missing = matches(quote.group(1), value)
            if missing:
                raise AssertionError(f"{block.page}:{end}: the page quotes {', '.join(missing)}, which "
                                     f"{ast.unparse(statement)!r} did not return: {value!r}")
            print(f"{block.page}:{end}: {quote.group(1)}")


def matches(quote: str, value) -> list[str]:
    """The numbers of ``quote`` (up to its first "; " or ": ") that are not, to their last digit give or take one,
    among the numeric values of ``value``."""
    quote = re.split(r"; |: ", quote, maxsplit=1)[0]
    values = list(numbers_in(value))
    missing = []
    for found in NUMBER.finditer(quote):
        digits, exponent = found.group(2) or "", found.group(3) or "0"
        q = float(found.group(0).replace("−", "-"))
        unit = 10.0 ** (int(exponent.replace("−", "-")) - len(digits))
        if not any(math.isfinite(v) and abs(v - q) <= unit * (1 + 1e-9) for v in values):
            missing.append(found.group(0))
    return missing


def numbers_in(value):
    """Every number ``value`` holds: scalars, tensors, arrays, tables, and what tuples, lists and dicts hold."""
    import numpy as np
    import pandas as pd
    import torch

    if isinstance(value, bool | int | float | np.number):
        yield float(value)
    elif isinstance(value, torch.Tensor):
        yield from (float(v) for v in value.detach().cpu().double().flatten().tolist())
    elif isinstance(value, np.ndarray):
        yield from (float(v) for v in value.astype(float).ravel())
    elif isinstance(value, pd.DataFrame | pd.Series):
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        yield from (float(v) for v in frame.select_dtypes("number").to_numpy(float).ravel())
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers_in(v)
    elif isinstance(value, tuple | list | set):
        for v in value:
            yield from numbers_in(v)


def run_command(page: str, line: int, words: list[str]) -> None:
    env, words = command_name(words)
    if words and words[0] in ENVIRONMENT:
        return
    if not words or words[0] != "ibkit":
        raise ValueError(f"{page}:{line}: {shlex.join(words)!r} is not an ibkit command")
    from ibkit.cli import main

    args = words[1:]
    if "IBKIT_DATA" in env:
        if not (SHARED_MNIST / "mnist").is_dir():
            print(f"{NOT_RUN}{page}:{line}: {shlex.join(words)} (no MNIST at {SHARED_MNIST / 'mnist'})")
            return
        os.environ["IBKIT_DATA"] = str(SHARED_MNIST)
    if "dask" in args and importlib.util.find_spec("distributed") is None:
        print(f"{NOT_RUN}{page}:{line}: {shlex.join(words)} (Dask distributed is not installed)")
        return
    folder = None
    if args[:1] == ["run"] and not {"-h", "--help"} & set(args):
        args, folder = cheap(args)
    print(f"$ {shlex.join(['ibkit', *args])}", flush=True)
    try:
        status = main(args)
    except SystemExit as exit:  # --help
        status = exit.code or 0
    finally:
        os.environ.pop("IBKIT_DATA", None)
    assert status == 0, f"{page}:{line}: `{shlex.join(words)}` exited with status {status}"
    if folder is not None:
        assert (folder / "runs.csv").is_file(), f"{page}:{line}: `{shlex.join(words)}` wrote no {folder}/runs.csv"


def cheap(args: list[str]) -> tuple[list[str], Path | None]:
    """An `ibkit run` command with CHEAP's settings added, and the folder it must write (None with --out)."""
    from ibkit.registry import experiment

    name = args[1]
    fields = {f.name: f for f in dataclasses.fields(experiment(name).Config)}
    given = {args[i + 1].split("=", 1)[0]: args[i + 1].split("=", 1)[1] for i, word in enumerate(args)
             if word == "--set"}
    extra = [x for key, value in CHEAP.items() if key in fields and key not in given
             for x in ("--set", f"{key}={value}")]
    if "--out" in args:
        return [*args, *extra], None
    dataset = given.get("dataset", fields["dataset"].default if "dataset" in fields else "digits")
    folder = Path("results") / f"{name.replace('-', '_')}-{dataset}{'-quick' if '--quick' in args else ''}"
    return [*args, *extra], folder


if __name__ == "__main__":
    sys.exit(run_page(sys.argv[1], "--slow" in sys.argv[2:]))
