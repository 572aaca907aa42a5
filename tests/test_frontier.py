"""ibkit.frontier: bounds on the rate-distortion function of data from samples, against closed forms."""

import math

import pytest
import torch

from ibkit.frontier import blahut_arimoto


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


def test_a_two_dimensional_gaussian_from_10000_samples_lands_on_its_water_filling_point():
    """Variances (1.2055, 1.0898), lam = 1.5 per unit of summed squared error: theta = 1/3 per dimension, so
    R(D) = 1/2 log(3 * 1.2055) + 1/2 log(3 * 1.0898) = 1.2351 nats at D = 2/3. Blahut-Arimoto on 10,000 samples,
    the samples as reproduction points, lands within 2% of both (an upper bound on the empirical source)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, 2, generator=g, dtype=torch.float64) * torch.tensor([1.2055, 1.0898]).sqrt()
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
