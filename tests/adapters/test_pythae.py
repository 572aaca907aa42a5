"""ibkit.adapters.pythae: a pythae model trained with pythae's own loss, measured by ibkit, agrees with pythae's own
numbers (its KL term exactly, its importance-sampled log p(x) within Monte Carlo error)."""

import math

import pytest
import torch

import ibkit
from ibkit import estimators as E

pythae_models = pytest.importorskip("pythae.models", reason="pythae is not installed (pip install -e '.[pythae]')")
from ibkit.adapters import pythae as adapter  # noqa: E402  (after the skip: it needs pythae)

SHAPE = (1, 8, 8)


def _train(model, x, epochs: int = 10):
    """pythae's loss (its forward's ``loss``), minibatch Adam: a model trained the pythae way."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = x.reshape(-1, *SHAPE)
    for epoch in range(epochs):
        for i in range(0, len(images), 128):
            loss = model({"data": images[i: i + 128]}, epoch=epoch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def pythae_vae(digits):
    torch.manual_seed(0)
    config = pythae_models.VAEConfig(input_dim=SHAPE, latent_dim=4, reconstruction_loss="bce")
    return _train(pythae_models.VAE(config), digits.train)


def test_rate_is_pythaes_kl_term_and_iwae_agrees_with_its_get_nll(pythae_vae, digits):
    m = adapter.wrap(pythae_vae)
    x = digits.test[:100]
    with torch.no_grad():
        kl = pythae_vae({"data": x.reshape(-1, *SHAPE)}).reg_loss.item()  # pythae's mean KL(q || N(0, I))
        torch.manual_seed(0)
        # get_nll returns log p(x) (not its negative); n_samples above batch_size, or it draws batch_size samples
        theirs = pythae_vae.get_nll(x.reshape(-1, *SHAPE), n_samples=500, batch_size=100)
    assert E.rate(m, x) == pytest.approx(kl, rel=1e-5)
    ours, again = (E.iwae(m, x, 500, seed=s, per_example=True) for s in (0, 1))
    se = ((ours - again).std() / math.sqrt(len(x))).item()  # of a difference of two independent estimates
    assert abs(ours.mean().item() - theirs) < 3 * se and se < 0.05
    assert -40 < theirs < -15  # a trained digits VAE (digits' log p(x) is about -25 nats at this size)


def test_the_wrapped_model_trains_pythaes_own_parameters(pythae_vae, digits):
    m = adapter.wrap(pythae_vae)
    assert {id(p) for p in m.parameters()} == {id(p) for p in pythae_vae.parameters()}
    before = E.elbo(m, digits.test)
    ibkit.fit(m, digits.train, epochs=3, progress=False)
    assert E.elbo(m, digits.test) > before  # pythae's ELBO rises too: the same weights
    with torch.no_grad():
        out = pythae_vae({"data": digits.test.reshape(-1, *SHAPE)})
    assert E.elbo(m, digits.test, n_samples=20) == pytest.approx(-(out.recon_loss + out.reg_loss).item(), abs=0.5)


def test_vamp_uses_its_own_prior_and_the_ae_family_is_a_deterministic_code(digits):
    torch.manual_seed(0)
    vamp = _train(pythae_models.VAMP(pythae_models.VAMPConfig(input_dim=SHAPE, latent_dim=4, number_components=10,
                                                              reconstruction_loss="bce")), digits.train, epochs=3)
    m = adapter.wrap(vamp)
    x = digits.test[:100]
    z = m.posterior(x).sample()
    with torch.no_grad():  # pythae's log p(z) leaves out the Gaussians' -d/2 log 2 pi
        torch.testing.assert_close(m.prior().log_prob(z) + 2 * math.log(2 * math.pi), vamp._log_p_z(z))
    assert any(p is vamp.pseudo_inputs[0].weight for p in m.parameters())  # the pseudo-inputs train with fit
    ae = _train(pythae_models.AE(pythae_models.AEConfig(input_dim=SHAPE, latent_dim=4)), digits.train, epochs=2)
    code = adapter.wrap(ae)
    assert not ibkit.interface.is_stochastic(code)
    with torch.no_grad():
        recon = ae.decoder(ae.encoder(x.reshape(-1, *SHAPE)).embedding)["reconstruction"].reshape(len(x), -1)
    by_hand = 0.5 * ((x - recon) ** 2).sum(-1) + 32 * math.log(2 * math.pi)  # a unit-variance Gaussian, as get_nll
    assert E.distortion(code, x) == pytest.approx(by_hand.mean().item(), rel=1e-5)


def test_models_outside_the_gaussian_family_are_refused_by_name():
    iaf = pythae_models.VAE_IAF(pythae_models.VAE_IAF_Config(input_dim=SHAPE, latent_dim=2))
    with pytest.raises(ValueError, match="pythae's VAE_IAF has an IAF posterior; .* wrap others with ibkit.wrap"):
        adapter.wrap(iaf)
    with pytest.raises(ValueError, match="model is a Linear, not a pythae model"):
        adapter.wrap(torch.nn.Linear(2, 2))


def test_a_pythae_vae_is_coded_by_bits_back_at_its_elbo_and_a_vamp_prior_is_refused(pythae_vae, digits):
    """The wrapped pythae VAE codes every row exactly at its -ELBO (64 samples) to 2%; VAMP's mixture prior has no
    Gaussian CDF per dimension to put the bins on, and is refused with that reason."""
    pytest.importorskip("constriction")
    from ibkit.coding import bits_back

    m, x = adapter.wrap(pythae_vae), digits.test[:150]
    code = bits_back(m, x)
    assert torch.equal(code.decoded, x)
    assert code.per_example.mean().item() == pytest.approx(-E.elbo(m, x, n_samples=64), rel=0.02)
    vamp = pythae_models.VAMP(pythae_models.VAMPConfig(input_dim=SHAPE, latent_dim=4, number_components=3,
                                                       reconstruction_loss="bce"))
    with pytest.raises(ValueError, match="per-dimension Gaussian CDF; got"):
        bits_back(adapter.wrap(vamp), x[:5])
