"""network="conv": stride-2 convolutional encoders and decoders for every kind, batched by fit_many, equal to the
same network written in plain torch and wrapped with ibkit.wrap."""

import copy

import pytest
import torch
from torch import nn

import ibkit
from ibkit import estimators as E
from ibkit.batched import stack_models
from ibkit.estimators._common import unit_count
from ibkit.models import load_checkpoint, save_checkpoint
from ibkit.models.networks import conv_sizes


@pytest.mark.parametrize("input_dim,image_shape,expected", [(784, None, (1, 28, 28)), (64, None, (1, 8, 8)),
                                                           (3 * 7 * 9, (3, 7, 9), (3, 7, 9))])
def test_the_image_shape_and_every_shape_through_the_networks(input_dim, image_shape, expected, tiny_vae):
    m = tiny_vae(input_dim=input_dim, latent_dim=5, network="conv", image_shape=image_shape, channels=(4, 8))
    assert m.config.image_shape == expected
    x = torch.rand(6, input_dim)
    assert m.posterior(x).event_shape == (5,) and m.posterior(x).batch_shape == (6,)
    z = m.posterior(x).sample((3,))  # [3, 6, 5]: the estimators' samples reach the decoder with their leading axes
    assert m.log_likelihood(x, z).shape == (3, 6) and m.decode(z).shape == (3, 6, input_dim)
    # halving with odd sizes (7 -> 3 -> 1) is undone exactly by the transposed convolutions' output padding
    assert conv_sizes((3, 7, 9), (4, 8)) == [(3, 7, 9), (4, 3, 4), (8, 1, 2)]


@pytest.mark.parametrize("fields,message", [
    (dict(input_dim=10), r"network='conv' needs image_shape=\(C, H, W\): input_dim=10 is not a square"),
    (dict(input_dim=64, image_shape=(1, 4, 4)), r"image_shape=\(1, 4, 4\) must be \(C, H, W\) with C \* H \* W = "),
    (dict(input_dim=64, channels=(4, 4, 4, 4)), r"4 stride-2 convolutions halve image_shape=\(1, 8, 8\) below 1x1; "
                                                r"use at most 3"),
    (dict(input_dim=64, channels=()), r"channels=\(\) gives network='conv' no convolution"),
    (dict(input_dim=64, network="mlp", image_shape=(1, 8, 8)), "image_shape=.* applies only to network='conv'"),
    (dict(input_dim=64, network="cnn"), "network='cnn' is not known; choose one of: mlp, conv"),
])
def test_bad_conv_options_are_named(fields, message, tiny_vae):
    with pytest.raises(ValueError, match=message):
        tiny_vae(latent_dim=2, hidden=(256, 256), **{"network": "conv", **fields})


@pytest.mark.parametrize("kind,options", [("vae", {}), ("ae", {}), ("noisy_ae", dict(noise=0.2)),
                                          ("hvae", dict(latent_dims=(4, 2)))])  # the x-side networks of each kind
def test_fit_many_trains_conv_models_as_each_alone(digits, kind, options):
    """Grouped convolutions (one group per model) give each model the steps its own fit takes."""
    models = [ibkit.build_model(kind, 64, 6, network="conv", hidden=(16,), channels=(4, 8), seed=s, **options)
              for s in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    batched = ibkit.fit_many(models, digits.train[:400], epochs=2, seed=[0, 1, 2], progress=False)
    for s, (m, a, history) in enumerate(zip(models, alone, batched, strict=True)):
        own = ibkit.fit(a, digits.train[:400], epochs=2, seed=s, progress=False)
        assert (history["loss"] - own["loss"]).abs().max() < 1e-3
        assert E.distortion(m, digits.test) == pytest.approx(E.distortion(a, digits.test), abs=1e-3)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_the_stacked_convolutions_are_grouped_and_counted_for_memory(tiny_vae):
    models = [tiny_vae(input_dim=784, latent_dim=8, network="conv", hidden=(), seed=s) for s in range(4)]
    stacked = stack_models(models)
    first = stacked.encoder[0].convs[0]
    assert (first.in_channels, first.out_channels, first.groups) == (4, 128, 4)
    # the encoder's 32 x 14 x 14 and 64 x 7 x 7 feature maps, the decoder's 32 x 14 x 14 and 1 x 28 x 28, and the
    # linear layers' 16 (the head) and 3,136 outputs
    assert unit_count(models[0]) == (32 * 14 * 14 + 64 * 7 * 7) + (32 * 14 * 14 + 28 * 28) + 16 + 3136


def test_a_conv_checkpoint_round_trips_and_the_decoder_starts_at_the_marginal(tmp_path, digits):
    m = ibkit.build_model("noisy_ae", 64, 4, network="conv", channels=(4, 8), hidden=(16,), noise=0.1)
    m.start_at_marginal(digits.train)
    torch.testing.assert_close(m.decoder[-1].bias, torch.logit(digits.train.mean(0).clamp(1e-4, 1 - 1e-4)))
    save_checkpoint(m, tmp_path / "conv.pt")
    back = load_checkpoint(tmp_path / "conv.pt")
    assert back.config == m.config and back.config.image_shape == (1, 8, 8)
    torch.testing.assert_close(back.encode(digits.test), m.encode(digits.test))


class PlainConvVAE(nn.Module):
    """The conv VAE of the tutorials, written without ibkit: 8x8 images, two stride-2 convolutions, one hidden
    layer each way, a per-pixel output bias."""

    def __init__(self, d: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 4, 2, 1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2 * d))
        self.decoder = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(),
                                     nn.Unflatten(1, (8, 2, 2)), nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(4, 1, 4, 2, 1, bias=False), nn.Flatten(), Bias(64))


class Bias(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        return x + self.bias


def test_a_plain_torch_conv_vae_wrapped_measures_as_the_same_network_built_by_ibkit(digits, tiny_vae):
    own = tiny_vae(input_dim=64, latent_dim=3, network="conv", channels=(4, 8), seed=0)
    ibkit.fit(own, digits.train, epochs=3, progress=False)
    plain = PlainConvVAE(3)
    with torch.no_grad():  # the same weights, in the same order
        for theirs, ours in zip(plain.parameters(), own.parameters(), strict=True):
            theirs.copy_(ours.reshape(theirs.shape))
    wrapped = ibkit.wrap(plain.encoder, plain.decoder, likelihood="bernoulli", input_shape=(1, 8, 8))
    x = digits.test
    for estimate, tolerance in ((E.rate, 1e-4), (E.elbo, 1e-3), (lambda m, x: E.iwae(m, x, 200), 1e-3)):
        assert estimate(wrapped, x) == pytest.approx(estimate(own, x), abs=tolerance)
    # with different draws they agree within Monte Carlo error
    theirs = E.iwae(wrapped, x, 200, seed=1, per_example=True)
    ours = E.iwae(own, x, 200, seed=2, per_example=True)
    assert abs((theirs - ours).mean()) < 3 * (theirs - ours).std() / len(x) ** 0.5
