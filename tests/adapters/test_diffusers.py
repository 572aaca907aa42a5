"""ibkit.adapters.diffusers: a diffusers AutoencoderKL measured by ibkit agrees with diffusers' own numbers.

Checked, on a small random-weight AutoencoderKL (block_out_channels (32, 64): latent 4 x 32 x 32 for 64x64 images) and
on uniform noise and crops of scikit-learn's two sample photographs:

- the rate per image is diffusers' ``latent_dist.kl()`` (prior N(0, I)), and with ``scaled=True`` its KL against
  N(0, s^-2 I) (s the config's scaling_factor), which is the closed form 1/2 sum [s^2 (mu^2 + var) - 1 - log(s^2 var)];
- the Gaussian likelihood of sigma on [-1, 1] pixels is the one of sigma / 2 on [0, 1] pixels (Jacobian 2^D), IWAE
  rises with k from the ELBO, and the distortion is the squared error over 2 (sigma / 2)^2;
- ``channel_rates`` and ``rate_map`` split the closed-form rate per channel and position;
- ``clamped_fraction`` is 0 for a normal VAE and 1 where diffusers' logvar clamp binds everywhere, the posterior then
  being diffusers' clamped one;
- ``likelihood=None`` measures distortion only; bad likelihoods and non-AutoencoderKL objects are refused;
- the amortisation protocol (``posterior_params`` / ``posterior_from_params``) is the posterior.
"""

import copy
import math
import warnings

import pytest
import torch

from ibkit import estimators as E
from ibkit.adapters.images import channel_rates, rate_map

with warnings.catch_warnings():  # diffusers' import warns about torchvision's image extension
    warnings.simplefilter("ignore")
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[diffusers]')")
    from diffusers import AutoencoderKL
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from ibkit.adapters import diffusers as adapter  # noqa: E402  (after the skip: it needs diffusers)

pytestmark = pytest.mark.filterwarnings("ignore")

SIDE = 64
D = 3 * SIDE * SIDE
LATENT = (4, 32, 32)  # latent_channels, SIDE / 2, SIDE / 2 (two blocks: one downsampling)
SIGMA = 0.1  # the likelihood's sigma on diffusers' [-1, 1] pixels


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32).eval()


@pytest.fixture(scope="module")
def x(photographs):
    """Four images [4, 3*64*64]: two of uniform noise, then the two photograph crops."""
    noise = torch.rand(2, D, generator=torch.Generator().manual_seed(1))
    return torch.cat([noise, photographs])


def _latent_dist(vae, x):
    with torch.no_grad():
        return vae.encode(2 * x.reshape(-1, 3, SIDE, SIDE) - 1).latent_dist


def test_rate_is_diffusers_latent_kl_and_scaled_its_kl_to_a_narrower_prior(vae, x):
    dist = _latent_dist(vae, x)
    m = adapter.wrap(vae, likelihood=SIGMA)
    rate = E.rate(m, x, per_example=True)
    assert rate.tolist() == pytest.approx(dist.kl().tolist(), rel=1e-5)
    assert m.latent_dims == (math.prod(LATENT),) and m.latent_shapes == [LATENT]
    assert E.rate_standard_error(m, x) == 0.0  # closed form
    s = vae.config.scaling_factor
    assert s == pytest.approx(0.18215)
    scaled = adapter.wrap(vae, likelihood=SIGMA, scaled=True)
    rate_scaled = E.rate(scaled, x, per_example=True)
    # N(0, I) on s z is N(0, s^-2 I) on z: diffusers' KL to that Gaussian, and the closed form
    narrow = DiagonalGaussianDistribution(torch.cat([torch.zeros_like(dist.mean),
                                                     torch.full_like(dist.logvar, -2 * math.log(s))], dim=1))
    assert rate_scaled.tolist() == pytest.approx(dist.kl(narrow).tolist(), rel=1e-5)
    closed = 0.5 * (s ** 2 * (dist.mean ** 2 + dist.var) - 1 - torch.log(s ** 2 * dist.var)).sum((1, 2, 3))
    assert rate_scaled.tolist() == pytest.approx(closed.tolist(), rel=1e-5)
    assert ((rate_scaled - rate).abs() > 0.01 * rate).all()  # the prior matters: not the unscaled rate
    # the scaled model's code is the latent times s
    torch.testing.assert_close(scaled.encode(x), s * m.encode(x))


def test_log_likelihood_is_diffusers_gaussian_on_minus_one_one_pixels_plus_the_jacobian(vae, x):
    m = adapter.wrap(vae, likelihood=SIGMA)
    assert m.sigma == pytest.approx(SIGMA / 2)  # on [0, 1] pixels
    xs = x[1:3]  # one noise image, one photograph
    torch.manual_seed(5)
    with torch.no_grad():
        z = m.posterior(xs).sample()
        decoded = vae.decode(z.reshape(-1, *LATENT)).sample.flatten(1)  # diffusers' [-1, 1] pixels
        ours = m.log_likelihood(xs, z)
    theirs = torch.distributions.Normal(decoded, SIGMA).log_prob(2 * xs - 1).sum(-1) + D * math.log(2)
    assert ours.tolist() == pytest.approx(theirs.tolist(), rel=1e-3)
    torch.testing.assert_close(m.decode(z), (decoded + 1) / 2)
    # a wrong sigma would be far off: sigma on [0, 1] pixels (not sigma / 2) changes it by thousands of nats
    wrong = torch.distributions.Normal((decoded + 1) / 2, SIGMA).log_prob(xs).sum(-1)
    assert ((ours - wrong).abs() > 1000).all()
    scaled = adapter.wrap(vae, likelihood=SIGMA, scaled=True)  # decodes z / s
    scaled.check_data(xs)  # its image shape (a fresh adapter's log_likelihood does not read it from x)
    with torch.no_grad():
        again = scaled.log_likelihood(xs, z * vae.config.scaling_factor)
    assert again.tolist() == pytest.approx(ours.tolist(), rel=1e-5)


def test_iwae_rises_with_k_from_the_elbo(vae, x):
    m = adapter.wrap(vae, likelihood=SIGMA)
    xs = x[1:]  # a noise image and the two photographs
    bounds = [E.iwae(m, xs, k) for k in (1, 4, 16)]
    elbo = E.elbo(m, xs, 16)  # 16 draws for the distortion: ~500 nats of Monte Carlo error here
    # a sharp likelihood (sigma 0.05 on [0, 1] pixels) on a random decoder: bounds of ~-2.5e5 nats whose one-draw
    # estimates spread by ~1,300 nats over seeds (~600 at k = 16); the mean rises ~2,000 nats per step of k
    noise = 4000.0
    assert bounds[0] == pytest.approx(elbo, rel=0.02)  # L_1 is a one-draw ELBO
    assert bounds[1] >= bounds[0] - noise and bounds[2] >= bounds[1] - noise
    assert bounds[2] > bounds[0] and bounds[2] > elbo + 2000  # 16 draws find far better codes than one
    assert bounds[2] < 0


def test_without_a_likelihood_only_rate_and_distortion_are_measured(vae, x):
    plain = adapter.wrap(vae, likelihood=None)
    assert plain.log_likelihood is None and math.isnan(plain.sigma)
    xs = x[2:]
    assert E.rate(plain, xs, per_example=True).tolist() == pytest.approx(_latent_dist(vae, xs).kl().tolist(),
                                                                         rel=1e-5)
    squared = E.mse(plain, xs, per_example=True)
    assert (squared > 0).all() and (squared < D).all()
    with pytest.raises(ValueError):
        E.iwae(plain, xs, 2)
    with pytest.raises(ValueError):
        E.elbo(plain, xs)
    m = adapter.wrap(vae, likelihood=SIGMA)  # the same draws and decoder: the same squared error, and the Gaussian's
    assert E.mse(m, xs, per_example=True).tolist() == pytest.approx(squared.tolist(), rel=1e-6)
    s = SIGMA / 2
    by_hand = squared / (2 * s ** 2) + D / 2 * math.log(2 * math.pi * s ** 2)
    assert E.distortion(m, xs, per_example=True).tolist() == pytest.approx(by_hand.tolist(), rel=1e-5)


def test_channel_rates_and_rate_map_split_the_closed_form_rate(vae, x):
    m = adapter.wrap(vae, likelihood=SIGMA)
    per_image = E.rate(m, x, per_example=True)
    table = channel_rates(m, x)
    assert len(table) == 4 and (table.layer == 1).all() and table.channel.tolist() == [0, 1, 2, 3]
    assert table.rate.sum() == pytest.approx(per_image.mean().item(), rel=1e-5)
    dist = _latent_dist(vae, x)
    by_channel = 0.5 * (dist.mean ** 2 + dist.var - 1 - dist.logvar).sum((2, 3)).mean(0)  # diffusers' KL per channel
    assert table.rate.tolist() == pytest.approx(by_channel.tolist(), rel=1e-5)
    maps = rate_map(m, x)
    assert tuple(maps.shape) == (4, 32, 32)
    assert maps.sum((1, 2)).tolist() == pytest.approx(per_image.tolist(), rel=1e-5)
    assert (maps > 0).all()


def test_clamped_fraction_is_zero_normally_and_one_where_diffusers_clamp_binds(vae, x):
    m = adapter.wrap(vae, likelihood=SIGMA)
    assert m.clamped_fraction(x) == 0.0
    assert vae.config.use_quant_conv and vae.quant_conv.out_channels == 2 * LATENT[0]
    squeezed = copy.deepcopy(vae)
    with torch.no_grad():
        squeezed.quant_conv.bias[LATENT[0]:] = -100.0  # the logvar half: raw logvar ~ -100, below diffusers' -30
    narrow = adapter.wrap(squeezed, likelihood=SIGMA)
    assert narrow.clamped_fraction(x) == 1.0
    dist = _latent_dist(squeezed, x)
    q = narrow.posterior(x)
    with torch.no_grad():
        torch.testing.assert_close(q.base_dist.scale, torch.full_like(q.base_dist.scale, math.exp(-15)))
        torch.testing.assert_close(q.base_dist.scale, dist.std.flatten(1))  # diffusers' clamped posterior
        torch.testing.assert_close(q.mean, dist.mean.flatten(1))
    assert E.rate(narrow, x, per_example=True).tolist() == pytest.approx(dist.kl().tolist(), rel=1e-5)
    assert m.clamped_fraction(x) == 0.0  # the copy, not the fixture's VAE, was changed


def test_bad_likelihoods_and_objects_that_are_no_autoencoderkl_are_refused(vae, x):
    for bad in (-1, 0, "x", True):
        with pytest.raises(ValueError, match="likelihood"):
            adapter.wrap(vae, likelihood=bad)
    with pytest.raises(ValueError, match="AutoencoderKL"):
        adapter.wrap(torch.nn.Linear(2, 2), likelihood=SIGMA)
    m = adapter.wrap(vae, likelihood=SIGMA)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        E.rate(m, 2 * x - 1)
    with pytest.raises(ValueError, match="image_shape"):
        E.rate(m, torch.rand(2, 100))


def test_posterior_params_are_diffusers_latent_dist_and_give_back_the_posterior(vae, x):
    m = adapter.wrap(vae, likelihood=SIGMA)
    h = m.posterior_params(x)
    d = math.prod(LATENT)
    assert h.shape == (len(x), 2 * d)
    dist = _latent_dist(vae, x)
    with torch.no_grad():
        torch.testing.assert_close(h[:, :d], dist.mean.flatten(1))
        torch.testing.assert_close(h[:, d:], dist.logvar.flatten(1))
        again, direct = m.posterior_from_params(h), m.posterior(x)
        torch.testing.assert_close(again.mean, direct.mean)
        torch.testing.assert_close(again.stddev, direct.stddev)
        torch.testing.assert_close(direct.stddev, dist.std.flatten(1))
    assert direct.batch_shape == (len(x),) and direct.event_shape == (d,)
