"""Figure functions on small stored tables: the right series, nothing empty; drawn into the caller's axes when
given them; and importing ibkit leaves matplotlib's backend alone."""

import math
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from experiments.rate_distortion.figures import rd_shannon  # noqa: E402
from ibkit import plots  # noqa: E402


def _table(entropy=math.nan) -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for family in ("diagonal", "full"):
            for beta, rate in ((0.5, 6.0), (1.0, 4.0), (4.0, 1.0)):
                rows.append(dict(kind="vae", posterior=family, beta=beta, noise=math.nan, seed=seed, split="test",
                                 status="ok", rate=rate + 0.1 * seed, distortion=20 - 2 * rate, mi_lower=rate - 1,
                                 probe_sigma=0.0, log_n=5.88, entropy=entropy))
        for kind in ("ae", "sparse_ae"):
            rows.append(dict(kind=kind, posterior="", beta=math.nan, noise=math.nan, seed=seed, split="test",
                             status="ok", rate=math.nan, distortion=9.0, mi_lower=5.88, probe_sigma=1e-4, log_n=5.88,
                             entropy=entropy))
        rows.append(dict(kind="noisy_ae", posterior="", beta=math.nan, noise=0.1, seed=seed, split="test",
                         status="ok", rate=12.0, distortion=11.0, mi_lower=5.0, probe_sigma=0.0, log_n=5.88,
                         entropy=entropy))
    return pd.DataFrame(rows)


def test_rate_distortion_plane_has_every_kind_on_one_set_of_axes():
    ax = plots.rate_distortion(_table()).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("VAE" in t for t in labels) == 2  # one beta curve per posterior family
    assert any(t.startswith("AE: I ≥ 5.9 = log N via a σ = 1e-04 probe") for t in labels)
    assert any(t.startswith("sparse AE: I ≥ 5.9") for t in labels) and any("noisy AE" in t for t in labels)
    assert not any("H − R" in t for t in labels)  # entropy unknown: no such line
    assert ax.get_xlabel() == "rate R  [nats]" and ax.get_ylabel() == "distortion D  [nats]"
    assert ax.get_legend().get_title().get_text() == "R = E KL(q(z|x) ‖ p(z)), D = −E log p(x|z)"


def test_entropy_line_where_the_data_entropy_is_known(tmp_path):
    fig = plots.rate_distortion(_table(entropy=15.0))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("D = H − R (H = 15.00)") for t in labels)
    paths = plots.save_figure(fig, tmp_path, "rd")
    assert [p.suffix for p in paths] == [".pdf", ".png"] and all(p.stat().st_size > 5000 for p in paths)


def test_rd_shannon_draws_both_curves_and_the_points():
    table = _table().assign(mse=lambda t: t["distortion"] / 4)
    fig = rd_shannon(table, [4, 2, 1, 0.5, 0.25, 0.25, 0.25, 0.25], 4, 0.5)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels[:2] == ["Shannon R(D)", "R(D) with 4 latents"]
    assert fig.axes[1].get_xlabel().endswith("[nats]") and fig.axes[0].get_ylabel() == "rate R  [nats]"


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_rate_distortion_legend_of_the_built_in_kinds():
    """Each kind's legend text, from its registered style and knobs: a curve per family named by its swept knob,
    a lone noisy AE with its setting, the probed codes at what crosses the probe."""
    labels = _legend(plots.rate_distortion(_table()))
    assert labels[:2] == ["constant ELBO: D + R = −ELBO (labelled)", "VAE, diagonal q (beta sweep)"]
    assert labels[2:4] == ["VAE, full q (beta sweep)", "noisy AE, σ = 0.1 (rate: KL to N(0, I))"]
    assert labels[4:] == ["AE: I ≥ 5.9 = log N via a σ = 1e-04 probe (rate unbounded)",
                          "sparse AE: I ≥ 5.9 = log N via a σ = 1e-04 probe (rate unbounded)"]
    one_family = _legend(plots.rate_distortion(_table()[lambda t: t["posterior"] != "full"]))
    assert "VAE (beta sweep)" in one_family
    texts = [t.get_text() for t in plots.rate_distortion(_table()).axes[0].texts]
    assert "β=0.5" in texts and "β=4" in texts  # every point of the sweeps carries its knob


def _tempered(temperatures=(1.0,)) -> pd.DataFrame:
    """A kind ibkit does not know, with two knobs: beta and temperature."""
    rows = [dict(kind="tempered_vae", posterior="", beta=beta, temperature=temp, seed=0, split="test", status="ok",
                 rate=rate * temp, distortion=20 - 2 * rate, mi_lower=rate - 1, probe_sigma=0.0, log_n=5.88)
            for temp in temperatures for beta, rate in ((0.5, 6.0), (2.0, 3.0), (8.0, 1.0))]
    return pd.concat([_table(), pd.DataFrame(rows)], ignore_index=True)


def test_rate_distortion_plane_shows_a_kind_ibkit_does_not_know():
    fig = plots.rate_distortion(_tempered())
    assert any(t.startswith("tempered_vae") for t in _legend(fig))
    assert any(t.startswith("VAE, full q") for t in _legend(fig))  # the built-in kinds stay as they were


def test_rate_distortion_plane_draws_a_point_per_knob_combination_of_a_user_kind(monkeypatch):
    """A registered user kind with two knobs: one point per (beta, temperature), labelled with both knobs when
    both vary and with the one that varies otherwise."""
    known = plots.knob_names
    monkeypatch.setattr(plots, "knob_names", lambda kind: ("beta", "temperature") if kind == "tempered_vae"
                        else known(kind))
    ax = plots.rate_distortion(_tempered((1.0, 2.0))).axes[0]
    assert "tempered_vae (beta, temperature sweep)" in [t.get_text() for t in ax.get_legend().get_texts()]
    curve = [c for c in ax.containers if c.get_label().startswith("tempered_vae")][0]
    assert len(curve.lines[0].get_xdata()) == 6  # 3 betas x 2 temperatures
    texts = [t.get_text() for t in ax.texts]
    assert "β=0.5, temperature=1" in texts
    ax = plots.rate_distortion(_tempered((2.0,))).axes[0]
    assert "tempered_vae (beta sweep)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "β=8" in [t.get_text() for t in ax.texts]


def test_figure_functions_draw_into_the_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert plots.rate_distortion(_table(), ax=right) is fig
    assert right.get_legend() is not None and right.get_title().startswith("Rate–distortion plane")
    assert not left.has_data() and left.get_legend() is None and len(fig.axes) == 2
    table = _table().assign(mse=lambda t: t["distortion"] / 4)
    fig, axes = plt.subplots(2, 1)
    assert rd_shannon(table, [4, 2, 1, 0.5, 0.25, 0.25, 0.25, 0.25], 4, 0.5, axes=axes) is fig
    assert all(ax.has_data() for ax in axes) and len(fig.axes) == 2
    plt.close("all")


IMPORT_ALL = ("import matplotlib, ibkit, ibkit.plots, ibkit.cli, experiments.rate_distortion.figures, "
              "experiments.information_flow.figures, experiments.posterior_families.figures; ")


def test_the_plane_draws_under_any_backend(tmp_path):
    """No Agg-only call (the labels' overlap test asks the figure for its renderer): a file backend draws it, and
    importing everything left that backend as it was (svg: the test below)."""
    code = (IMPORT_ALL + "import pandas as pd, matplotlib.pyplot as plt; from ibkit import plots; "
            f"fig = plots.rate_distortion(pd.read_csv({str(tmp_path / 't.csv')!r})); "
            f"fig.savefig({str(tmp_path / 'rd.pdf')!r}); print(plt.get_backend())")
    _table().to_csv(tmp_path / "t.csv", index=False)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "pdf"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pdf" and (tmp_path / "rd.pdf").stat().st_size > 5000


def test_ibkit_plots_is_reachable_after_import_ibkit_costs_nothing_until_used_and_leaves_the_backend_alone():
    """``import ibkit`` imports no matplotlib; ``ibkit.plots`` does on first use. A notebook keeps its backend:
    importing ibkit, its figure module and the experiments' switches nothing (svg here; pdf in the test above)."""
    code = ("import sys, ibkit; assert 'matplotlib' not in sys.modules; "
            "assert callable(ibkit.plots.rate_distortion); assert 'matplotlib' in sys.modules; "
            + IMPORT_ALL + "print(matplotlib.get_backend())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "svg"})
    assert proc.returncode == 0 and proc.stdout.strip() == "svg", proc.stderr


def _digits_sweep() -> pd.DataFrame:
    """The committed digits beta sweep's test means (results/rate_distortion): a curve steep at the left, flat at the
    right, where a label put at its default offset lay across the curve (β=0.368)."""
    means = ((0.05, 24.08, 8.13), (0.0973, 19.15, 7.97), (0.1893, 15.03, 8.33), (0.3684, 11.16, 9.14),
             (0.7169, 7.34, 11.26), (1.395, 3.69, 15.18), (2.7144, 1.06, 20.87), (5.282, 0.0, 24.62),
             (10.2781, 0.0, 24.62), (20.0, 0.0, 24.62))
    return pd.DataFrame([dict(kind="vae", posterior="", beta=b, seed=0, split="test", status="ok", rate=r,
                              distortion=d, dataset="digits") for b, r, d in means])


def _elbo_labels(ax) -> dict[float, object]:
    return {float(t.get_text().removeprefix("−ELBO = ")): t for t in ax.texts if t.get_text().startswith("−ELBO = ")}


def test_each_constant_elbo_line_carries_its_value_on_it_inside_the_axes():
    ax = plots.rate_distortion(_table()).axes[0]
    ax.figure.canvas.draw()
    levels = _elbo_labels(ax)
    lines = [line for line in ax.lines if line.get_color() == "0.8"]
    assert len(levels) == len(lines) >= 3  # every line drawn has its label
    for line in lines:  # slope -1: D + R = c on the whole line, and c is a labelled value
        (r0, r1), (d0, d1) = line.get_data()
        assert r0 + d0 == pytest.approx(r1 + d1) and any(r0 + d0 == pytest.approx(c) for c in levels)
    steps = np.diff(sorted(levels))
    assert np.allclose(steps, steps[0]) and steps[0] in (1, 2, 2.5, 5, 10, 20, 25, 50)  # round values
    frame = ax.get_window_extent()
    points = ax.transData.transform(_table()[lambda t: t["rate"].notna()][["rate", "distortion"]].to_numpy())
    for c, text in levels.items():
        r, d = text.get_position()
        assert r + d == pytest.approx(c)  # the label sits on its own line
        box = text.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not any(box.contains(x, y) for x, y in points)  # and on no point


def test_point_labels_do_not_lie_across_the_curve_or_on_points():
    ax = plots.rate_distortion(_digits_sweep()).axes[0]
    ax.figure.canvas.draw()
    curve = [c for c in ax.containers if c.get_label().startswith("VAE")][0].lines[0]
    path = curve.get_transform().transform_path(curve.get_path())
    labels = [t for t in ax.texts if t.get_text().startswith("β=")]
    assert {t.get_text() for t in labels} >= {"β=0.368", "β=0.05", "β=5.28–20"}
    for text in labels:
        box = text.get_window_extent()
        assert not path.intersects_bbox(box, filled=False), text.get_text()
        assert not any(box.contains(x, y) for x, y in path.vertices), text.get_text()
        assert not any(box.overlaps(other.get_window_extent()) for other in labels if other is not text)


def test_a_quick_runs_figures_carry_the_mark(tmp_path):
    """By the manifest's quick flag, or (without a manifest saying) by a folder name ending in -quick."""
    import json

    marked = {}
    for name, manifest in (("by-manifest", {"quick": True}), ("a-quick", None), ("full", {"quick": False}),
                           ("not-quick-after-all-quick", {"quick": False})):
        (tmp_path / name).mkdir()
        if manifest is not None:
            (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
        fig = plots.rate_distortion(_table())
        plots.save_figure(fig, tmp_path / name / "figures", "rd", data="digits")
        marked[name] = [t for t in fig.texts if t.get_text() == plots.QUICK_MARK]
    assert {name: len(m) for name, m in marked.items()} == {"by-manifest": 1, "a-quick": 1, "full": 0,
                                                             "not-quick-after-all-quick": 0}
    fig = plots.rate_distortion(_table())
    plots.save_figure(fig, tmp_path, "rd", quick=True)  # or asked for outright
    assert plots.QUICK_MARK in [t.get_text() for t in fig.texts]


def test_with_ax_in_a_1x2_figure_labels_title_and_legend_fit_the_panel():
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plots.rate_distortion(_table(), ax=axes[0])
    fig.canvas.draw()
    panel = axes[0].get_window_extent()
    for text in (axes[0].xaxis.label, axes[0].title):
        box = text.get_window_extent()
        assert box.width <= panel.width and panel.x0 - 1 <= box.x0 and box.x1 <= panel.x1 + 1, text.get_text()
    legend = axes[0].get_legend().get_window_extent()
    assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)
    assert legend.x1 <= axes[1].get_window_extent().x0  # it does not hang into the neighbour
    plt.close(fig)
    fig = plots.rate_distortion(_table())  # its own figure: the legend below the axes, as wide as they are
    fig.canvas.draw()
    ax = fig.axes[0]
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 < ax.xaxis.label.get_window_extent().y0 and legend.width <= frame.width + 1


def _analysis(dataset: str, stochastic: bool = True):
    from ibkit.analysis import Analysis

    row = dict(rate=10.0 if stochastic else math.nan, rate_se=0.1, distortion=9.9, distortion_se=0.2, mi_lower=5.7,
               mi_lower_se=0.04, mi_upper=10.0 if stochastic else math.inf, mi_upper_se=0.1, log_n=5.88,
               probe_sigma=0.0 if stochastic else 1e-4, label_accuracy=0.852, label_chance=0.13,
               label_mi_noise=0.09, rows=359)
    tables = {"label_information": pd.DataFrame(dict(dimension=range(8), mi_with_label=np.linspace(0.1, 0.7, 8))),
              "probe_curve": pd.DataFrame(dict(sigma=[1.0, 0.1, 0.01], infonce=[5.0, 5.8, 5.86],
                                               infonce_se=[0.02] * 3))}
    return Analysis(row, tables, name="vae-d8-beta0.3684-seed0", dataset=dataset)


def test_the_analysed_model_beside_a_reference_that_names_its_folder():
    from ibkit.plots import plane_figure, reference_folder

    if reference_folder("digits") is None:
        pytest.skip("results/rate_distortion is not in this checkout")
    ax = plane_figure(_analysis("digits")).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "reference sweep: results/rate_distortion" in labels
    assert labels.index("reference sweep: results/rate_distortion") < labels.index("VAE (beta sweep)")
    assert labels[-1].startswith("vae-d8-beta0.3684-seed0 (this model): R = 10, D = 9.9")
    assert any(t.startswith("its I(X;Z) bracket: 5.7 to 10") for t in labels)


def test_without_a_reference_the_lone_point_still_reads():
    """No committed sweep for the data: the figure says so, and the point has its bracket and labelled
    constant-ELBO lines around it, on axes from the origin."""
    from ibkit.plots import plane_figure

    for stochastic in (True, False):
        fig = plane_figure(_analysis("x.npy", stochastic))
        ax = fig.axes[0]
        assert any(t.get_text().startswith("no reference sweep for this data") for t in ax.texts)
        assert len(_elbo_labels(ax)) >= 3 and ax.get_xlim()[0] == 0 and ax.get_ylim()[0] == 0
        x, d = (10.0 if stochastic else 5.7), 9.9
        assert ax.get_xlim()[1] > x and ax.get_ylim()[1] > d
        star = [c for c in ax.containers if "(this model)" in c.get_label()][0].lines[0]
        assert list(star.get_xdata()) == [x] and list(star.get_ydata()) == [d]
        if stochastic:  # the bracket, InfoNCE to the upper bound, at the model's distortion
            band = [line for line in ax.lines if line.get_label().startswith("its I(X;Z) bracket")][0]
            assert list(band.get_xdata()) == [5.7, 10.0] and list(band.get_ydata()) == [d, d]
        else:  # no upper bound: an arrow from the point
            assert any(t.arrow_patch is not None and t.xy[1] == d for t in ax.texts if hasattr(t, "arrow_patch"))
        plt.close(fig)


def test_analyse_titles_stay_within_their_panels():
    from ibkit.plots import bracket_figure, label_figure, plane_figure, probe_figure

    a = _analysis("x.npy")
    for draw in (plane_figure, bracket_figure, label_figure, probe_figure):
        fig = draw(a)
        fig.canvas.draw()
        ax = fig.axes[0]
        title, frame = ax.title.get_window_extent(), ax.get_window_extent()
        assert frame.x0 - 1 <= title.x0 and title.x1 <= frame.x1 + 1, draw.__name__
        assert ax.get_xlabel().endswith("]") and (draw is bracket_figure or ax.get_ylabel().endswith("]"))
        plt.close(fig)
