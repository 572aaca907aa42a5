"""The four autoencoder kinds: configuration, per-example records, likelihoods and checkpoints."""

import pickle

import pytest
import torch
from torch.distributions import Bernoulli, Normal

import ibkit
from ibkit.models import load_checkpoint, save_checkpoint

X = (torch.rand(32, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def build(kind, **kw):
    return ibkit.build_model(kind, input_dim=12, latent_dim=3, hidden=(16,), **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(kind="gan"), "kind='gan'.*registered: ae, hvae, interleaved_ae, noisy_ae, periodic_ae, sparse_ae, vae"),
        (dict(kind="vae", likelihood="poisson"), "likelihood='poisson'"),
        (dict(kind="vae", posterior="flow"), "posterior='flow'"),
        (dict(kind="vae", beta=-1.0), "beta=-1.0 must be >= 0"),
        (dict(kind="noisy_ae", noise=0.0), "noise=0.0 must be > 0"),
        (dict(kind="noisy_ae"), "kind='noisy_ae' needs noise"),
        (dict(kind="sparse_ae", sparsity=-0.1), "sparsity=-0.1"),
        (dict(kind="vae", latent_dim=0), "latent_dim=0 must be >= 1"),
        (dict(kind="vae", noise=0.1), r"unknown option\(s\) \['noise'\] for kind='vae'"),
        (dict(kind="ae", beta=2.0), r"unknown option\(s\) \['beta'\] for kind='ae'"),
        (dict(kind="vae", likelihood="bernoulli", scale=0.5), "scale=0.5 applies only to likelihood='gaussian'"),
        (dict(kind="vae", beta="2"), "beta='2' must be a number"),
        (dict(kind="vae", flow_steps=1.5), "flow_steps=1.5 must be an integer"),
        (dict(kind="vae", hidden=(0,)), "hidden"),
        (dict(kind="noisy_ae", noise=0.1, code_bound="sigmoid"), "code_bound='sigmoid'"),
        (dict(kind="vae", code_bound="tanh"), r"unknown option.*code_bound"),
        (dict(kind="vae", widht=3), "unknown option.*widht"),
    ],
)
def test_bad_configuration_is_refused(kw, match):
    kw = {"input_dim": 12, "latent_dim": 3, **kw}
    with pytest.raises(ValueError, match=match):
        ibkit.build_model(**kw)


def test_vae_loss_is_distortion_plus_beta_rate():
    m = build("vae", beta=2.5)
    torch.manual_seed(0)
    out = m(X)
    assert out.distortion.shape == out.rate.shape == out.loss.shape == (32,)
    assert out.z.shape == (32, 3)
    torch.testing.assert_close(out.loss, out.distortion + 2.5 * out.rate)
    q = m.posterior(X)
    kl = 0.5 * (q.base_dist.scale.pow(2) + q.mean.pow(2) - 1 - 2 * q.base_dist.scale.log()).sum(-1)
    torch.testing.assert_close(out.rate, kl)


def test_deterministic_kinds():
    ae, sparse = build("ae"), build("sparse_ae", sparsity=0.3)
    out = ae(X)
    assert torch.isnan(out.rate).all()
    torch.testing.assert_close(out.loss, out.distortion)
    torch.testing.assert_close(out.z, ae.encode(X))
    out = sparse(X)
    torch.testing.assert_close(out.loss, out.distortion + 0.3 * out.z.abs().sum(-1))


def test_noisy_ae_channel():
    bounded = build("noisy_ae", noise=0.2)
    unbounded = build("noisy_ae", noise=0.2, code_bound=None)
    assert bounded.config.code_bound == "tanh" and unbounded.config.code_bound is None
    with torch.no_grad():
        for p in (*bounded.encoder.parameters(), *unbounded.encoder.parameters()):
            p.mul_(50)  # large pre-activations: tanh saturates, the unbounded code does not
    q = bounded.posterior(X)
    assert q.mean.abs().max() <= 1.0
    torch.testing.assert_close(q.base_dist.scale, torch.full((32, 3), 0.2))
    assert unbounded.posterior(X).mean.abs().max() > 1.0
    out = bounded(X)
    torch.testing.assert_close(out.loss, out.distortion)  # no KL term in its objective
    assert (out.rate > 0).all()  # but its rate (KL to N(0, I)) is still reported


def test_likelihoods_match_torch_distributions():
    m = build("vae")
    z = torch.randn(5, 32, 3)
    logits = m.decoder(z)
    torch.testing.assert_close(m.log_likelihood(X, z), Bernoulli(logits=logits).log_prob(X).sum(-1))
    g = build("vae", likelihood="gaussian")
    with torch.no_grad():
        g.likelihood.log_scale.fill_(-0.7)
    mean = g.decoder(z)
    expected = Normal(mean, torch.exp(torch.tensor(-0.7))).log_prob(X).sum(-1)
    torch.testing.assert_close(g.log_likelihood(X, z), expected)
    assert g.log_likelihood(X, z).shape == (5, 32)


def test_seeded_construction_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = build("vae", seed=1), build("vae", seed=1), build("vae", seed=2)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


def test_checkpoint_round_trip(tmp_path):
    m = build("noisy_ae", noise=0.3, likelihood="gaussian")
    with torch.no_grad():
        m.likelihood.log_scale.fill_(0.25)
    save_checkpoint(m, tmp_path / "m.pt")
    back = load_checkpoint(tmp_path / "m.pt")
    assert back.config == m.config
    torch.testing.assert_close(back.posterior(X).mean, m.posterior(X).mean)
    torch.testing.assert_close(back.likelihood.log_scale, m.likelihood.log_scale)


def test_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    """A run stored on a CUDA machine reloads here: its tensors are tagged 'cuda:0' in the file (as torch.save
    writes GPU tensors), which torch.load refuses on a machine without a GPU unless mapped to the CPU."""
    import torch.serialization

    m = build("vae", beta=2.0, posterior="full")
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_checkpoint(m, tmp_path / "gpu.pt")
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really claims the GPU
        torch.load(tmp_path / "gpu.pt", weights_only=True)
    back = load_checkpoint(tmp_path / "gpu.pt")
    assert back.config == m.config and next(back.parameters()).device.type == "cpu"
    torch.testing.assert_close(back.posterior(X).mean, m.posterior(X).mean)


def test_checkpoint_of_an_unregistered_kind_is_refused_by_name(tmp_path):
    m = build("ae")
    save_checkpoint(m, tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    blob["kind"] = "my_kind"
    torch.save(blob, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="kind='my_kind' is not a registered model kind"):
        load_checkpoint(tmp_path / "m.pt")


def test_checkpoint_from_before_per_kind_configs_loads(tmp_path):
    """Files written before the registry held one config with every kind's fields and the kind inside it."""
    m = build("noisy_ae", noise=0.3)
    state = {k: v for k, v in m.state_dict().items()}
    old = dict(kind="noisy_ae", input_dim=12, latent_dim=3, hidden=[16], decoder_hidden=[16],
               likelihood="bernoulli", scale=None, posterior="diagonal", flow_steps=2, beta=1.0, noise=0.3,
               sparsity=0.0, code_bound="tanh", seed=0)
    torch.save({"config": old, "state_dict": state}, tmp_path / "old.pt")
    back = load_checkpoint(tmp_path / "old.pt")
    assert back.config == m.config
    torch.testing.assert_close(back.posterior(X).mean, m.posterior(X).mean)


class _Payload:
    def __reduce__(self):
        return (print, ("this code must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_checkpoint(path)
    assert "never run" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps(1)[:3])
    with pytest.raises(ValueError, match="cannot load checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_start_at_marginal_makes_the_decoder_draw_the_average_datum(likelihood):
    """Before training, with the output bias set, a decoder whose last layer's weights are zero gives p(x|z) = the
    per-dimension marginal: mean pixel probabilities (Bernoulli, clamped away from 0 and 1) or the mean (Gaussian)."""
    m = build("noisy_ae", noise=0.3, likelihood=likelihood)
    x = X.clone()
    x[:, 0] = 0.0  # a dimension that is never on
    m.start_at_marginal(x)
    with torch.no_grad():
        m.decoder[-1].weight.zero_()
        mean = m.likelihood.mean(m.decoder(torch.randn(5, 3)))
    expected = x.mean(0).clamp(1e-4, 1 - 1e-4) if likelihood == "bernoulli" else x.mean(0)
    torch.testing.assert_close(mean, expected.expand(5, -1))
