"""Bad input wherever a user types or passes something: a one-line error with exit status 2 at the command line
(a property test throws generated argument lists at it), a ValueError naming the argument, what was expected and
what came, in the Python API. Stored results survive every refused command."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ibkit
from ibkit import estimators as E
from ibkit import registry
from ibkit.cli import main

WORDS = ["run", "rate-distortion", "information-flow", "posterior-families", "nope", "list", "plot", "table",
         "gallery", "--set", "--out", "--quick", "--overwrite", "--jobs", "--executor", "--address", "--format",
         "local", "latex", "csv", "markdown", "0", "-3", "2", "1e3", "tcp://127.0.0.1:1", "out", "=", "",
         "epochs=x", "epochs=0", "epochs=2.5", "lr=-1", "lr=nan", "betas=", "betas=1,,2", "hidden=a", "hidden=",
         "seeds=1.5", "seeds=-1", "noise=0", "device=tpu", "batched=maybe", "iwae_k=1e9", "dataset=cifar",
         "latent_dim=0"]
RUNS_REACHED = []  # argument lists good enough to reach the (stubbed) training


@pytest.fixture
def stub_runs(monkeypatch, tmp_path):
    """Every experiment's run() stops before training, so a valid generated command costs nothing; the working
    folder is a temporary one (default --out paths land there)."""
    def reached(config, out_dir=None, executor=None):
        RUNS_REACHED.append(config)
        raise ValueError("stub: the run was reached")

    for name in registry.experiments():
        monkeypatch.setattr(registry.experiment(name), "run", reached)
    monkeypatch.chdir(tmp_path)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=8))
def test_generated_command_lines_only_ever_fail_cleanly(stub_runs, capsys, argv):
    """No generated argument list raises: each exits 0 or 2, and a 2 prints exactly one line, `ibkit: error: ...`."""
    capsys.readouterr()
    if any(a in ("--help", "-h") or a.startswith("--h") for a in argv) or "dask" in argv:
        return  # help prints usage and exits 0; a Dask cluster is tested in test_executors
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code)
    if code == 2:
        assert err.startswith("ibkit: error: ") and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["run", "rate-distortion", "--jobs", "0"], "jobs=0 must be >= 1"),
    (["run", "rate-distortion", "--address", "tcp://127.0.0.1:1"], "needs executor='dask'"),
    (["run", "rate-distortion", "--executor", "spark"], "invalid choice: 'spark'"),
    (["run", "rate-distortion", "--out", "/proc/ibkit-out"], "--out /proc/ibkit-out is not writable"),
    (["run", "rate-distortion", "--set", "lr=nan"], "--set lr='nan': expected a finite number"),
    (["run", "rate-distortion", "--set", "seeds=1.5"], "--set seeds='1.5': expected int"),
    (["table", "results", "--format", "docx"], "invalid choice: 'docx'"),
])
def test_more_bad_flags_are_one_line_errors(stub_runs, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_refused_command_never_costs_stored_results(tmp_path, capsys):
    """--overwrite with a bad flag: the folder's results are still there (inputs are checked before clearing)."""
    out = tmp_path / "kept"
    tiny = ["--set", "epochs=1", "--set", "betas=1", "--set", "hidden=8", "--set", "iwae_k=2"]
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *tiny]) == 0
    stored = (out / "runs.csv").read_text()
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *tiny, "--set", "lr=1e-2",
                 "--overwrite", "--jobs", "0"]) == 2
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *tiny, "--set", "lr=1e-2",
                 "--overwrite", "--address", "tcp://127.0.0.1:1"]) == 2
    assert main(["run", "rate-distortion", "--quick", "--out", str(out), *tiny, "--set", "lr=1e-2"]) == 2
    capsys.readouterr()
    assert (out / "runs.csv").read_text() == stored and len(list((out / "records").glob("*.json"))) == 4


# ------------------------------------------------------------------------------------------------------------
# the Python API

@pytest.fixture(scope="module")
def model(tiny_vae):
    return tiny_vae(input_dim=6, latent_dim=2, hidden=(4,), seed=0)


GOOD = torch.rand(10, 6).round()
BAD = {
    "nan": (GOOD.clone().index_put_((torch.tensor([3]), torch.tensor([1])), torch.tensor(math.nan)),
            r"x contains NaN or inf \(first bad rows: \[3\]\)"),
    "inf": (GOOD.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(math.inf)),
            r"x contains NaN or inf \(first bad rows: \[0\]\)"),
    "dtype": (GOOD.to(torch.complex64), "x must hold real numbers; got dtype torch.complex64"),
    "rank": (GOOD[0], r"x must have shape \[N, D\]; got shape \[6\]"),
    "rank3": (GOOD[None], r"x must have shape \[N, D\]; got shape \[1, 10, 6\]"),
    "width": (GOOD[:, :5], "x has width 5 but the model expects input_dim=6"),
    "empty": (GOOD[:0], r"x is empty \(shape \[0, 6\]\)"),
    "type": ([[0.0] * 6] * 3, "x must be a torch.Tensor or numpy array of shape \\[N, D\\]; got list"),
    "support": (GOOD * 3, r"x has values in \[0, 3\] but likelihood='bernoulli' needs values in \[0, 1\]"),
}
CALLS = {
    "rate": lambda m, x: E.rate(m, x),
    "distortion": lambda m, x: E.distortion(m, x),
    "elbo": lambda m, x: E.elbo(m, x),
    "iwae": lambda m, x: E.iwae(m, x, 3),
    "mi_bounds": lambda m, x: E.mi_bounds(m, x),
    "active_units": lambda m, x: E.active_units(m, x),
    "kl_per_dim": lambda m, x: E.kl_per_dim(m, x),
    "posterior_correlation": lambda m, x: E.posterior_correlation(m, x, k=3),
    "fit": lambda m, x: ibkit.fit(m, x, epochs=1, progress=False),
    "fit_many": lambda m, x: ibkit.fit_many([m, m], x, epochs=1, progress=False),
}


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_bad_tensors_get_a_value_error_naming_what_was_expected_and_what_came(model, call, bad):
    x, message = BAD[bad]
    with pytest.raises(ValueError, match=message.replace("x ", "x(_train)? ", 1) if call.startswith("fit")
                       else message):
        CALLS[call](model, x)


def test_labels_of_another_length_are_refused(model):
    with pytest.raises(ValueError, match=r"y must hold one label per row of x: expected shape \[10\], got \[9\]"):
        E.label_information(model, GOOD, torch.zeros(9, dtype=torch.long))


@pytest.mark.parametrize("call, message", [
    (lambda m: E.iwae(m, GOOD, 0), "k=0 must be >= 1"),
    (lambda m: E.iwae(m, GOOD, 2.5), "k=2.5 must be an integer"),
    (lambda m: E.mi_bounds(m, GOOD[:1]), "mi_bounds needs at least 2 data points"),
    (lambda m: E.rate(m, GOOD, seed=-1), "seed=-1 must be >= 0"),
    (lambda m: E.iwae(m, GOOD, 2, memory_budget=0), "memory_budget=0 must be >= 1"),
    (lambda m: ibkit.fit(m, GOOD, epochs=0), "epochs=0 must be >= 1"),
    (lambda m: ibkit.fit(m, GOOD, lr=-1.0), "lr=-1.0 must be > 0"),
    (lambda m: ibkit.fit_many([], GOOD), "models is empty"),
    (lambda m: ibkit.fit_many([m, m], GOOD, seed=[0, 1, 2]), "seed has 3 values for 2 models"),
    (lambda m: ibkit.build_model("vae", 6, 0), "latent_dim=0 must be >= 1"),
    (lambda m: ibkit.build_model("gan", 6, 2), "kind='gan' is not a registered model kind; registered: ae,"),
    (lambda m: ibkit.data.load("cifar"), "is not known"),
])
def test_bad_arguments_get_a_value_error_naming_them(model, call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(model)


def test_the_generated_commands_can_reach_the_run(stub_runs, capsys):
    """The stub is reachable: a valid command gets through every check to the (stubbed) run."""
    assert main(["run", "rate-distortion", "--quick", "--set", "epochs=3"]) == 2
    assert "stub: the run was reached" in capsys.readouterr().err and RUNS_REACHED[-1].epochs == 3
