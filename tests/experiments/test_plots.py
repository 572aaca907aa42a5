"""Figure functions on small stored tables: the right series, nothing empty."""

import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

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
    fig = plots.rd_shannon(table, [4, 2, 1, 0.5, 0.25, 0.25, 0.25, 0.25], 4, 0.5)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels[:2] == ["Shannon R(D)", "R(D) with 4 latents"]
    assert fig.axes[1].get_xlabel().endswith("[nats]") and fig.axes[0].get_ylabel() == "rate R  [nats]"
