"""ibkit.models.interleave: a constructed cheating code packs d quantised coordinates into one real number, exactly
while d log2(L) fits in the mantissa, and the estimators measure it like any deterministic code."""

import math

import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.models import InterleavedAE, interleave


@pytest.fixture(scope="module")
def ae(digits):
    """A 4-unit deterministic AE trained 20 epochs on digits."""
    m = ibkit.build_model("ae", digits.input_dim, 4, hidden=(64,))
    ibkit.fit(m, digits.train, epochs=20, progress=False)
    return m.eval()


def _exact_rows(packed: InterleavedAE, ae, x) -> float:
    """The fraction of rows whose packed reconstruction equals the quantised 4-unit code's, bit for bit."""
    with torch.no_grad():
        ours = packed.decode(packed.encode(x))
        theirs = ae.decode(packed.quantise(ae.encode(x)))
    return (ours == theirs).all(-1).double().mean().item()


def test_the_packed_code_decodes_as_the_quantised_code_while_its_digits_fit_the_mantissa(ae, digits):
    """float64: d log2 L = 16 and 52 bits, every test row bit for bit; float32: 24 bits exact, and the first
    configuration beyond (28 bits) loses rows."""
    x = digits.test
    for dtype, levels, exact in (("float64", 16, True), ("float64", 2**13, True), ("float32", 2**6, True),
                                 ("float32", 2**7, False)):
        packed = interleave(ae, levels, dtype, x=digits.train)
        assert packed.latent_dim == 1 and packed.encode(x).shape == (len(x), 1)
        assert packed.fits == exact and packed.encode(x).dtype == getattr(torch, dtype)
        share = _exact_rows(packed, ae, x)
        assert share == 1.0 if exact else share < 0.5, (dtype, levels, share)


def test_the_estimators_and_checkpoints_measure_it_like_any_deterministic_code(ae, digits, tmp_path):
    packed = interleave(ae, 16, x=digits.train)
    x = digits.test
    with torch.no_grad():
        quantised = -ae.log_likelihood(x, packed.quantise(ae.encode(x))).mean().item()
    assert E.distortion(packed, x) == pytest.approx(quantised, rel=1e-6)
    with torch.no_grad():
        by_hand = ((x - ae.decode(packed.quantise(ae.encode(x)))) ** 2).sum(-1).mean().item()
    assert E.mse(packed, x) == pytest.approx(by_hand, rel=1e-6)
    assert not ibkit.interface.is_stochastic(packed)
    report = ibkit.analyse(packed, x[:80], k=5, eval_rows=80, iwae_rows=20)
    assert report.row["distortion"] == pytest.approx(E.distortion(packed, x[:80]), rel=1e-6)
    ibkit.save_checkpoint(packed, tmp_path / "packed.pt")
    again = ibkit.load_checkpoint(tmp_path / "packed.pt")
    assert torch.equal(again.encode(x), packed.encode(x)) and torch.equal(again.decode(again.encode(x)),
                                                                         packed.decode(packed.encode(x)))


def _grid_code(d: int, levels: int, rows: torch.Tensor) -> InterleavedAE:
    """A packed code whose d coordinates are the rows themselves (a linear identity encoder on [0, 1]^d)."""
    m = ibkit.build_model("interleaved_ae", d, 1, code_dim=d, levels=levels, hidden=(), likelihood="gaussian")
    with torch.no_grad():
        m.encoder[-1].weight.copy_(torch.eye(d))
        m.encoder[-1].bias.zero_()
        m.low.zero_()
        m.high.fill_(1.0)
    assert torch.equal(m.digits(m.encoder(rows)), (rows * (levels - 1)).round().long())
    return m.eval()


def test_through_a_vanishing_probe_it_carries_min_log_n_and_d_log_l_and_noise_drowns_the_digits():
    """Closed forms on small N. 256 distinct cells of d = 4, L = 16 (d log L = 11.09 > log N = 5.55): at sigma =
    1e-12 InfoNCE reaches log N; each of the 16 cells of d = 2, L = 4 held by 8 of N = 128 rows: it reaches d log L
    = 2.77, not log N = 4.85. At sigma = e^-(log N - 3) of the code's range [0, 1), at least 1 nat below log N."""
    g = torch.Generator().manual_seed(0)
    cells = torch.randperm(16**4, generator=g)[:256]
    digits = torch.stack([(cells // 16 ** (3 - i)) % 16 for i in range(4)], dim=-1)
    rows = digits.float() / 15
    wide = _grid_code(4, 16, rows)
    log_n = math.log(256)
    tight = E.probe_curve(wide, rows, sigmas=[1e-12, math.exp(-(log_n - 3))])
    assert tight["infonce"].iloc[0] == pytest.approx(log_n, abs=max(3 * tight["infonce_se"].iloc[0], 1e-6))
    assert tight["infonce"].iloc[1] < log_n - 1
    few = torch.stack([torch.arange(16) // 4, torch.arange(16) % 4], dim=-1).repeat(8, 1).float() / 3
    narrow = _grid_code(2, 4, few)
    curve = E.probe_curve(narrow, few, sigmas=[1e-12])
    assert curve["infonce"].iloc[0] == pytest.approx(2 * math.log(4), abs=max(3 * curve["infonce_se"].iloc[0], 1e-6))


def test_what_it_cannot_pack_is_refused(digits):
    vae = ibkit.build_model("vae", digits.input_dim, 4, hidden=(16,))
    with pytest.raises(ValueError, match="interleave wraps a deterministic ibkit autoencoder"):
        interleave(vae, 16)
    with pytest.raises(ValueError, match="latent_dim=2 must be 1"):
        ibkit.build_model("interleaved_ae", 64, 2, code_dim=4)
    with pytest.raises(ValueError, match="dtype='float16'"):
        ibkit.build_model("interleaved_ae", 64, 1, code_dim=4, dtype="float16")


def test_a_periodic_decoder_trains_and_the_folds_of_a_decoder_are_counted(digits, ae):
    """A packed code of d = 2, L = 8 visits its cells in raster order along z: the second coordinate cycles 8
    times, so the line returns to rows it has visited (more segments than distinct nearest rows) and has more
    segments than the 8 levels of one coordinate. A periodic decoder (Fourier or sawtooth features) trains."""
    two = ibkit.build_model("ae", digits.input_dim, 2, hidden=(64,))
    ibkit.fit(two, digits.train, epochs=10, progress=False)
    packed = interleave(two, 8, x=digits.train)
    folds = E.decoder_folds(packed, digits.train, grid=2048)
    assert folds["segments"] > max(folds["distinct"], 8) and folds["grid"] == 2048
    with pytest.raises(ValueError, match="reads a one-unit code; this model's has 4 units"):
        E.decoder_folds(ae, digits.train)
    for features in ("fourier", "sawtooth"):
        m = ibkit.build_model("periodic_ae", digits.input_dim, 1, hidden=(32,), features=features, frequencies=4)
        before = E.distortion(m, digits.test)
        ibkit.fit(m, digits.train, epochs=5, progress=False)
        assert E.distortion(m, digits.test) < before
        assert m.decoder[0].omega.shape == (1, 4) and m.decoder[0].omega.grad is not None  # learned frequencies
