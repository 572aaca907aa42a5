"""ibkit.results.combine and `ibkit compare`: several analyse reports and run folders on one plane and one table,
each row named by its source folder, each source's manifest kept whole; `ibkit plot` and `ibkit table` read the
combined folder; bad input is one line, exit status 2 and nothing written."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import ibkit
from ibkit import plots
from ibkit.cli import main
from ibkit.gallery import write_gallery
from ibkit.results import combine, load
from ibkit.tables import summarise

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "rate_distortion"  # a run folder, committed


@pytest.fixture(scope="module")
def sources(tmp_path_factory, digits, tiny_vae):
    """Two analyse reports of (untrained) VAEs of one kind and beta but different weights (seeds 0, 1), "mine" on
    digits and "theirs" on rows given without a name, and a run folder "run": the committed digits rate-distortion
    sweep's table and manifest, as ``ibkit run`` wrote them."""
    root = tmp_path_factory.mktemp("sources")
    for name, seed, dataset in (("mine", 0, "digits"), ("theirs", 1, "")):
        model = tiny_vae(input_dim=64, latent_dim=2, beta=1.0, seed=seed)
        ibkit.analyse(model, digits.test, k=5, eval_rows=100, iwae_rows=50, name=name, dataset=dataset).write(
            root / name)
    (root / "run").mkdir()
    for name in ("runs.csv", "manifest.json"):
        shutil.copy(REFERENCE / name, root / "run" / name)
    return root


def _files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_combine_names_every_row_by_its_source_keeps_each_manifest_and_draws_one_plane(sources, tmp_path):
    dirs = [sources / "mine", sources / "theirs", sources / "run"]
    own = {d.name: pd.read_csv(d / "runs.csv") for d in dirs}
    out = tmp_path / "both"
    runs = combine(dirs, out)
    assert runs["source"].tolist() == ["mine", "theirs", *["run"] * len(own["run"])]  # every row, in order
    for name, table in own.items():  # each source's rows as stored, numbers unchanged
        mine = runs[runs["source"] == name]
        assert mine["run_id"].tolist() == table["run_id"].astype(str).tolist()
        assert mine["rate"].to_numpy() == pytest.approx(table["rate"].to_numpy(), nan_ok=True)
    stored = pd.read_csv(out / "runs.csv")
    assert stored.columns[0] == "source" and len(stored) == len(runs)
    assert load(out)["distortion"].to_numpy() == pytest.approx(runs["distortion"].to_numpy(), nan_ok=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["experiment"] == "compare" and manifest["git"] and manifest["environment"]["torch"]
    assert [s["source"] for s in manifest["sources"]] == ["mine", "theirs", "run"]
    for entry, folder in zip(manifest["sources"], dirs, strict=True):  # each source's manifest, whole
        assert entry["folder"] == str(folder)
        assert entry["manifest"] == json.loads((folder / "manifest.json").read_text())
    assert manifest["sources"][0]["manifest"]["experiment"] == "analyse"  # an analyse report keeps a manifest now
    assert manifest["sources"][0]["manifest"]["data"] == {"name": "digits", "split": "359 rows"}
    for ext in ("pdf", "png"):
        assert (out / "figures" / f"rate_distortion.{ext}").stat().st_size > 5000
    assert combine(dirs).equals(runs) and not (tmp_path / "none").exists()  # no out: the table alone


def test_two_sources_of_one_kind_and_beta_are_two_points_on_the_plane(sources, tmp_path):
    """Without ``by`` the two VAEs (beta 1, one seed each) would be averaged into one point; by source, each sits
    at its own rate and distortion, in its own colour, named in the legend."""
    runs = combine([sources / "mine", sources / "theirs"])
    fig = plots.rate_distortion(runs, by="source")
    lines = {bars.get_label(): bars.lines[0] for bars in fig.axes[0].containers}  # each series: its data line
    assert set(lines) == {"mine: VAE", "theirs: VAE"}
    for name, line in lines.items():
        row = runs[runs["source"] == name.split(":")[0]].iloc[0]
        assert (line.get_xdata()[0], line.get_ydata()[0]) == pytest.approx((row["rate"], row["distortion"]))
    assert lines["mine: VAE"].get_color() != lines["theirs: VAE"].get_color()
    assert runs["rate"].iloc[0] != pytest.approx(runs["rate"].iloc[1], rel=1e-3)  # two points apart, not one
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("β=1") == 2 and not [t for t in texts if "warmup" in t or "γ" in t]  # no schedule at default
    together = plots.rate_distortion(runs)  # the same table without by: one averaged point
    points = [bars.lines[0] for bars in together.axes[0].containers]
    assert len(points) == 1 and points[0].get_xdata()[0] == pytest.approx(runs["rate"].mean())


def test_ibkit_compare_then_plot_and_table_read_the_combined_folder(sources, tmp_path, capsys):
    out = tmp_path / "both"
    assert main(["compare", str(sources / "mine"), str(sources / "theirs"), str(sources / "run"), "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| source | kind |" in printed and f"3 sources, {len(load(out))} rows -> {out / 'runs.csv'}" in printed
    figure = out / "figures" / "rate_distortion.png"
    before = figure.stat().st_mtime_ns
    assert main(["plot", str(out)]) == 0
    assert str(figure) in capsys.readouterr().out and figure.stat().st_mtime_ns > before
    assert main(["table", str(out)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| source")]
    configurations = len(summarise(load(sources / "run")))  # the run folder's own table's rows
    assert sorted(line.split(" | ")[0][2:] for line in rows) == ["mine", *["run"] * configurations, "theirs"]
    assert "Data: mine: digits, 359 rows; theirs: the given rows, 359 rows; run: digits, scikit-learn's" in table
    nested = combine([out, sources / "mine"])  # an earlier combination keeps its sources' names beneath its own
    assert nested["source"].tolist()[:2] == ["both/mine", "both/theirs"] and nested["source"].iloc[-1] == "mine"
    root = tmp_path / "gallery"  # the gallery is of run folders: reports and combinations are left out
    for folder in (out, sources / "mine", sources / "run"):
        shutil.copytree(folder, root / folder.name)
    text = write_gallery(root).read_text()
    assert "## run" in text and "## mine" not in text and "## both" not in text


@pytest.mark.parametrize("case, message", [
    ("empty", r"{tmp}/empty has no runs.csv and no manifest.json; compare takes folders written by ibkit run"),
    ("no_manifest", r"{tmp}/no_manifest has no manifest.json; .* analyse again"),
    ("missing", r"{tmp}/missing: no such folder"),
    ("same_name", r"two sources are named 'mine' \({tmp}/mine, {tmp}/other/mine\); .* copy or rename one"),
    ("out_is_source", r"--out {tmp}/mine is the source {tmp}/mine; write the combination to a folder of its own"),
    ("out_inside_source", r"--out {tmp}/mine/both lies inside the source {tmp}/mine"),
    ("out_not_empty", r"--out {tmp}/both exists and holds other files; choose another --out or pass --overwrite"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sources, tmp_path, capsys, case, message):
    for name in ("mine", "run"):
        shutil.copytree(sources / name, tmp_path / name)
    dirs, out = [tmp_path / "mine", tmp_path / "run"], tmp_path / "both"
    if case == "empty":
        (tmp_path / "empty").mkdir()
        dirs.append(tmp_path / "empty")
    elif case == "no_manifest":
        shutil.copytree(sources / "theirs", tmp_path / "no_manifest")
        (tmp_path / "no_manifest" / "manifest.json").unlink()
        dirs.append(tmp_path / "no_manifest")
    elif case == "missing":
        dirs.append(tmp_path / "missing")
    elif case == "same_name":
        shutil.copytree(sources / "theirs", tmp_path / "other" / "mine")
        dirs.append(tmp_path / "other" / "mine")
    elif case == "out_is_source":
        out = tmp_path / "mine"
    elif case == "out_inside_source":
        out = tmp_path / "mine" / "both"
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    before = _files(tmp_path)
    code = main(["compare", *map(str, dirs), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message.format(tmp=tmp_path), err), err
    assert _files(tmp_path) == before  # nothing written, nothing touched
    if case == "out_not_empty":  # asked to: the folder takes the combination, its other files stay
        assert main(["compare", *map(str, dirs), "--out", str(out), "--overwrite"]) == 0
        assert (out / "notes.txt").is_file() and set(load(out)["source"]) == {"mine", "run"}


def test_plot_of_an_analyse_report_says_what_redraws_it(sources, capsys):
    assert main(["plot", str(sources / "mine")]) == 2
    err = capsys.readouterr().err
    assert "is a report of ibkit analyse, which drew its figures; run it again to redraw them" in err
    assert err.count("\n") == 1
