"""ibkit.analyse and `ibkit analyse`: one trained model to a report, a one-row table and figures, from an ibkit
checkpoint, a module.py:factory model or a pythae model; bad input is one line and exit status 2."""

import importlib.util
import math
import re
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import ibkit
from ibkit import estimators as E
from ibkit.cli import main
from ibkit.store import schema_columns


@pytest.fixture(scope="module")
def trained_vae(digits, tiny_vae):
    m = tiny_vae(input_dim=64, latent_dim=4, hidden=(32,), seed=0)
    ibkit.fit(m, digits.train, epochs=10, progress=False)
    return m


def test_the_numbers_are_the_estimators_with_their_standard_errors(trained_vae, digits):
    x = digits.test
    a = ibkit.analyse(trained_vae, x, digits.test_labels, k=50, name="v", dataset="digits")
    r = a.row
    rate = E.rate(trained_vae, x, per_example=True)
    assert r["rate"] == pytest.approx(rate.mean().item()) and r["rate_se"] == pytest.approx(
        (rate.double().std() / math.sqrt(len(x))).item())
    assert r["iwae"] == pytest.approx(E.iwae(trained_vae, x, 50))
    assert r["elbo"] == pytest.approx(-(r["rate"] + r["distortion"]), abs=1e-4)
    bracket = E.information_bracket(trained_vae, x)
    assert (r["mi_lower"], r["mi_upper"], r["mi_lower_se"]) == (bracket["mi_lower"], bracket["mi_upper"],
                                                                 bracket["mi_lower_se"])
    assert r["active_units"] == E.active_units(trained_vae, x) and r["latent_dim"] == 4
    assert a.tables["kl_per_dim"]["kl"].sum() == pytest.approx(r["rate"], rel=1e-4)  # closed form, the same rows
    assert 0.1 <= r["label_accuracy"] <= 1 and len(a.tables["label_information"]) == 4
    text = a.report()
    assert f"| rate R | {a.value('rate')} |" in text and "log p(x) >=" in text and "(95% intervals" in text


def test_a_deterministic_code_reports_no_upper_bound_and_its_probe_curve(digits):
    ae = ibkit.build_model("ae", 64, 2, hidden=(32,), seed=0)
    ibkit.fit(ae, digits.train, epochs=5, progress=False)
    a = ibkit.analyse(ae, digits.test, k=10)
    assert a.row["mi_upper"] == math.inf and math.isnan(a.row["rate"]) and a.value("mi_upper") == "∞"
    curve = a.tables["probe_curve"]
    assert curve["infonce"].is_monotonic_increasing and curve["infonce"].iloc[-1] <= a.row["log_n"] + 1e-9
    assert "no upper bound on I(X;Z) exists" in a.report()


def test_an_ibkit_checkpoint_at_the_command_line(trained_vae, tmp_path, capsys):
    ibkit.save_checkpoint(trained_vae, tmp_path / "vae.pt")
    out = tmp_path / "report"
    assert main(["analyse", str(tmp_path / "vae.pt"), "--data", "digits", "--k", "20", "--out", str(out)]) == 0
    assert "| rate R |" in capsys.readouterr().out
    row = pd.read_csv(out / "runs.csv")
    assert len(row) == 1 and set(schema_columns()) - {"error", "train_seconds"} <= set(row.columns)
    assert row["k"].item() == 20 and row["dataset"].item() == "digits"
    for figure in ("rate_distortion", "information", "kl_per_dim", "label_information"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000
    assert "![rate_distortion](figures/rate_distortion.png)" in (out / "report.md").read_text()


FACTORY = textwrap.dedent("""
    import torch
    from torch import nn
    import ibkit

    def model():
        torch.manual_seed(0)
        enc = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 6))
        dec = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 64))
        return ibkit.wrap(enc, dec, likelihood="bernoulli")

    def broken():
        raise RuntimeError("no weights here")
""")


def test_a_factory_of_plain_torch_modules_on_rows_from_a_file(tmp_path, digits, capsys):
    (tmp_path / "mine.py").write_text(FACTORY)
    np.save(tmp_path / "x.npy", digits.test.numpy().reshape(-1, 8, 8))  # images: flattened on reading
    np.save(tmp_path / "y.npy", digits.test_labels.numpy())
    out = tmp_path / "report"
    assert main(["analyse", f"{tmp_path / 'mine.py'}:model", "--data", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--k", "10", "--out", str(out)]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    spec = importlib.util.spec_from_file_location("mine", tmp_path / "mine.py")
    mine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mine)
    assert row["rate"] == pytest.approx(E.rate(mine.model(), digits.test), rel=1e-5)
    assert row["latent_dim"] == 3 and (out / "label_information.csv").is_file()


FOLDER_FACTORY = """
import torch.nn as nn
import ibkit

def model():
    enc = nn.Sequential(nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 4))  # 3 x 4 x 4 images
    dec = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 48))
    return ibkit.wrap(enc, dec, likelihood="gaussian")
"""


def test_a_folder_of_images_is_data_at_the_size_asked(tmp_path, capsys):
    """Six 8x6 PNGs read at --size 4 (centre-cropped and resized to 3 x 4 x 4 = 48 values) are measured; read at
    their own size (144 values) they do not fit the model, one line on stderr."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8), "RGB").save(images / f"{i}.png")
    (tmp_path / "mine.py").write_text(FOLDER_FACTORY)
    out = tmp_path / "report"
    assert main(["analyse", f"{tmp_path / 'mine.py'}:model", "--data", str(images), "--size", "4", "--k", "5",
                 "--out", str(out)]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row["dataset"] == "images" and np.isfinite(row["rate"]) and np.isfinite(row["distortion"])
    capsys.readouterr()
    assert main(["analyse", f"{tmp_path / 'mine.py'}:model", "--data", str(images), "--k", "5", "--out",
                 str(tmp_path / "other")]) == 2
    assert "x has width 144 but the model expects input_dim=48" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["nope.pt", "--data", "digits"], "MODEL='nope.pt': no such file"),
    (["{dir}/mine.py:missing", "--data", "digits"], "has no function 'missing'"),
    (["{dir}/mine.py:broken", "--data", "digits"], r"broken\(\) failed: RuntimeError: no weights here"),
    (["{dir}/mine.py:model", "--data", "digitz"], "--data 'digitz' is neither a dataset"),
    (["{dir}/mine.py:model", "--data", "mnist", "--k", "0"], "--k 0: the IWAE bound needs k >= 1"),
    (["{dir}/mine.py:model", "--data", "digits", "--labels", "{dir}/short.npy"], r"shape \[5\]; it needs one label"),
    (["{dir}/mine.py:model", "--data", "{dir}/wide.npy"], "x has width 10 but the model expects input_dim=64"),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, capsys, args, message):
    (tmp_path / "mine.py").write_text(FACTORY)
    np.save(tmp_path / "short.npy", np.zeros(5))
    np.save(tmp_path / "wide.npy", np.zeros((20, 10), dtype=np.float32))
    out = tmp_path / "report"
    code = main(["analyse", *(a.format(dir=tmp_path) for a in args), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists()


def test_a_pythae_model_through_its_factory(tmp_path, digits):
    pytest.importorskip("pythae", reason="pythae is not installed (pip install -e '.[pythae]')")
    (tmp_path / "theirs.py").write_text(textwrap.dedent("""
        import torch
        from pythae.models import VAE, VAEConfig
        from ibkit.adapters import pythae

        def model():
            torch.manual_seed(0)
            return pythae.wrap(VAE(VAEConfig(input_dim=(1, 8, 8), latent_dim=2, reconstruction_loss="bce")))
    """))
    out = tmp_path / "report"
    assert main(["analyse", f"{tmp_path / 'theirs.py'}:model", "--data", "digits", "--k", "10", "--out",
                 str(out)]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row["latent_dim"] == 2 and math.isfinite(row["iwae"]) and row["rate"] > 0
    assert torch.isfinite(torch.tensor(row["mi_upper"]))


class _PosteriorAndPrior(nn.Module):
    """q(z|x) = N(mu, diag exp(logvar)) from one linear layer, p(z) = N(0, I): no decoder, no log_likelihood."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(64, 6)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.linspace(-0.1, 0.1, 6 * 64).reshape(6, 64))
            self.encoder.bias.copy_(torch.tensor([0.5, -0.3, 0.1, -1.0, -0.5, 0.2]))

    def posterior(self, x):
        mu, logvar = self.encoder(x).chunk(2, -1)
        return Independent(Normal(mu, (0.5 * logvar).exp()), 1)

    def prior(self):
        return Independent(Normal(torch.zeros(3), torch.ones(3)), 1)


def test_a_model_without_log_likelihood_is_measured_as_far_as_q_and_p_go(digits, tmp_path):
    m, x = _PosteriorAndPrior(), digits.test
    for estimate in (E.distortion, E.elbo, lambda m, x: E.iwae(m, x, 5)):  # the estimators themselves refuse it
        with pytest.raises(ValueError, match=r"needs the decoder's log p\(x\|z\): _PosteriorAndPrior has no "
                                             r"log_likelihood\(x, z\)"):
            estimate(m, x)
    a = ibkit.analyse(m, x, digits.test_labels, k=5)
    r = a.row
    with torch.no_grad():
        mu, logvar = m.encoder(x).double().chunk(2, -1)
    kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar)  # [N, 3]: KL(N(mu, s^2) || N(0, 1)) per dimension, closed form
    assert r["rate"] == pytest.approx(kl.sum(-1).mean().item(), rel=1e-5)
    assert a.tables["kl_per_dim"]["kl"].tolist() == pytest.approx(kl.mean(0).tolist(), rel=1e-5)
    bracket = E.information_bracket(m, x)
    assert (r["mi_lower"], r["mi_upper"]) == (bracket["mi_lower"], bracket["mi_upper"]) and r["mi_upper"] <= r["rate"]
    assert r["active_units"] == E.active_units(m, x) and r["latent_dim"] == 3
    assert len(a.tables["label_information"]) == 3 and 0 <= r["label_accuracy"] <= 1
    assert all(math.isnan(r[key]) for key in ("distortion", "elbo", "iwae"))
    text = a.report()
    assert "Distortion, ELBO and IWAE are not measured, as each needs the decoder's log p(x|z): _PosteriorAndPrior " \
           "has no log_likelihood(x, z)" in text
    assert "| rate R |" in text and "| ELBO |" not in text and "IWAE on" not in text and "log p(x) >=" not in text
    paths = a.write(tmp_path / "report")
    row = pd.read_csv(tmp_path / "report" / "runs.csv").iloc[0]
    assert row["rate"] == pytest.approx(r["rate"]) and math.isnan(row["distortion"])
    assert row["likelihood_note"].startswith("distortion, ELBO and IWAE are not measured")
    figures = {p.stem for p in paths if p.suffix == ".png"}
    assert figures == {"information", "kl_per_dim", "label_information"}  # no point on the rate-distortion plane


MINE = textwrap.dedent("""
    from pathlib import Path

    import mynet  # beside this file, not on sys.path

    def model():
        return mynet.build(int(Path("latent.txt").read_text()))  # a relative path: the working folder's
""")
MYNET = textwrap.dedent("""
    import torch
    from torch import nn
    import ibkit

    def build(d):
        torch.manual_seed(0)
        return ibkit.wrap(nn.Linear(64, 2 * d), nn.Linear(d, 64), likelihood="bernoulli")
""")


def test_a_factory_imports_the_modules_beside_it_and_reads_relative_paths_from_the_working_folder(
        tmp_path, monkeypatch):
    code, work = tmp_path / "code", tmp_path / "work"
    code.mkdir(), work.mkdir()
    (code / "mine.py").write_text(MINE)
    (code / "mynet.py").write_text(MYNET)
    (code / "latent.txt").write_text("5")  # beside the file: not the one read
    (work / "latent.txt").write_text("2")
    monkeypatch.chdir(work)
    path = list(sys.path)
    try:
        assert main(["analyse", f"{code / 'mine.py'}:model", "--data", "digits", "--k", "5", "--out", "report"]) == 0
    finally:
        sys.modules.pop("mynet", None)  # imported for this test only
    assert sys.path == path  # the file's folder was first on it while it loaded, and only then
    row = pd.read_csv(work / "report" / "runs.csv").iloc[0]  # --out is relative to the working folder too
    assert row["latent_dim"] == 2 and math.isfinite(row["iwae"])


def test_remembering_encodes_each_rows_once_and_changes_no_number(tiny_vae, digits, monkeypatch):
    from ibkit.estimators._common import remembering

    m, x = tiny_vae(latent_dim=3).eval(), digits.test[:60].clone()
    own, calls = type(m).posterior, []

    def counting(self, rows):
        calls.append(len(rows))
        return own(self, rows)

    monkeypatch.setattr(type(m), "posterior", counting)

    def measure():
        return E.rate(m, x), E.iwae(m, x, 20), E.information_bracket(m, x)["mi_lower"], E.distortion(m, x)

    before, alone = measure(), len(calls)
    calls.clear()
    with remembering(m):
        inside, remembered = measure(), len(calls)
        x.mul_(0.5)  # changed in place: its version moves, so the posterior is computed anew
        halved = E.rate(m, x)
    assert inside == before  # the same numbers, to the last bit
    assert remembered < alone / 2 and remembered <= 4, (alone, remembered)
    assert halved != before[0] and halved == E.rate(m, x)
    assert "posterior" not in vars(m)  # the model is as it was
