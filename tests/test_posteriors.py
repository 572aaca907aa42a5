"""Posterior families beyond the diagonal (issue 4, first part): the full-covariance Gaussian."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import ibkit
from ibkit import estimators as E
from ibkit.models import load_checkpoint, save_checkpoint
from ibkit.theory import ppca_max_log_likelihood

X = (torch.rand(64, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def test_full_posterior_is_a_valid_cholesky_gaussian_with_closed_form_rate():
    m = ibkit.build_model("vae", 12, 4, hidden=(16,), posterior="full", seed=3)
    q = m.posterior(X)
    assert isinstance(q, MultivariateNormal) and q.batch_shape == (64,) and q.event_shape == (4,)
    L = q.scale_tril
    assert torch.equal(L, torch.tril(L)) and (torch.diagonal(L, dim1=-2, dim2=-1) > 0).all()
    assert (L.tril(-1).abs() > 0).any()  # the off-diagonal entries come from the encoder, not zeros
    S, mu = q.covariance_matrix.double(), q.mean.double()
    closed = 0.5 * (S.diagonal(dim1=-2, dim2=-1).sum(-1) + mu.pow(2).sum(-1) - 4 - torch.logdet(S))
    assert E.rate(m, X) == pytest.approx(closed.mean().item(), rel=1e-5)
    out = m(X)
    torch.testing.assert_close(out.rate, closed.float(), rtol=1e-4, atol=1e-5)


def test_linear_vae_with_full_posterior_reaches_ppca_optimum():
    ds = ibkit.data.load("gaussian", input_dim=8, latent_dim=2, noise=0.5, n_train=5000, n_test=5000, seed=0)
    m = ibkit.build_model("vae", 8, 2, hidden=(), likelihood="gaussian", posterior="full")
    ibkit.fit(m, ds.train, epochs=60, lr=3e-3, progress=False)  # the Cholesky factor converges more slowly
    assert E.elbo(m, ds.test, n_samples=10) == pytest.approx(ppca_max_log_likelihood(ds.test, 2), rel=0.01)


def test_full_posterior_with_estimators_probe_and_checkpoint(tmp_path):
    m = ibkit.build_model("vae", 12, 3, hidden=(16,), posterior="full", beta=2.0)
    b = E.mi_bounds(m, X)
    assert b["infonce"] <= math.log(64) and b["rate"] > 0
    probed = E.probe(m, 0.5).posterior(X)
    torch.testing.assert_close(probed.covariance_matrix,
                               m.posterior(X).covariance_matrix + 0.25 * torch.eye(3), rtol=1e-5, atol=1e-6)
    save_checkpoint(m, tmp_path / "full.pt")
    back = load_checkpoint(tmp_path / "full.pt")
    torch.testing.assert_close(back.posterior(X).scale_tril, m.posterior(X).scale_tril)


def test_posterior_family_only_for_vae():
    with pytest.raises(ValueError, match="posterior='full' applies only to kind='vae'"):
        ibkit.build_model("ae", 12, 3, posterior="full")
    with pytest.raises(ValueError, match="posterior='flow' is not known; choose one of: diagonal, full"):
        ibkit.build_model("vae", 12, 3, posterior="flow")
