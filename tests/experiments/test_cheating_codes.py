"""A tiny CPU run of the cheating-codes experiment: the packed codes' exactness and information against their
closed forms, the trained one-unit codes beside them, the figures and findings that agree with the tables."""

import pandas as pd
import pytest

from experiments.cheating_codes import Config, model_grid, theory

TINY = ["--set", "epochs=5", "--set", "hidden=32", "--set", "code_dims=1,4", "--set", "levels=4,64,256",
        "--set", "eval_rows=120", "--set", "probe_sigmas=0.1,1e-12", "--set", "frequencies=4"]


@pytest.fixture(scope="module")
def run_dir(run_experiment):
    return run_experiment("cheating-codes", TINY)


def test_the_grid_and_the_closed_form():
    specs = model_grid(Config(seeds=(0,)))
    assert [(s.kind, s.get("latent_dim"), s.get("features")) for s in specs] == [
        ("ae", 1, None), ("ae", 2, None), ("ae", 4, None), ("ae", 8, None), ("periodic_ae", 1, "fourier"),
        ("periodic_ae", 1, "sawtooth")]
    assert theory(5.0, 2.0, "float64", 1e-12) == pytest.approx(2 * 0.6931471805599453)  # d log L below log N
    assert theory(5.0, 40.0, "float32", 1e-12) == 5.0  # log N
    assert theory(50.0, 60.0, "float32", 1e-12) == pytest.approx(24 * 0.6931471805599453)  # the mantissa
    with pytest.raises(ValueError, match=r"dtypes\[0\]='float16'"):
        Config(dtypes=("float16",))


def test_packed_codes_are_exact_while_they_fit_and_carry_their_entropy(run_dir):
    packed = pd.read_csv(run_dir / "packed.csv")
    once = packed.drop_duplicates(["run_id", "levels", "dtype"])
    assert len(once) == 2 * 3 * 2  # two AEs (d = 1, 4) x 3 levels x 2 dtypes
    assert (once.loc[once["fits"], "exact"] == 1.0).all()  # every row bit for bit while d log2 L fits
    lost = once[~once["fits"]]  # d = 4, L = 64 and 256 in float32: 24 bits fit, 32 do not
    assert list(lost[["code_dim", "levels", "dtype"]].itertuples(index=False, name=None)) == [(4, 256, "float32")]
    assert (lost["exact"] < 0.5).all() and (lost["distortion"] > lost["quantised_distortion"]).all()
    fine = packed[packed["sigma"] == 1e-12]
    assert (fine["infonce"] - fine["code_entropy"]).abs().max() < 1e-6  # InfoNCE -> the reals' entropy
    assert (fine["code_entropy"] <= fine["data_entropy"] + 1e-9).all()
    assert (packed["infonce"] <= packed["log_n"] + 1e-9).all()


def test_the_trained_codes_and_the_findings(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv")
    assert (runs["status"] == "ok").all() and len(runs) == 4
    one = runs[runs["code_dim"] == 1]
    assert one["folds_segments"].notna().all() and (one["folds_segments"] >= one["folds_distinct"]).all()
    text = (run_dir / "findings.md").read_text()
    assert "- float32: every packing of up to 24 bits" in text and "from 32 bits on" in text
    assert "- fourier decoder, 1 unit: distortion" in text
    line = next(line for line in text.splitlines() if line.startswith("- fourier decoder, 1 unit:"))
    diff = (runs[runs["features"] == "fourier"]["distortion"].iloc[0]
            - runs[(runs["kind"] == "ae") & (runs["code_dim"] == 1)]["distortion"].iloc[0])
    said = f"its distortion minus the plain one-unit AE's is {diff:.4g} nats, {'higher' if diff > 0 else 'lower'}"
    assert said in line, (said, line)
    assert (run_dir / "figures" / "packed_codes.png").exists() and (run_dir / "figures" / "trained_codes.png").exists()
