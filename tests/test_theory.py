"""Closed forms of ibkit.theory: Shannon's rate-distortion function of a Gaussian source."""

import math

import pytest

from ibkit.theory import active_directions, gaussian_rd, gaussian_rd_curve, vae_water_level

SPECTRUM = (4, 2, 1, 0.5, 0.25, 0.25, 0.25, 0.25)
# issue 6: beta -> (rate = I in nats, MSE per example, active units) at latent_dim 4, scale^2 = 0.25
TABLE = {0.5: (4.8520, 1.5, 4), 1: (3.4657, 2.0, 4), 3: (1.4712, 3.75, 3), 6: (0.6343, 5.5, 2), 12: (0.1438, 7.5, 1)}


@pytest.mark.parametrize("beta", sorted(TABLE))
def test_reverse_water_filling_reproduces_the_beta_vae_table(beta):
    rate, mse, active = TABLE[beta]
    theta = vae_water_level(beta, 0.5)
    assert theta == pytest.approx(beta * 0.25)
    got_rate, got_mse = gaussian_rd(SPECTRUM, theta, max_dims=4)
    assert got_rate == pytest.approx(rate, abs=1e-4) and got_mse == pytest.approx(mse, abs=1e-4)
    assert active_directions(SPECTRUM, theta, max_dims=4) == active


def test_four_latents_bind_at_low_theta_above_the_unconstrained_curve():
    rate, mse = gaussian_rd(SPECTRUM, 0.125, max_dims=4)
    free = gaussian_rd(SPECTRUM, 0.125)
    assert mse == 1.5 and free[1] == 1.0 and free[0] > rate
    # the unconstrained curve at D = 1.5: theta = 0.1875 over all eight directions gives R(1.5) = 4.617
    r, d = gaussian_rd(SPECTRUM, 0.1875)
    assert d == pytest.approx(1.5) and r == pytest.approx(4.617, abs=1e-3)


def test_curve_is_monotone_and_ends_at_zero_rate_and_full_variance():
    curve = gaussian_rd_curve(SPECTRUM, n=50)
    assert curve["mse"].is_monotonic_increasing and curve["rate"].is_monotonic_decreasing
    assert curve["rate"].iloc[-1] == 0 and curve["mse"].iloc[-1] == pytest.approx(sum(SPECTRUM))
    # slope dR/dD = -1/(2 theta) (Cover & Thomas 2006, sec. 10.3.3), checked by finite differences
    i = 20
    slope = (curve["rate"][i + 1] - curve["rate"][i - 1]) / (curve["mse"][i + 1] - curve["mse"][i - 1])
    assert slope == pytest.approx(-1 / (2 * curve["theta"][i]), rel=0.02)


@pytest.mark.parametrize("call,message", [
    (lambda: gaussian_rd((1, 0), 0.5), "eigenvalues=.* positive finite"),
    (lambda: gaussian_rd((1, math.inf), 0.5), "eigenvalues=.* positive finite"),
    (lambda: gaussian_rd("ab", 0.5), "eigenvalues='ab'"),
    (lambda: gaussian_rd((1, 2), 0), "theta=0"),
    (lambda: gaussian_rd((1, 2), -1.0), "theta=-1.0"),
    (lambda: vae_water_level(1.0, 0), "scale=0"),
    (lambda: gaussian_rd((1, 2), 0.5, max_dims=0), "max_dims=0"),
])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_rate_at_a_distortion_inverts_the_curve():
    from ibkit.theory import gaussian_rate_at

    for theta in (0.1, 0.3, 0.75, 2.5):
        rate, mse = gaussian_rd(SPECTRUM, theta)
        assert gaussian_rate_at(SPECTRUM, mse) == pytest.approx(rate, abs=1e-9)
    assert gaussian_rate_at(SPECTRUM, 1.5) == pytest.approx(4.617, abs=1e-3)  # the R(1.5)
    assert gaussian_rate_at(SPECTRUM, sum(SPECTRUM)) == 0.0
    assert gaussian_rate_at(SPECTRUM, 0.9, max_dims=4) == math.inf  # below the 1.0 four latents must leave
