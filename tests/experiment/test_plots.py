"""Figure functions on small stored tables: the right series, nothing empty; drawn into the caller's axes when
given them; and importing ibkit leaves matplotlib's backend alone."""

import math
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

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
    assert ax.get_xlabel().endswith("[nats]") and ax.get_ylabel().endswith("[nats]")


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
    assert labels[:2] == ["constant ELBO: D + R = const", "VAE, diagonal q (beta sweep)"]
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
