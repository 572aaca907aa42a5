"""The structure the redesign promised, checked on the source with ``ast``: ibkit's import graph has no cycle (imports
inside functions count: a lazy import is still a dependency), the leaf modules import what they say, no experiment
Config repeats a shared field, no call passes more than four arguments by position, and (in a fresh interpreter)
``import ibkit``, ``ibkit list`` and ``ibkit run NAME --help`` leave the heavy packages unimported."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import ibkit
from ibkit.config import ExperimentConfig
from ibkit.registry import experiment, experiments

PACKAGE = Path(ibkit.__file__).parent
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """{module: the ibkit modules it imports} for every module of the package, every import statement counted."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from its package upwards
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                    else []))
                targets.add(base)
                targets |= {f"{base}.{a.name}" for a in node.names}  # `from ibkit import data` imports a module
        # a module's own packages are imported before it runs, whatever it imports: no edge to them
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and t not in ancestors}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of modules (first == last), or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "ibkit.registry" in graph and "ibkit.cli" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    """The test above can fail: a package-level import counts (ibkit -> ibkit.data), and a circle is found."""
    graph = import_graph()
    assert "ibkit.data" in graph["ibkit"]
    assert find_cycle({**graph, "ibkit.registry": graph["ibkit.registry"] | {"ibkit.cli"}}) is not None


@pytest.mark.parametrize(("module", "allowed"), [
    ("ibkit.interface", set()),
    ("ibkit.registry", {"ibkit.interface"}),
])
def test_the_leaf_modules_import_only_what_they_say(module, allowed):
    assert import_graph()[module] <= allowed


def test_data_never_imports_models_and_estimators_never_import_model_code():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("ibkit.data"):
            assert not {t for t in targets if t.startswith("ibkit.models")}, name
        if name.startswith(("ibkit.estimators", "ibkit.distributions")):
            assert not {t for t in targets if t.startswith("ibkit.models")}, name


SHARED = {f.name for f in dataclasses.fields(ExperimentConfig)}


@pytest.mark.parametrize("name", sorted(experiments()))
def test_no_experiment_config_repeats_a_shared_field(name):
    """An experiment's Config declares only its grid: a training, data or network field comes from ExperimentConfig
    (a different default through ``defaults=``), never from a line of its own."""
    module = experiment(name)
    assert issubclass(module.Config, ExperimentConfig)
    tree = ast.parse(Path(module.__file__).read_text())
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Config").body
    declared = {n.target.id for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert declared and not declared & SHARED


def positional_calls(path: Path, most: int = 4) -> list[str]:
    """The calls in ``path`` that pass more than ``most`` arguments by position."""
    return [f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}"
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
            and len([a for a in node.args if not isinstance(a, ast.Starred)]) > most]


def test_no_call_in_ibkit_passes_more_than_four_arguments_by_position():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in positional_calls(path)]
    assert not found, "\n".join(found)


HEAVY = ("pandas", "sklearn", "seaborn", "matplotlib", "scipy")  # imported where used, never by `import ibkit`


def heavy_imported_by(code: str) -> list[str]:
    """The packages of ``HEAVY`` that ``code`` leaves in ``sys.modules``, run in a fresh interpreter.

    Args:
        code: Python source, run with the repository root as the working folder.

    Returns:
        the names imported, in ``HEAVY``'s order.
    """
    probe = f"{code}\nimport sys\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().splitlines()[-1].removeprefix("heavy:").split(",") if m]


def test_import_ibkit_imports_no_heavy_package():
    """Start-up (issue 34): pandas, scikit-learn, seaborn, matplotlib and scipy are imported by the functions that use
    them."""
    assert heavy_imported_by("import ibkit") == []


@pytest.mark.parametrize("argv", [["list"], ["run", "rate-distortion", "--help"]])
def test_listing_and_run_help_import_no_plotting_or_sklearn(argv):
    """``ibkit list`` and ``ibkit run NAME --help`` read the experiments' NAME, SUMMARY and Config: their figures and
    findings (seaborn, matplotlib) load when ``plot`` runs."""
    found = heavy_imported_by(f"from ibkit.cli import main\nassert main({argv!r}) == 0")
    assert not set(found) & {"seaborn", "matplotlib", "sklearn"}, found
