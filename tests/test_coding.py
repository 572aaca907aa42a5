"""ibkit.coding.bits_back: -ELBO as the length of a real bitstream (BB-ANS on constriction's ANS coder)."""

from __future__ import annotations

import math

import pytest
import torch

import ibkit
from ibkit import estimators as E

pytest.importorskip("constriction")
from ibkit.coding import bits_back  # noqa: E402


@pytest.fixture(scope="module")
def trained(digits):
    """A Bernoulli VAE (d = 8) trained 30 epochs on digits, and the 359 test rows."""
    m = ibkit.build_model("vae", digits.input_dim, 8, hidden=(128, 128))
    ibkit.fit(m, digits.train, epochs=30, progress=False)
    return m, digits.test


def test_every_row_decodes_exactly_at_minus_the_elbo(trained):
    """Each row's net increment of its stream averages -ELBO (64-sample estimate) to 1%; the rows read back are the
    rows sent; the one-off overhead (seed words apart) is the chains' padding to whole words, under 32 bits each."""
    m, x = trained
    code = bits_back(m, x)
    assert torch.equal(code.decoded, x)
    neg_elbo = -E.elbo(m, x, n_samples=64)
    assert code.per_example.shape == (len(x),) and (code.per_example > 0).all()
    assert code.per_example.mean().item() == pytest.approx(neg_elbo, rel=0.01)
    padding = code.nats_per_example * len(x) - code.per_example.sum().item()
    assert 0 <= padding < 16 * 32 * math.log(2)
    assert code.initial_bits == 16 * 32 * (math.ceil(24 * 8 / 32) + 2)  # 16 chains of 8 seed words
    assert code.total_bits > code.initial_bits + len(x) * neg_elbo / math.log(2) * 0.99


def test_a_run_is_deterministic_given_its_seed_and_any_chain_count_decodes(trained):
    m, x = trained
    a, b = bits_back(m, x[:50], seed=3), bits_back(m, x[:50], seed=3)
    assert a.total_bits == b.total_bits and torch.equal(a.per_example, b.per_example)
    for chains in (1, 7, 50):
        assert torch.equal(bits_back(m, x[:50], chains=chains).decoded, x[:50])


def test_any_discretisation_of_the_latent_round_trips(trained):
    """The latent's bins change the length, never the rows: 4 or 65,536 equal-mass bins per dimension both decode
    exactly (the receiver rebuilds q(z|x) on the same bins from the rows it decoded)."""
    m, x = trained
    for bins in (4, 2**16):
        assert torch.equal(bits_back(m, x[:60], latent_bins=bins).decoded, x[:60])


@pytest.mark.parametrize(("build", "rows", "message"), [
    (dict(posterior="iaf"), None, "diagonal Gaussian posterior for now; this model's q"),
    (dict(likelihood="gaussian"), None, "Bernoulli likelihood"),
    ({}, "grey", "bits-back codes discrete data; x holds values other than 0 and 1"),
])
def test_what_it_cannot_code_is_refused_with_the_reason(tiny_vae, build, rows, message):
    m = tiny_vae(**build)
    x = torch.rand(5, 64) if rows == "grey" else (torch.rand(5, 64) > 0.5).float()
    with pytest.raises(ValueError, match=message):
        bits_back(m, x)
