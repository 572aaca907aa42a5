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
    (dict(posterior="iaf"), None, "posterior; this model's q.z.x. is a IAFDistribution .an IAF's flow has no"),
    (dict(likelihood="gaussian"), None, "Bernoulli likelihood"),
    ({}, "grey", "bits-back codes discrete data; x holds values other than 0 and 1"),
])
def test_what_it_cannot_code_is_refused_with_the_reason(tiny_vae, build, rows, message):
    m = tiny_vae(**build)
    x = torch.rand(5, 64) if rows == "grey" else (torch.rand(5, 64) > 0.5).float()
    with pytest.raises(ValueError, match=message):
        bits_back(m, x)


def test_a_compressed_file_decompresses_to_its_rows_and_costs_the_bits_back_length_plus_its_header(trained):
    from ibkit.coding import compress, decompress, header_bytes

    m, x = trained
    data = compress(m, x)  # one chain
    assert torch.equal(decompress(m, data), x)
    code = bits_back(m, x, chains=1)
    assert len(data) == code.total_bits // 8 + header_bytes() + 4 + 4
    assert header_bytes() < 128  # a few hundred bits, not a fixed large block
    # 359 rows: the header, the seed words and the padding add under 4 bits per row to the rows' own length
    assert 0 < 8 * len(data) / len(x) - code.per_example.mean().item() / math.log(2) < 4
    sixteen = compress(m, x, chains=16)  # each chain adds its seed words (256 bits at d = 8) and padding
    assert torch.equal(decompress(m, sixteen), x) and len(sixteen) > len(data) + 15 * 256 // 8


def test_another_model_or_a_damaged_file_is_refused_never_decoded_to_wrong_rows(trained, tiny_vae):
    from ibkit.coding import compress, decompress

    m, x = trained
    data = compress(m, x[:40])
    other = ibkit.build_model("vae", 64, 8, hidden=(128, 128), seed=1)
    with pytest.raises(ValueError, match="compressed with another model"):
        decompress(other, data)
    with pytest.raises(ValueError, match="truncated or corrupted"):
        decompress(m, data[:-7])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(ValueError, match="truncated or corrupted"):
        decompress(m, bytes(flipped))
    with pytest.raises(ValueError, match="not an ibkit bits-back file"):
        decompress(m, b"PK\x03\x04 a zip file")


def test_compress_and_decompress_at_the_command_line(trained, tmp_path, capsys):
    import numpy as np

    from ibkit.cli import main

    m, x = trained
    checkpoint, other = tmp_path / "vae.pt", tmp_path / "other.pt"
    ibkit.save_checkpoint(m, checkpoint)
    ibkit.save_checkpoint(ibkit.build_model("vae", 64, 8, hidden=(128, 128), seed=1), other)
    assert main(["compress", str(checkpoint), "digits", str(tmp_path / "rows.ibb")]) == 0
    said = capsys.readouterr().out
    bits, neg_elbo = (float(said.split(" bits per example")[i].split()[-1]) for i in (0, 1))
    size = (tmp_path / "rows.ibb").stat().st_size
    assert said.startswith(f"{len(x)} rows of digits test split") and bits == pytest.approx(8 * size / len(x), abs=0.01)
    assert neg_elbo == pytest.approx(-E.elbo(m, x, n_samples=64) / math.log(2), rel=0.01)
    assert bits > neg_elbo  # the one-off header, seed words and padding weigh on 359 rows; bits_back measures the rows
    assert main(["decompress", str(checkpoint), str(tmp_path / "rows.ibb"), str(tmp_path / "rows.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "rows.npy"), x.numpy().astype(np.uint8))
    capsys.readouterr()
    assert main(["decompress", str(other), str(tmp_path / "rows.ibb"), str(tmp_path / "again.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compressed with another model" in err and not (tmp_path / "again.npy").exists()
    assert main(["compress", str(checkpoint), "digits", str(tmp_path / "rows.ibb")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


class FixedPosterior:
    """A protocol model whose q(z|x) is N(mu, diag(sigma^2)) for every row, against the prior N(0, I)."""

    def __init__(self, mu, sigma):
        self.mu, self.sigma = torch.tensor(mu), torch.tensor(sigma)

    def posterior(self, x):
        loc = self.mu.expand(len(x), -1)
        return torch.distributions.Independent(torch.distributions.Normal(loc, self.sigma.expand_as(loc)), 1)

    def prior(self):
        return torch.distributions.Independent(torch.distributions.Normal(torch.zeros_like(self.mu),
                                                                          torch.ones_like(self.mu)), 1)

    def log_likelihood(self, x, z):
        return torch.zeros(z.shape[:-1])


def test_channel_simulation_sends_an_exact_sample_of_q_at_about_its_kl():
    """2,000 rows, each its own shared randomness: the samples the receiver rebuilds from the indices alone are
    N(1, 0.5^2) (mean, std and a Kolmogorov-Smirnov test), and the indices cost less than KL + log2(KL + 1) + 4 bits
    (KL(N(1, 0.25) || N(0, 1)) = 0.818 nats = 1.18 bits, closed form)."""
    from scipy import stats

    from ibkit.coding import channel_decode, channel_simulation

    model = FixedPosterior([1.0], [0.5])
    code = channel_simulation(model, torch.zeros(2000, 3), seed=7)
    kl = math.log(2) + (0.25 + 1.0) / 2 - 0.5
    assert code.kl_bits[0].item() == pytest.approx(kl / math.log(2), rel=1e-6)
    z = code.z[:, 0].double()
    assert z.mean().item() == pytest.approx(1.0, abs=3 * 0.5 / math.sqrt(2000))
    assert z.std().item() == pytest.approx(0.5, rel=0.05)
    assert stats.kstest(z.numpy(), "norm", args=(1.0, 0.5)).pvalue > 1e-3
    assert code.bits.mean().item() <= code.bound_bits.mean().item()
    assert torch.equal(channel_decode(model.prior(), code, seed=7), code.z)
    assert not torch.equal(channel_decode(model.prior(), code, seed=8), code.z)  # the shared seed matters


def test_a_posterior_wider_than_the_prior_is_still_sent_exactly_at_about_its_kl():
    """q = N(0.2, 1.1^2) against N(0, 1), a collapsed unit's shape: q/p grows without bound in the tails, so the
    search keeps to q's loc +- 8.5 scales (1.9e-17 of q's mass beyond); the samples are q's (mean, std, KS) and the
    indices cost less than the bound on KL = 0.0345 nats (closed form)."""
    from scipy import stats

    from ibkit.coding import channel_simulation

    model = FixedPosterior([0.2], [1.1])
    code = channel_simulation(model, torch.zeros(2000, 3), seed=3)
    kl = -math.log(1.1) + (1.21 + 0.04) / 2 - 0.5
    assert code.kl_bits[0].item() == pytest.approx(kl / math.log(2), rel=1e-6)
    z = code.z[:, 0].double()
    assert abs(z.mean().item() - 0.2) < 4 * 1.1 / math.sqrt(2000)
    assert stats.kstest(z.numpy(), "norm", args=(0.2, 1.1)).pvalue > 1e-3
    assert code.bits.mean().item() <= code.bound_bits.mean().item()


def test_channel_simulation_of_a_trained_vae_costs_its_rate_within_the_bound(trained):
    """A digits VAE: the mean KL of the rows is the estimators' rate; the indices cost at most the bound, the
    receiver rebuilds every row's z."""
    from ibkit.coding import channel_decode, channel_simulation

    m, x = trained
    code = channel_simulation(m, x[:100])
    assert code.kl_bits.mean().item() == pytest.approx(E.rate(m, x[:100]) / math.log(2), rel=1e-5)
    assert code.bits.mean().item() <= code.bound_bits.mean().item()
    assert torch.equal(channel_decode(m.prior(), code), code.z)


def test_channel_simulation_refuses_a_posterior_it_cannot_search(tiny_vae):
    from ibkit.coding import channel_simulation

    with pytest.raises(ValueError, match="needs a diagonal Gaussian posterior; got MultivariateNormal"):
        channel_simulation(tiny_vae(posterior="full"), torch.zeros(3, 64))


def test_analyse_reports_the_code_length_where_the_model_can_be_coded(trained, tiny_vae):
    m, x = trained
    report = ibkit.analyse(m, x, k=10, eval_rows=100, iwae_rows=300)
    assert 1.0 <= report.row["code_length_ratio"] < 1.05  # the rows' bits-back stream, overhead included, >= -ELBO
    assert "| code length (bits-back stream on the IWAE rows, nats per example) |" in report.report()
    gaussian = ibkit.analyse(tiny_vae(likelihood="gaussian"), torch.rand(40, 64), k=5, eval_rows=20, iwae_rows=20)
    assert math.isnan(gaussian.row["code_length"]) and "codes discrete data" in gaussian.row["code_length_note"]
    assert "code length" not in gaussian.report()


class PriorPosterior(FixedPosterior):
    """q(z|x) = p(z) = N(0, I) for every row, with a fixed logistic decoder: a code that carries nothing."""

    def __init__(self, d: int, width: int):
        super().__init__([0.0] * d, [1.0] * d)
        g = torch.Generator().manual_seed(0)
        self.weight, self.bias = torch.randn(d, width, generator=g), torch.randn(width, generator=g)

    def decode(self, z):
        return torch.sigmoid(z @ self.weight + self.bias)

    def log_likelihood(self, x, z):
        return torch.distributions.Bernoulli(probs=self.decode(z)).log_prob(x).sum(-1)


def test_a_posterior_equal_to_the_prior_costs_the_likelihood_term_alone():
    """With q = p the bits popped for z are the bits pushed for it (every bin has mass 1/B under both): each row
    costs -log p(x|z) at its z, so the mean length is the distortion E_q -log p(x|z) (the rate is 0)."""
    model = PriorPosterior(3, 20)
    x = (torch.rand(400, 20, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    code = bits_back(model, x)
    assert E.rate(model, x) == pytest.approx(0.0, abs=1e-9) and torch.equal(code.decoded, x)
    distortion = E.distortion(model, x, n_samples=200)
    assert code.per_example.mean().item() == pytest.approx(distortion, rel=0.02)


def test_a_wrapped_model_codes_like_ibkits_own(trained):
    """ibkit.wrap of the trained VAE's own encoder and decoder: the same code length, every row exact."""
    import copy

    m, x = trained
    wrapped = ibkit.wrap(copy.deepcopy(m.encoder), copy.deepcopy(m.decoder), likelihood="bernoulli")
    own, theirs = bits_back(m, x[:100]), bits_back(wrapped, x[:100])
    assert torch.equal(theirs.decoded, x[:100])
    assert theirs.per_example.mean().item() == pytest.approx(own.per_example.mean().item(), rel=0.01)


def test_a_full_covariance_posterior_is_coded_one_conditional_at_a_time(digits):
    """q = N(mu, L L^T): each z_j is popped given the bins of z_<j; the receiver rebuilds the same conditionals from
    the rows it decoded and pushes them back. Every row exact, the length within 1% of -ELBO."""
    m = ibkit.build_model("vae", digits.input_dim, 4, hidden=(64,), posterior="full")
    ibkit.fit(m, digits.train, epochs=20, progress=False)
    x = digits.test[:150]
    code = bits_back(m, x)
    assert torch.equal(code.decoded, x)
    assert code.per_example.mean().item() == pytest.approx(-E.elbo(m, x, n_samples=64), rel=0.01)


@pytest.fixture(scope="module")
def ladder(digits):
    """A top-down hierarchical VAE (z_1 of 6, z_2 of 3 dimensions) trained 30 epochs on digits."""
    m = ibkit.build_model("hvae", digits.input_dim, 9, latent_dims=(6, 3), hidden=(128, 128), layer_hidden=(32,))
    ibkit.fit(m, digits.train, epochs=30, progress=False)
    return m


def test_a_hierarchical_vae_is_coded_layer_by_layer_from_the_top(ladder, digits):
    """z_2 ~ q(z_2|x) on the bins of p(z_2), then z_1 ~ q(z_1|z_2, x) on the bins of p(z_1|z_2), both at the bins'
    medians: every row exact, and the length is -ELBO (64 samples) to 1%, its rate the two layers' KLs."""
    x = digits.test[:200]
    code = bits_back(ladder, x)
    assert torch.equal(code.decoded, x)
    assert code.per_example.mean().item() == pytest.approx(-E.elbo(ladder, x, n_samples=64), rel=0.01)


def test_a_bottom_up_hierarchy_is_refused_with_the_reason():
    m = ibkit.build_model("hvae", 64, 6, latent_dims=(4, 2), hidden=(16,), inference="bottom_up")
    with pytest.raises(ValueError, match="top-down, as its inference runs; this one infers bottom-up"):
        bits_back(m, (torch.rand(4, 64) > 0.5).float())


def test_blocks_bound_the_expected_search_and_a_search_of_hours_is_refused_up_front():
    """Blocks keep the mean over rows of 2^D, D = log2 max q/p (the candidates a search draws), under
    2^block_bits: one row with 10 bits in a dimension isolates it, though the dimensions' mean (1, 5.5, 1 bits)
    would fit one block. A posterior 9 prior stds out at std 0.001 (D 68 bits in one dimension) is refused with the
    estimate."""
    from ibkit.coding import _blocks, channel_simulation

    assert _blocks(torch.ones(2, 3, dtype=torch.float64), 8.0) == ((0, 1, 2),)
    kl = torch.tensor([[1.0, 10.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    assert _blocks(kl, 8.0) == ((0,), (1,), (2,))
    with pytest.raises(ValueError, match=r"would draw about 2\^\d+ candidates for these rows \(hours"):
        channel_simulation(FixedPosterior([9.0], [0.001]), torch.zeros(4, 3))
