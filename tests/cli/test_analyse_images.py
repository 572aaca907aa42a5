"""`ibkit analyse` on image autoencoders trained elsewhere: a CompressAI codec named by the zoo (``--compressai
NAME:QUALITY``) and a diffusers VAE from a factory file, on a folder of real photographs (crops of scikit-learn's
two sample images). The report has the image rows (bits per pixel, PSNR, the codec's ideal and real bits), the
per-channel table and the rate-map figure, and its numbers are the adapters' own; bad arguments are one line on
stderr with exit status 2."""

import math
import re
import textwrap
import warnings

import pandas as pd
import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")  # torchvision's missing C extension, under compressai


@pytest.fixture(scope="module")
def photos(tmp_path_factory, photographs):
    """A folder of the two 64x64 photograph crops as PNG files (lossless: loaded back, the same pixels)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for i, row in enumerate(photographs):
        pixels = (row.reshape(3, 64, 64).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


def test_a_compressai_codec_by_name_reports_its_bits(photos, tmp_path, capsys):
    pytest.importorskip("compressai", reason="compressai is not installed (pip install -e '.[compressai]')")
    from compressai.zoo import bmshj2018_factorized

    from ibkit.adapters import compressai as codecs

    out = tmp_path / "report"
    assert main(["analyse", "--compressai", "bmshj2018_factorized:1", "--data", str(photos), "--k", "4",
                 "--out", str(out)]) == 0
    assert "bits per pixel" in capsys.readouterr().out
    row = pd.read_csv(out / "runs.csv").iloc[0]
    bits = pd.read_csv(out / "compressed_bits.csv")
    channels = pd.read_csv(out / "channel_rates.csv")
    assert row["run_id"] == "bmshj2018_factorized-q1-random" and row["pixels"] == 64 * 64
    # the same codec (seed 0), wrapped by hand, on the same images: the report's numbers are the adapter's
    torch.manual_seed(0)
    codec = codecs.wrap(bmshj2018_factorized(quality=1, pretrained=False), quality=1)
    x = torch.cat([(ds := ibkit.data.load("images", path=str(photos), test_fraction=0.5)).train, ds.test])
    rate = E.rate(codec, x, n_samples=64)
    assert row["rate"] == pytest.approx(rate, rel=1e-6)
    assert row["rate_bpp"] == pytest.approx(rate / (math.log(2) * 4096), rel=1e-6)
    assert channels["rate"].sum() == pytest.approx(rate, rel=2e-3)  # the channels' rates sum to the rate (MC)
    assert len(channels) == 192 and channels["layer"].eq(1).all()
    mse = E.mse(codec, x, per_example=True)
    assert row["psnr"] == pytest.approx(float((10 * torch.log10(x.shape[1] / mse.double())).mean()), rel=1e-4)
    assert (bits["real_bits"] % 8 == 0).all() and (bits["real_bits"] >= bits["ideal_bits"]).all()
    assert row["real_bpp"] == pytest.approx(bits["real_bpp"].mean()) and row["real_bpp"] > row["ideal_bpp"]
    assert row["likelihood_sigma"] == pytest.approx(math.sqrt(3 / (2 * math.log(2) * 0.0018 * 255 ** 2)))
    report = (out / "report.md").read_text()
    for text in ("rate  [bits per pixel]", "PSNR", "real bits of net.compress", "## Coded bits per image",
                 "## Per latent channel", "![rate_map](figures/rate_map.png)"):
        assert text in report, text
    assert (out / "figures" / "rate_map.png").exists() and (out / "figures" / "channel_rates.png").exists()


DIFFUSERS_FACTORY = """
import torch
from diffusers import AutoencoderKL
from ibkit.adapters import diffusers as ldm

def model():
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32)
    return ldm.wrap(vae, likelihood=0.1)
"""


def test_a_diffusers_vae_from_a_factory_reports_its_channels_and_rate_map(photos, tmp_path):
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[diffusers]')")
    (tmp_path / "mine.py").write_text(textwrap.dedent(DIFFUSERS_FACTORY))
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["analyse", f"{tmp_path / 'mine.py'}:model", "--data", str(photos), "--k", "4",
                     "--out", str(out)]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    channels = pd.read_csv(out / "channel_rates.csv")
    assert len(channels) == 4 and channels["rate"].sum() == pytest.approx(row["rate"], rel=1e-5)  # closed form
    assert row["logvar_clamped"] == 0 and not (out / "compressed_bits.csv").exists()
    assert row["iwae"] >= row["elbo"] - 3 * row["elbo_se"]
    assert (out / "figures" / "rate_map.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--compressai", "bmshj2018_factorized:1", "model.pt"], "give one model"),
    ([], "give one model"),
    (["{dir}/mine.py:model", "--pretrained"], "--pretrained applies to a --compressai codec"),
    (["--compressai", "bmshj2018_factorized"], "give NAME:QUALITY"),
    (["--compressai", "cheng2020_anchor:1"], "architecture='cheng2020_anchor'; ibkit.adapters.compressai covers"),
    (["--compressai", "mbt2018_mean:9"], "quality=9"),
])
def test_bad_codec_arguments_are_one_line(photos, tmp_path, capsys, args, message):
    pytest.importorskip("compressai", reason="compressai is not installed (pip install -e '.[compressai]')")
    out = tmp_path / "report"
    code = main(["analyse", *(a.format(dir=tmp_path) for a in args), "--data", str(photos), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(re.escape(message), err), err
    assert not out.exists()


def test_a_hyperprior_codec_needs_image_sides_of_64(photos, tmp_path, capsys):
    pytest.importorskip("compressai", reason="compressai is not installed (pip install -e '.[compressai]')")
    code = main(["analyse", "--compressai", "mbt2018_mean:1", "--data", str(photos), "--size", "48", "--out",
                 str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2 and "multiples of 64" in err, err
