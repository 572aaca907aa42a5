"""A kind registered from outside ibkit (tests/models/tempered_vae.py, docs/extending.md's example) works end to end:
build, fit, fit_many, checkpoints, run_grid and the rate-distortion plane, without editing ibkit."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.config import RunSpec, TrainingConfig
from ibkit.data import Dataset
from ibkit.registry import MODELS
from ibkit.sweep import run_grid

X = (torch.rand(96, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()
TEMPERATURES = (0.5, 1.0, 2.0, 4.0)


@pytest.fixture(scope="module")
def tempered():
    """The user's module, imported as a user would; unregistered afterwards, so other tests see the built-in kinds."""
    spec = importlib.util.spec_from_file_location("tempered_vae", Path(__file__).with_name("tempered_vae.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["tempered_vae"] = module
    spec.loader.exec_module(module)
    yield module
    MODELS.remove("tempered_vae")
    sys.modules.pop("tempered_vae", None)


def build(**kw):
    return ibkit.build_model(kind="tempered_vae", input_dim=12, latent_dim=3, hidden=(16,), **kw)


def test_build_and_loss(tempered):
    m = build(beta=1.5, temperature=2.0)
    assert isinstance(m, tempered.TemperedVAE) and m.KIND == "tempered_vae"
    assert m.config.temperature == 2.0 and float(m.temperature) == 2.0  # the knob is a buffer of its name
    out = m(X)
    torch.testing.assert_close(out.loss, out.distortion + 1.5 / 2.0 * out.rate)
    assert ibkit.config.knob_names("tempered_vae") == ("beta", "warmup_epochs", "capacity", "gamma", "capacity_epochs",
                                                      "free_bits", "temperature")
    with pytest.raises(ValueError, match="temperature=-1.0|temperature='hot'"):
        build(temperature="hot")


def test_fit_many_matches_fit_per_temperature(tempered):
    models = [build(temperature=t, seed=1) for t in TEMPERATURES]
    alone = [build(temperature=t, seed=1) for t in TEMPERATURES]
    histories = ibkit.fit_many(models, X, epochs=3, batch_size=32, lr=1e-2, seed=0, progress=False, device="cpu")
    for m, a, h in zip(models, alone, histories, strict=True):
        h_alone = ibkit.fit(a, X, epochs=3, batch_size=32, lr=1e-2, seed=0, progress=False, device="cpu")
        assert h["loss"].to_numpy() == pytest.approx(h_alone["loss"].to_numpy(), rel=1e-4)
        for (name, p), q in zip(m.named_parameters(), a.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    # the temperature matters: a hotter model pays less for its rate, so it keeps more of it
    rates = [E.rate(m, X) for m in models]
    assert rates[-1] > rates[0]


def test_checkpoint_round_trip(tempered, tmp_path):
    m = build(beta=0.7, temperature=3.0)
    ibkit.save_checkpoint(m, tmp_path / "t.pt")
    back = ibkit.load_checkpoint(tmp_path / "t.pt")
    assert type(back) is tempered.TemperedVAE and back.config == m.config
    torch.testing.assert_close(back(X, torch.zeros(1, 96, 3)).loss, m(X, torch.zeros(1, 96, 3)).loss)


def _evaluate(model, spec):
    return {"test": dict(rate=E.rate(model, X), distortion=E.distortion(model, X), mi_lower=math.nan)}


def test_run_grid_and_plane(tempered, tmp_path):
    ds = Dataset(name="toy", train=X, test=X, likelihood="bernoulli")
    specs = [RunSpec("tempered_vae", dict(latent_dim=3, hidden=(16,), beta=1.0, temperature=t))
             for t in TEMPERATURES]
    assert specs[2].run_id == "tempered_vae-d3-beta1.0-temperature2.0-seed0"
    runs = run_grid("toy", ds, specs, _evaluate, TrainingConfig(epochs=2), out_dir=tmp_path)
    stored = ibkit.results.load(tmp_path)
    assert (stored["status"] == "ok").all()
    assert sorted(stored["temperature"]) == list(TEMPERATURES)
    assert set(stored["run_id"]) == {s.run_id for s in specs}
    assert stored["noise"].isna().all()  # a knob of another kind: NaN here
    assert len(runs) == 4
    header = (tmp_path / "runs.csv").read_text().splitlines()[0].split(",")
    assert header.index("temperature") > header.index("latent_dim")
    from ibkit import plots

    fig = plots.rate_distortion(stored)
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("tempered_vae" in t for t in legend)
