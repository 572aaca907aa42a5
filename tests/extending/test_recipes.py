"""docs/extending.md, run as written: each recipe's file goes into an empty folder outside ibkit, its registration
line (for an experiment: an installed distribution's entry point) is made there, and the page's lines after it run
as a user's script. A recipe that needed an edit to ibkit, or a page that drifted from the code, fails here."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import tomllib

from ibkit.cli import main
from ibkit.registry import COLUMNS, DATASETS, POSTERIORS

PAGE = Path(__file__).parents[2] / "docs" / "extending.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def recipes() -> dict[str, list[tuple[str, str, str]]]:
    """{section title: its fenced blocks as (language, attributes, code)}."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for section in re.split(r"^## ", PAGE.read_text(), flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        out[title.strip()] = FENCE.findall(body)
    return out


def install(folder: Path, blocks: list[tuple[str, str, str]]) -> list[str]:
    """Write the recipe's files into ``folder`` and its entry points into a distribution's metadata there; the
    script blocks, in order."""
    scripts = []
    for language, attributes, code in blocks:
        name = re.search(r'title="([^"]+)"', attributes)
        if name:
            (folder / name.group(1)).write_text(code)
        elif language == "toml":
            info = folder / "my_ibkit_study-0.1.dist-info"
            info.mkdir()
            (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ibkit-study\nVersion: 0.1\n")
            groups = tomllib.loads(code)["project"]["entry-points"]  # pyproject's table, as entry_points.txt
            (info / "entry_points.txt").write_text("".join(
                f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items())
                for group, points in groups.items()))
        elif language == "python":
            scripts.append(code)
    return scripts


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """An empty working folder outside ibkit, first on sys.path; what a recipe registers is unregistered after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = {registry: set(registry) for registry in (COLUMNS, DATASETS, POSTERIORS)}
    modules = set(sys.modules)
    yield tmp_path
    for registry, names in before.items():
        for name in set(registry) - names:
            registry.remove(name)
    for name in set(sys.modules) - modules:
        if not name.startswith(("ibkit", "experiments", "torch", "sklearn", "pandas", "numpy", "matplotlib")):
            sys.modules.pop(name)


RECIPES = ("An experiment", "A dataset", "A posterior family", "An estimator column")


def test_the_page_has_the_four_recipes_each_a_file_of_its_own():
    assert set(RECIPES) <= set(recipes())
    for title in RECIPES:
        assert sum('title="' in attributes for _, attributes, _ in recipes()[title]) == 1, title


@pytest.mark.parametrize("title", ["A dataset", "A posterior family", "An estimator column"])
def test_a_recipe_runs_as_written(title, outside):
    for script in install(outside, recipes()[title]):
        exec(compile(script, f"{PAGE.name}: {title}", "exec"), {"__name__": "__main__"})


def test_an_experiment_runs_through_the_command_line_as_ibkits_own(outside, capsys):
    scripts = install(outside, recipes()["An experiment"])
    assert main(["list"]) == 0
    assert "latent-width" in capsys.readouterr().out
    assert main(["run", "latent-width", "--help"]) == 0
    assert "latent_dims (ints (a,b,...); default 2,4,8): latent widths d of the VAEs" in capsys.readouterr().out
    assert main(["run", "latent-width", "--set", "latent_dims=0"]) == 2
    assert "latent_dims[0]=0 must be >= 1" in capsys.readouterr().err
    assert main(["run", "latent-width", "--quick", "--out", "run"]) == 0
    runs = (outside / "run" / "runs.csv").read_text()
    assert "vae-d2-beta1.0-seed0" in runs and "vae-d4-beta1.0-seed0" in runs
    assert (outside / "run" / "figures" / "rate_distortion.png").is_file()
    assert "active units at rate" in (outside / "run" / "findings.md").read_text()
    for script in scripts:
        exec(compile(script, f"{PAGE.name}: An experiment", "exec"), {"__name__": "__main__"})
