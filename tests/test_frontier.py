"""ibkit.frontier: bounds on the rate-distortion function of data from samples, against closed forms."""

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ibkit.frontier import Sandwich, blahut_arimoto, estimate, frontier_at, lower, upper
from ibkit.theory import gaussian_rate_at, gaussian_rd


def binary_entropy(p: float) -> float:
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


@pytest.mark.parametrize("lam", [0.5, 2.0, 5.0])
def test_a_fair_coin_under_hamming_distortion_is_log_2_minus_h_of_d(lam):
    """Two equiprobable points 0 and 1 (squared error = Hamming distortion): R(D) = log 2 - h(D), and the slope
    lam is met at D = 1 / (1 + e^lam) (Cover & Thomas 2006, thm. 10.3.1)."""
    point = blahut_arimoto(torch.tensor([[0.0], [1.0]]), lam, tol=1e-12)
    d = 1 / (1 + math.exp(lam))
    assert point.distortion == pytest.approx(d, rel=1e-8)
    assert point.rate == pytest.approx(math.log(2) - binary_entropy(d), rel=1e-8, abs=1e-12)
    assert point.lagrangian == pytest.approx(point.rate + lam * point.distortion, rel=1e-12)


def test_a_two_dimensional_gaussian_from_4000_samples_lands_on_its_water_filling_point():
    """Variances (1.2055, 1.0898), lam = 1.5 per unit of summed squared error: theta = 1/3 per dimension, so
    R(D) = 1/2 log(3 * 1.2055) + 1/2 log(3 * 1.0898) = 1.2351 nats at D = 2/3. Blahut-Arimoto on 4,000 samples,
    the samples as reproduction points, lands within 2% of both (an upper bound on the empirical source)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4_000, 2, generator=g, dtype=torch.float64) * torch.tensor([1.2055, 1.0898]).sqrt()
    point = blahut_arimoto(x, 1.5, max_iter=25)
    rate = 0.5 * math.log(3 * 1.2055) + 0.5 * math.log(3 * 1.0898)
    assert rate == pytest.approx(1.2351, abs=1e-4)
    assert point.rate == pytest.approx(rate, rel=0.02) and point.distortion == pytest.approx(2 / 3, rel=0.02)
    assert point.rate <= math.log(len(x)) and point.iterations == 25 and 0 < point.change < 1e-3


def test_the_memory_budget_is_kept_or_refused_up_front():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    small = blahut_arimoto(x, 1.0, max_iter=40, memory_budget=4 * 8 * 50)  # one row per block, costs recomputed
    large = blahut_arimoto(x, 1.0, max_iter=40)  # the costs kept
    assert small.rate == pytest.approx(large.rate, rel=1e-6) and small.iterations == large.iterations
    with pytest.raises(ValueError, match="cannot hold one row of the .N, M. = .50, 50. cost matrix"):
        blahut_arimoto(x, 1.0, memory_budget=100)
    with pytest.raises(ValueError, match="lam=0"):
        blahut_arimoto(x, 0.0)


def decaying_gaussian(n: int, seed: int) -> torch.Tensor:
    """NERD's first Gaussian source: 20 independent coordinates of standard deviation 2 exp(-0.25 i)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 20, generator=g) * (2 * torch.exp(-0.25 * torch.arange(20.0)))


SPECTRUM = (4 * torch.exp(-0.5 * torch.arange(20.0))).tolist()


@pytest.fixture(scope="module")
def twenty_dimensional():
    """Wasserstein gradient descent at three slopes on 50,000 rows of the 20-D source, scored on 10,000 held out."""
    return upper(decaying_gaussian(50_000, 0), [0.5, 1.0, 2.0], held_out=decaying_gaussian(10_000, 1), seed=0)


def test_wasserstein_gradient_descent_is_within_5_percent_of_water_filling_in_20_dimensions(twenty_dimensional):
    """Held out, each point's rate is within 5% of Shannon's R at its distortion (reverse water-filling), and
    above it up to its interval: an upper bound, and a tight one."""
    held_out = [b for b in twenty_dimensional if b.split == "test"]
    assert [b.lam for b in held_out] == [0.5, 1.0, 2.0]
    for b in held_out:
        truth = gaussian_rate_at(SPECTRUM, b.distortion)
        assert b.rate_high >= truth and b.rate == pytest.approx(truth, rel=0.05), (b, truth)
        assert b.rate_low <= b.rate <= b.rate_high and b.distortion_low <= b.distortion <= b.distortion_high
        assert b.particles == 1024 and b.steps == 400


def test_blahut_arimoto_on_the_samples_is_far_looser_in_20_dimensions(twenty_dimensional):
    """With the rows as its alphabet Blahut-Arimoto can only name rows, noisy points far apart in 20 dimensions:
    scored on held-out rows (a bound on the true source) it is further above R(D) than the particles at every
    slope. On its own rows it bounds their empirical source only, which lies below the true R(D) at small D."""
    table = estimate(decaying_gaussian(3000, 0), [0.5, 1.0, 2.0], methods=("blahut_arimoto",),
                     held_out=decaying_gaussian(3000, 1), options={"blahut_arimoto": dict(max_iter=30)})
    excess = {(r["split"], r["lambda"]): r["rate"] - gaussian_rate_at(SPECTRUM, r["distortion"])
              for _, r in table.iterrows()}
    for b in twenty_dimensional:
        if b.split == "test":
            assert excess["test", b.lam] > 2 * (b.rate - gaussian_rate_at(SPECTRUM, b.distortion)) + 0.05, b
    assert excess["train", 2.0] < -1  # the empirical source of 4,000 rows: far below the true R(D)
    assert (table["rate"] <= math.log(3000)).all() and list(table["split"]) == ["train", "test"] * 3


def test_upper_refuses_an_unknown_method_and_bad_rows():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="method='nerd' is not known; choose one of: wgd"):
        upper(x, 1.0, method="nerd")
    with pytest.raises(ValueError, match="held_out has width 2 but x has width 3"):
        upper(x, 1.0, held_out=torch.randn(5, 2))
    with pytest.raises(ValueError, match="lambdas=-1.0 must be > 0"):
        upper(x, [1.0, -1.0])


def small_table() -> pd.DataFrame:
    """Upper points (D, R) = (1, 3), (3, 1), (5, 0) and one lower line 4 - D, on the test split."""
    rows = [dict(method="m", side="upper", split="test", distortion=d, rate=r) for d, r in ((1, 3), (3, 1), (5, 0))]
    rows.append(dict(method="sandwich", side="lower", split="test", intercept_low=4.0, **{"lambda": 1.0}))
    rows.append(dict(method="m", side="upper", split="train", distortion=0.1, rate=0.0))  # another split: unused
    return pd.DataFrame(rows)


def test_frontier_at_takes_the_least_achievable_rate_and_the_highest_lower_line():
    """The upper envelope mixes two points that straddle D (time-sharing) or takes one at lower distortion; below
    every point it is unknown (inf). The lower bound is the line at the low end of its interval, at least 0."""
    lower_bound, upper_bound = frontier_at(small_table(), [0.5, 2.0, 4.0, 6.0], split="test")
    assert upper_bound.tolist() == [math.inf, 2.0, 0.5, 0.0]
    assert lower_bound.tolist() == [3.5, 2.0, 0.0, 0.0]
    crossing = pd.concat([small_table(), pd.DataFrame([dict(side="lower", split="test", intercept_low=5.0,
                                                             **{"lambda": 1.0})])])
    lower_bound, _ = frontier_at(crossing, [2.0, 4.0], split="test")
    assert lower_bound.tolist() == [2.0, 0.5]  # a line above an achievable point is cut to it: never inverted
    _, with_model = frontier_at(small_table(), [2.0], split="test", achieved=[(2.0, 1.0)])
    assert with_model.tolist() == [1.0]  # a model is an achievable point too


@pytest.mark.parametrize("cut", [0.0, 1.0])
def test_frontier_at_never_puts_the_lower_bound_above_an_achievable_point_of_a_gaussian(cut):
    """On the closed-form R(D) of a 2-D Gaussian: achievable points on the curve and tangent lines below it give a
    band that holds the curve at every distortion."""
    spectrum = [1.2055, 1.0898]
    thetas = [0.1, 0.3, 0.6, 1.0]
    ups = [dict(method="m", side="upper", split="test", rate=r, distortion=d)
           for r, d in (gaussian_rd(spectrum, t) for t in thetas)]
    lows = [dict(method="sandwich", side="lower", split="test", intercept_low=r + d / (2 * t) - cut,
                 **{"lambda": 1 / (2 * t)}) for t, (r, d) in zip(thetas, (gaussian_rd(spectrum, t) for t in thetas),
                                                                   strict=True)]
    d = np.linspace(0.25, 2.2, 50)
    lower_bound, upper_bound = frontier_at(pd.DataFrame(ups + lows), d)
    truth = np.array([gaussian_rate_at(spectrum, v) for v in d])
    assert (lower_bound <= truth + 1e-9).all() and (truth <= upper_bound + 1e-9).all()


# The sandwich lower bound (Yang & Mandt 2022)

VARIANCES = np.array([1.2055, 1.0898])  # the paper's demo source; both above the water level 1/3
LAM = 1.5  # ours (summed squared error) = RD-sandwich's 3 (mean over the 2 dimensions)
TRUE_INTERCEPT = 2.2351  # R(D) + lam D = 1.2351 + 1.5 * 0.6667 nats (reverse water-filling, theta = 1/3)
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


def gaussian(n: int, seed: int) -> np.ndarray:
    """[n, 2] rows of N(0, diag(VARIANCES))."""
    return np.random.default_rng(seed).standard_normal((n, 2)) * np.sqrt(VARIANCES)


def test_the_sandwich_lower_bound_on_a_2d_gaussian_is_valid_and_within_015_nats():
    x, held_out = gaussian(10_000, 1), gaussian(6 * 4096, 2)
    train, test = lower(x, LAM, held_out=held_out, k=4096, steps=400, seed=0)
    assert (train.split, test.split) == ("train", "test") and test.batches == 6 and test.k == 4096
    assert test.intercept_low <= test.intercept <= test.intercept_high
    assert test.intercept_low <= TRUE_INTERCEPT  # valid within its interval
    assert test.intercept >= TRUE_INTERCEPT - 0.15  # and tight
    assert test.rate_at(0.6667) == pytest.approx(test.intercept - LAM * 0.6667)
    assert test.rate_at(100.0) == 0.0


@pytest.mark.parametrize("hidden", [(64, 64), ()])
def test_an_unfitted_u_still_gives_a_valid_lower_bound(hidden):
    x, held_out = gaussian(10_000, 3), gaussian(10_000, 4)
    for bound in lower(x, LAM, held_out=held_out, steps=0, hidden=hidden, seed=1):
        assert math.isfinite(bound.intercept)
        assert bound.intercept_high < TRUE_INTERCEPT


def test_no_sandwich_batch_exceeds_log_k():
    """xi <= mean(-log u) - log C_k <= log k, since C_k >= (1/k) max_i 1/u(x_i): the bound's ceiling."""
    # steep slopes, where each row is nearly its own cluster and ell climbs toward log k (lam 1000: ~4.9 of 5.55)
    for bound in lower(gaussian(2_000, 5), [10.0, 1000.0], held_out=gaussian(2_000, 6), k=256, steps=20, seed=0):
        assert bound.intercept_high <= math.log(256) + 1e-4


def test_lower_is_deterministic_and_leaves_the_global_rng_alone():
    x, held_out = gaussian(1_000, 7), gaussian(1_000, 8)
    state = torch.get_rng_state()
    first = lower(x, [0.5, LAM], held_out=held_out, k=128, steps=10, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert first == lower(x, [0.5, LAM], held_out=held_out, k=128, steps=10, seed=3)
    assert [(b.lam, b.split) for b in first] == [(0.5, "train"), (0.5, "test"), (LAM, "train"), (LAM, "test")]
    assert all(isinstance(b, Sandwich) for b in first)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lambdas=0.0), r"lambdas=0.0 must be > 0"),
    (dict(lambdas=[1.0, -1.0]), r"lambdas=-1.0 must be > 0"),
    (dict(lambdas=[]), r"lambdas=\[\] must hold at least one slope"),
    (dict(k=1), r"k=1 must be >= 2"),
    (dict(k=2.5), r"k=2.5 must be an integer"),
    (dict(steps=-1), r"steps=-1 must be >= 0"),
    (dict(hidden=(64, 0)), r"hidden=\(64, 0\) must be a tuple of widths >= 1"),
    (dict(held_out=np.zeros((10, 3))), r"held_out has width 3 but x has width 2"),
    (dict(held_out=np.zeros((3, 2))), r"held_out has 3 rows"),
    (dict(x=np.zeros(10)), r"x must have shape \[N, D\]"),
    (dict(x=np.full((10, 2), np.nan)), r"x contains NaN or inf"),
])
def test_lower_refuses_bad_input(kwargs, match):
    args = dict(x=gaussian(100, 9), lambdas=LAM) | kwargs
    with pytest.raises(ValueError, match=match):
        lower(args.pop("x"), args.pop("lambdas"), steps=args.pop("steps", 0), **args)


def mnist_rows(n: int) -> np.ndarray:
    """[n, 784] MNIST t10k pixels in [0, 1]; skips where the shared data are absent."""
    if not MNIST.exists():
        pytest.skip(f"the MNIST test set is not at {MNIST}")
    pixels = np.frombuffer(gzip.decompress(MNIST.read_bytes()), np.uint8, offset=16)
    return pixels.reshape(-1, 784)[:n].astype(np.float32) / 255


def test_the_sandwich_bound_runs_at_mnist_scale_and_stays_below_log_k():
    rows = mnist_rows(2_000)
    bounds = lower(rows[:1_000], [0.01, 0.1, 1.0], held_out=rows[1_000:], k=256, steps=30, seed=0)
    assert [(b.lam, b.split) for b in bounds] == [(lam, s) for lam in (0.01, 0.1, 1.0) for s in ("train", "test")]
    for b in bounds:
        values = (b.intercept, b.intercept_low, b.intercept_high, b.log_alpha)
        assert all(math.isfinite(v) for v in values), b
        assert b.intercept_low <= b.intercept <= b.intercept_high
        assert b.intercept <= math.log(256) + 1e-4  # the ceiling: nearly trivial at high intrinsic dimension
        assert 0.0 <= b.rate_at(40.0) <= b.rate_at(20.0)


RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize("folder", ["rate_distortion_mse", "rate_distortion_mnist_mse"])
def test_a_committed_frontier_obeys_its_inequalities(folder):
    """The references: Blahut-Arimoto at every slope, each rate at most log N of its rows; every interval in
    order, no upper rate below 0, each sandwich intercept at most log k; and on the training split every
    Gaussian-decoder VAE at or above the upper envelope, at most as far above it as above the lower bound."""
    table = pd.read_csv(RESULTS / folder / "frontier.csv")
    runs = pd.read_csv(RESULTS / folder / "runs.csv")
    ba = table[table["method"] == "blahut_arimoto"]
    assert ba["lambda"].nunique() == 8 and set(ba["split"]) == {"train", "test"}
    fitted = ba[ba["split"] == "train"]
    assert (fitted["rate"] <= np.log(fitted["rows"])).all()  # the empirical source's entropy
    ups, lows = table[table["side"] == "upper"], table[table["side"] == "lower"]
    assert (ups["rate"] >= 0).all() and (ups["rate_low"] <= ups["rate_high"]).all()
    assert (lows["intercept_low"] <= lows["intercept"]).all() and (lows["intercept"] <= lows["intercept_high"]).all()
    assert (lows["intercept"] <= np.log(lows["note"].str.extract(r"k = (\d+)")[0].astype(float)) + 1e-6).all()
    vaes = runs[(runs["kind"] == "vae") & (runs["split"] == "train")]
    assert len(vaes) == 24 and (vaes["rate_above_upper_envelope"] >= 0).all()
    assert (vaes["rate_above_lower_bound"] >= vaes["rate_above_upper_envelope"]).all()
