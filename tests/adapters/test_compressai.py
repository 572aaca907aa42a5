"""ibkit.adapters.compressai: a CompressAI codec measured by ibkit agrees with CompressAI's own numbers.

Checked, on random-weight zoo models (bmshj2018_factorized and mbt2018_mean at quality 1) and on two kinds of 64x64
input (uniform noise and crops of scikit-learn's two sample photographs):

- the rate per image (``E.rate``, Monte Carlo over the unit box) is CompressAI's noisy forward pass's -log likelihoods
  in nats, within three combined standard errors;
- ``compressed_bits``: its table, the ideal bits of the rounded latent against the real bits of ``net.compress`` (the
  issue's 33,311 ideal and 33,408 real bits on two random images), bits per pixel;
- the hyperprior model is two layers: ``latent_dims``, ``E.per_layer`` splits ``E.rate`` between them, and
  ``channel_rates`` / ``rate_map`` split it further, on the same draws;
- the likelihood: ``sigma_of`` is CompressAI's lambda 255^2 MSE turned into a Gaussian, the negative ELBO is
  CompressAI's loss in nats, the distortion is the squared error scaled by that sigma, IWAE rises with k;
- refusals: objects that are no covered CompressAI model, bad qualities and architectures, data that is no image of
  the model's shape or has pixels outside [0, 1];
- end to end: two photographs written as PNG files, loaded by ``ibkit.data.load("images", ...)``, measured.
"""

import math
import warnings

import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.adapters.images import channel_rates, rate_map

with warnings.catch_warnings():  # compressai's import warns about torchvision's image extension and torch.jit
    warnings.simplefilter("ignore")
    pytest.importorskip("compressai", reason="compressai is not installed (pip install -e '.[compressai]')")
    from compressai import zoo

from ibkit.adapters import compressai as adapter  # noqa: E402  (after the skip: it needs compressai)

pytestmark = pytest.mark.filterwarnings("ignore")

SIDE = 64
PIXELS = SIDE * SIDE
D = 3 * PIXELS
PASSES = 32  # CompressAI noisy forward passes averaged (one batch of PASSES copies of the images)
SAMPLES = 32  # ibkit's box draws per image for the rate


@pytest.fixture(scope="module")
def factorized():
    """(net, x): bmshj2018_factorized(quality=1), random weights, and two random images, in this seed order:
    torch.manual_seed(0); build the net; torch.rand(2, 3, 64, 64). It gives the issue's 33,311 ideal and 33,408
    real bits (compressai 1.2.8, torch 2.x CPU)."""
    torch.manual_seed(0)
    net = zoo.bmshj2018_factorized(quality=1, pretrained=False)
    x = torch.rand(2, 3, SIDE, SIDE).flatten(1)
    return net.eval(), x


@pytest.fixture(scope="module")
def mean_scale():
    """(net, x): mbt2018_mean(quality=1), random weights (torch.manual_seed(0) before it), and two random images."""
    torch.manual_seed(0)
    net = zoo.mbt2018_mean(quality=1, pretrained=False)
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)).flatten(1)
    return net.eval(), x


def _spread(net):
    """At initialisation the analysis transforms give latents of ~0.03 and the hyperprior's means and scales are
    ~0.01: every box sits at 0, so the rate hardly depends on the image, the means or the scales, and a test could not
    tell a wrong one from the right one. Scaling the transforms' last layers spreads them (y ~ 3, z ~ 4, means and
    scales ~ 5); the decoder's first layer is scaled back, so it sees y at its old scale."""
    with torch.no_grad():
        for p in net.g_a[-1].parameters():
            p.mul_(100)
        net.g_s[0].weight.mul_(0.01)
        if hasattr(net, "h_a"):
            for p in net.h_a[-1].parameters():
                p.mul_(50)
            for p in net.h_s[-1].parameters():
                p.mul_(300)
    return net


@pytest.fixture(scope="module")
def factorized_spread():
    """(net, x): bmshj2018_factorized(quality=1) from torch.manual_seed(0), its latent spread (``_spread``), and
    the random images of ``mean_scale``."""
    torch.manual_seed(0)
    net = _spread(zoo.bmshj2018_factorized(quality=1, pretrained=False))
    return net.eval(), torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)).flatten(1)


@pytest.fixture(scope="module")
def mean_scale_spread():
    """(net, x): mbt2018_mean(quality=1) from torch.manual_seed(0), its latents spread (``_spread``), and the random
    images of ``mean_scale``."""
    torch.manual_seed(0)
    net = _spread(zoo.mbt2018_mean(quality=1, pretrained=False))
    return net.eval(), torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)).flatten(1)


@pytest.fixture(scope="module")
def photos(photographs):
    return photographs


@pytest.fixture(scope="module")
def noisy_forward():
    """noisy_forward(net, x) -> (nats [PASSES, N], x_hat [PASSES, N, D]): CompressAI's own training-mode forward,
    PASSES independent noisy passes (one batch of copies: its noise is drawn per element), -sum log likelihoods per
    image in nats. Cached per (net, x), as two tests read the same passes; the net's mode is restored."""
    cache = {}

    def run(net, x):
        key = (id(net), x.data_ptr())
        if key not in cache:
            images = x.reshape(-1, 3, SIDE, SIDE)
            was_training = net.training
            net.train()
            try:
                torch.manual_seed(123)
                with torch.no_grad():
                    out = net(images.repeat(PASSES, 1, 1, 1))
            finally:
                net.train(was_training)
            nats = sum(-lik.log().flatten(1).sum(-1) for lik in out["likelihoods"].values())
            cache[key] = nats.reshape(PASSES, len(x)), out["x_hat"].reshape(PASSES, len(x), -1)
        return cache[key]

    return run


def _mean_se(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error over the first axis (the passes)."""
    return values.mean(0), values.std(0) / math.sqrt(len(values))


@pytest.mark.parametrize("inputs", ["random", "photos"])
@pytest.mark.parametrize("architecture", ["factorized", "mean_scale", "factorized_spread", "mean_scale_spread"])
def test_rate_per_image_is_compressais_noisy_likelihoods_in_nats(architecture, inputs, request, photos, noisy_forward):
    net, random_images = request.getfixturevalue(architecture)
    x = random_images if inputs == "random" else photos
    m = adapter.wrap(net, quality=1)
    ours = E.rate(m, x, n_samples=SAMPLES, per_example=True)
    ours_se = E.rate_standard_error(m, x, n_samples=SAMPLES, per_example=True)
    theirs, theirs_se = _mean_se(noisy_forward(net, x)[0])
    assert not net.training  # the forward passes left the net in evaluation mode
    assert (ours_se > 0).all() and (theirs_se > 0).all()
    tolerance = 3 * (ours_se ** 2 + theirs_se ** 2).sqrt()
    assert ((ours - theirs).abs() < tolerance).all(), (ours, theirs, tolerance)
    assert (ours_se < 0.01 * ours).all()  # precise enough for the comparison to mean something
    if architecture == "factorized" and inputs == "random":
        assert ours.tolist() == pytest.approx([11545.6, 11545.7], abs=1.0)  # noise costs ~4 bits per pixel


def test_compressed_bits_puts_ideal_and_real_bits_beside_the_rate(factorized):
    net, x = factorized
    m = adapter.wrap(net, quality=1)
    net.train()  # compressed_bits evaluates in eval mode and restores the mode it found
    try:
        table = m.compressed_bits(x)
        assert net.training
    finally:
        net.eval()
    assert list(table.columns) == ["image", "pixels", "rate_bits", "rate_bits_se", "ideal_bits", "real_bits",
                                   "rate_bpp", "ideal_bpp", "real_bpp"]
    assert table.image.tolist() == [0, 1] and (table.pixels == PIXELS).all()
    assert (table.real_bits % 8 == 0).all()  # whole bytes of net.compress's strings
    assert (table.real_bits >= table.ideal_bits - 64).all()  # the range coder's overhead is small but positive
    assert table.ideal_bits.sum() == pytest.approx(table.real_bits.sum(), rel=0.01)
    for name in ("rate", "ideal", "real"):
        assert table[f"{name}_bpp"].tolist() == pytest.approx((table[f"{name}_bits"] / PIXELS).tolist(), rel=1e-12)
    rate_bits = E.rate(m, x, n_samples=64, per_example=True) / math.log(2)
    assert table.rate_bits.tolist() == pytest.approx(rate_bits.tolist(), rel=1e-6)  # E.rate in bits, same draws
    assert (table.rate_bits_se > 0).all() and (table.rate_bits_se < 1).all()
    # the numbers for a random-weight factorised model on two 64x64 images (the fixture's seed order)
    assert table.ideal_bits.sum() == pytest.approx(33_311.4, abs=4)
    assert table.real_bits.sum() == pytest.approx(33_408, abs=16)


def test_mean_scale_hyperprior_is_two_layers_whose_rates_sum_to_the_rate(mean_scale_spread, photos):
    net, random_images = mean_scale_spread
    m = adapter.wrap(net, quality=1)
    x = torch.cat([random_images, photos])  # N = 4
    table = E.per_layer(m, x, bootstrap=20)
    assert m.latent_dims == (192 * 4 * 4, 128 * 1 * 1)  # y: M=192 channels at H/16; z: N=128 channels at H/64
    assert table.layer.tolist() == [1, 2] and table.latent_dim.tolist() == [3072, 128]
    assert (table.rate > 0).all() and table.rate[0] > 10 * table.rate[1]  # y carries most of it here
    rate = E.rate(m, x, n_samples=16, seed=0)  # per_layer's 16 draws, the same seed: the same boxes' draws
    assert table.rate.sum() == pytest.approx(rate, rel=1e-5)
    assert table.mi_upper.tolist() == pytest.approx([rate, table.rate[1]], rel=1e-5)  # sums over k >= l
    assert (table.mi_lower <= math.log(len(x)) + 1e-6).all()  # InfoNCE's cap
    assert (table.mi_lower >= -1e-6).all()
    # the channels split each layer's rate (the same draws again), and the positions each image's
    channels = channel_rates(m, x)
    assert channels.layer.value_counts().sort_index().tolist() == [192, 128]
    assert channels.groupby("layer").rate.sum().tolist() == pytest.approx(table.rate.tolist(), rel=1e-5)
    assert tuple(rate_map(m, x, layer=1).shape) == (4, 4, 4) and tuple(rate_map(m, x, layer=2).shape) == (4, 1, 1)


def test_sigma_is_compressais_lambda_mse_loss_as_a_gaussian_on_unit_pixels():
    assert adapter.sigma_of(0.0018) == pytest.approx(math.sqrt(3 / (2 * math.log(2) * 0.0018 * 255 ** 2)), rel=1e-12)
    assert adapter.sigma_of(0.0018) == pytest.approx(0.1360, abs=1e-4)  # quality 1
    assert adapter.sigma_of(0.18) == pytest.approx(0.01360, abs=1e-5)  # quality 8: lambda 100x, sigma 10x smaller
    assert adapter.sigma_of(0.0018, channels=1) == pytest.approx(0.1360 / math.sqrt(3), abs=1e-4)
    assert adapter.LAMBDAS[1] == 0.0018 and adapter.LAMBDAS[8] == 0.18
    with pytest.raises(ValueError, match="lmbda"):
        adapter.sigma_of(0.0)


def test_negative_elbo_is_compressais_rate_distortion_loss_in_nats(mean_scale_spread, photos, noisy_forward):
    net, _ = mean_scale_spread
    lmbda = 0.0018
    m = adapter.wrap(net, lmbda=lmbda)
    assert m.sigma == pytest.approx(adapter.sigma_of(lmbda), rel=1e-6) and m.lmbda == lmbda
    x = photos
    nats, x_hat = noisy_forward(net, x)
    squared_error = (x_hat - x).pow(2).sum(-1)  # [PASSES, N]
    sigma = adapter.sigma_of(lmbda)
    # CompressAI's loss lambda 255^2 MSE + bpp, times H W ln 2, is rate + ln2 lambda 255^2 / 3 * SSE (nats), and the
    # Gaussian's normaliser D/2 log(2 pi sigma^2) makes it the negative ELBO
    loss = nats + math.log(2) * lmbda * 255 ** 2 / 3 * squared_error + D / 2 * math.log(2 * math.pi * sigma ** 2)
    theirs, theirs_se = _mean_se(loss)
    draws = 16
    ours = -E.elbo(m, x, draws, per_example=True)
    # ours: the distortion over `draws` box draws (spread as CompressAI's passes' loss) and the rate over 64 draws
    ours_se = (loss.std(0) ** 2 / draws + E.rate_standard_error(m, x, per_example=True) ** 2).sqrt()
    tolerance = 3 * (theirs_se ** 2 + ours_se ** 2).sqrt()
    assert ((ours - theirs).abs() < tolerance).all(), (ours, theirs, tolerance)
    # a sigma 10% off would move the distortion term far beyond the tolerance
    error_term = math.log(2) * lmbda * 255 ** 2 / 3 * squared_error  # SSE / (2 sigma^2)
    wrong = loss - error_term + error_term / 1.1 ** 2 + D * math.log(1.1)  # sigma -> 1.1 sigma
    assert ((wrong.mean(0) - theirs).abs() > 10 * tolerance).all()


def test_distortion_is_squared_error_over_two_sigma_squared_and_without_lambda_only_mse(factorized, photos):
    net, _ = factorized
    m = adapter.wrap(net, quality=1)
    plain = adapter.wrap(net)  # no lambda, no quality: no likelihood
    assert plain.log_likelihood is None and plain.lmbda is None and math.isnan(plain.sigma)
    with pytest.raises(ValueError):
        E.elbo(plain, photos)
    squared = E.mse(plain, photos, per_example=True)
    assert squared.tolist() == pytest.approx(E.mse(m, photos, per_example=True).tolist(), rel=1e-6)  # same draws
    assert (squared > 0).all() and (squared < D).all()
    sigma = adapter.sigma_of(0.0018)
    by_hand = squared / (2 * sigma ** 2) + D / 2 * math.log(2 * math.pi * sigma ** 2)
    assert E.distortion(m, photos, per_example=True).tolist() == pytest.approx(by_hand.tolist(), rel=1e-5)


def test_iwae_of_the_hyperprior_model_is_above_the_elbo_and_rises_with_k(mean_scale_spread):
    net, x = mean_scale_spread
    m = adapter.wrap(net, quality=1)
    elbo = E.elbo(m, x, 16)  # 16 draws for the distortion: ~10 nats of Monte Carlo error
    bounds = [E.iwae(m, x, k) for k in (1, 4, 16)]
    # bounds of ~-1.5e5 nats; over seeds a one-draw bound spreads by ~70 nats, the k = 16 one by ~60, and the mean
    # rises ~60 nats from k = 1 to 4 and ~100 from 4 to 16
    noise = 250.0
    assert bounds[0] == pytest.approx(elbo, abs=noise)  # L_1 is a one-draw ELBO
    assert bounds[0] - noise <= bounds[1] <= bounds[2] + noise
    assert bounds[2] > elbo + 25  # 16 draws find better codes than one: ~200 nats above the ELBO


def test_what_is_no_covered_codec_or_no_image_of_its_shape_is_refused(factorized):
    net, x = factorized
    with pytest.raises(ValueError, match="Linear"):
        adapter.wrap(torch.nn.Linear(2, 2))
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="JointAutoregressiveHierarchicalPriors is not covered"):
        adapter.wrap(zoo.mbt2018(quality=1, pretrained=False))
    with pytest.raises(ValueError, match="quality=9"):
        adapter.wrap(net, quality=9)
    with pytest.raises(ValueError, match="nope"):
        adapter.load("nope", 1)
    with pytest.raises(ValueError, match="quality=0"):
        adapter.load("bmshj2018_factorized", 0)
    m = adapter.wrap(net, quality=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        E.rate(m, x * 2 - 0.5)
    with pytest.raises(ValueError, match="image_shape"):
        E.rate(m, torch.rand(2, 100))  # 100 values: no square RGB image
    fixed = adapter.wrap(net, quality=1, image_shape=(3, SIDE, SIDE))
    with pytest.raises(ValueError, match=r"\(3, 64, 64\)"):
        E.rate(fixed, torch.rand(2, 3 * 32 * 32))
    assert E.rate(fixed, x, n_samples=4) > 0  # its own shape is taken


def test_load_builds_a_zoo_model_with_its_qualitys_lambda():
    torch.manual_seed(0)
    m = adapter.load("bmshj2018_factorized", 3)
    assert type(m.net).__name__ == "FactorizedPrior" and m.kind == "factorized"
    assert m.lmbda == adapter.LAMBDAS[3] == 0.0067
    assert m.sigma == pytest.approx(adapter.sigma_of(0.0067), rel=1e-6)


def test_channel_rates_and_rate_map_split_the_rate_of_the_factorized_model(factorized_spread, photos):
    net, _ = factorized_spread
    m = adapter.wrap(net, quality=1)
    x = photos
    per_image = E.rate(m, x, n_samples=16, seed=3, per_example=True)
    table = channel_rates(m, x, n_samples=16, seed=3)
    assert len(table) == 192 and (table.layer == 1).all() and table.channel.tolist() == list(range(192))
    assert table.rate.sum() == pytest.approx(per_image.mean().item(), rel=1e-5)  # the same draws of the boxes
    assert (table.rate_se >= 0).all() and table.active.tolist() == (table.rate > 0.1).tolist()
    maps = rate_map(m, x, n_samples=16, seed=3)
    assert tuple(maps.shape) == (2, 4, 4)  # 64 / 16 positions a side
    assert maps.sum((1, 2)).tolist() == pytest.approx(per_image.tolist(), rel=1e-5)
    with pytest.raises(ValueError, match="layer"):
        rate_map(m, x, layer=2)  # one layer only


def test_photographs_loaded_from_a_folder_are_measured_end_to_end(mean_scale_spread, photographs, tmp_path):
    from PIL import Image

    net, _ = mean_scale_spread
    crops = photographs
    for name, row in zip(("china.png", "flower.png"), crops, strict=True):
        pixels = (row.reshape(3, SIDE, SIDE).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / name)
    data = ibkit.data.load("images", path=str(tmp_path), size=SIDE, test_fraction=0.5)  # one image in each split
    assert data.image_shape == (3, SIDE, SIDE)
    loaded = torch.cat([data.train, data.test])
    assert loaded.shape == (2, D) and loaded.dtype == torch.float32
    is_flower = [bool(torch.isclose(row, crops[1]).all()) for row in loaded]  # the split shuffles the two files
    assert sorted(is_flower) == [False, True]
    x = loaded[[is_flower.index(False), is_flower.index(True)]]  # china, flower: the crops' order
    torch.testing.assert_close(x, crops, rtol=0, atol=1e-6)  # PNG is lossless: channels first, pixels / 255
    m = adapter.wrap(net, quality=1, image_shape=data.image_shape)
    rate = E.rate(m, x, n_samples=16, per_example=True)
    se = E.rate_standard_error(m, x, n_samples=16, per_example=True)
    expected = E.rate(adapter.wrap(net, quality=1), crops, n_samples=16, per_example=True)
    assert rate.tolist() == pytest.approx(expected.tolist(), rel=1e-6)  # the same images, the same draws
    assert abs(rate[0] - rate[1]) > 10 * se.max()  # the two photographs cost measurably different rates
    layers = E.per_layer(m, x, bootstrap=10)  # its 16 draws are rate's
    assert layers.rate.sum() == pytest.approx(rate.mean().item(), rel=1e-5)
