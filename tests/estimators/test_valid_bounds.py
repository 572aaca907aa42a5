"""Every reported bound obeys the inequality it stands for: I(Z;Y) <= I(X;Z) <= R, no negative upper bound, and
no probe bound above the Gaussian channel's capacity under the code's measured covariance."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import Independent, Normal

import ibkit
from ibkit import estimators as E
from ibkit.estimators.information import tightest_upper
from ibkit.theory import covariance_capacity, gaussian_channel_capacity

RESULTS = Path(__file__).resolve().parents[2] / "results"


class MeanCode:
    """q(z|x) = N(scale * x, s^2 I) on x [N, d]; prior N(0, I). Its rate is E ||scale x||^2 / 2 + d (s^2 - 1 -
    log s^2) / 2 in closed form."""

    def __init__(self, scale: float, s: float):
        self.scale, self.s = scale, s

    def posterior(self, x):
        mean = self.scale * x
        return Independent(Normal(mean, torch.full_like(mean, self.s)), 1)

    def prior(self):
        return Independent(Normal(torch.zeros(10), torch.ones(10)), 1)


class Code:
    """A deterministic code z = f(x)."""

    def __init__(self, f):
        self.f = f

    def encode(self, x):
        return self.f(x)


def labelled_rows(n=600, seed=7):
    """x [n, 10]: the one-hot class of y (10 classes) plus a little noise, and y."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(10, (n,), generator=g)
    return torch.nn.functional.one_hot(y, 10).float() + 0.01 * torch.randn(n, 10, generator=g), y


def test_tightest_upper_drops_a_negative_estimate_and_says_so():
    assert tightest_upper({"leave-one-out": (2.0, 0.1), "rate": (3.0, 0.2)}) == (2.0, 0.1, "")
    value, se, note = tightest_upper({"leave-one-out": (-1.9e-5, 1e-3), "rate": (4e-5, 1e-6)})
    assert (value, se) == (4e-5, 1e-6)
    assert note == "rate: the leave-one-out estimate -1.9e-05 is below 0 (Monte Carlo noise)"
    value, se, note = tightest_upper({"leave-one-out": (-0.5, 0.1), "rate": (math.nan, math.nan)})
    assert value == math.inf and math.isnan(se) and note.startswith("no certified upper bound")


def test_a_collapsed_code_keeps_no_label_information_though_its_means_move():
    """q(z|x) = N(1e-3 x, I): the means tell the class apart perfectly (a means-based estimate reads 0.33 nats per
    dimension and accuracy 1), but the rate is 5e-7 nats, so the drawn code keeps at most that much of the label."""
    x, y = labelled_rows()
    collapsed = MeanCode(1e-3, 1.0)
    r = E.rate(collapsed, x)
    assert r == pytest.approx(0.5 * 1e-6 * float(x.pow(2).sum(1).mean()), rel=0.05)  # float32 KL
    info = E.label_information(collapsed, x, y)
    assert info["mi_noise"] > 0 and info["mi_per_dim"].max() <= r + info["mi_noise"]
    assert info["accuracy"] <= info["chance"] + 0.1
    # the same means with little noise: each dimension tells one class from the rest, H(Bernoulli(1/10)) = 0.33
    informative = E.label_information(MeanCode(3.0, 0.01), x, y)
    assert (informative["mi_per_dim"] > 0.2).all() and informative["accuracy"] == 1.0
    assert informative["mi_per_dim"].min() > 3 * informative["mi_noise"]


def test_a_trained_collapsed_vae_keeps_at_most_its_rate_of_the_label(digits, tiny_vae):
    vae = tiny_vae(input_dim=digits.input_dim, latent_dim=8, hidden=(32,), beta=20.0)
    ibkit.fit(vae, digits.train, epochs=4, seed=0, progress=False)
    r = E.rate(vae, digits.test)
    assert r < 0.05 and E.active_units(vae, digits.test) == 0  # collapsed
    info = E.label_information(vae, digits.test, digits.test_labels)
    assert info["mi_per_dim"].max() <= r + info["mi_noise"]
    assert info["accuracy"] <= info["chance"] + 0.1


def test_a_negative_leave_one_out_estimate_is_no_upper_bound():
    """A code with I ~ 5e-7 nats: its LOO estimate falls below 0 in about half the seeds; the bracket's upper end
    is then the rate, never the negative number, and the note says why."""
    x, _ = labelled_rows(400)
    model = MeanCode(1e-3, 1.0)
    brackets = [E.information_bracket(model, x, seed=s) for s in range(8)]
    negative = [b for b in brackets if b["loo"] < 0]
    assert negative, "no seed gave a negative LOO estimate: the case is not exercised"
    for b in brackets:
        assert b["mi_upper"] >= 0
    for b in negative:
        assert b["mi_upper"] == pytest.approx(E.rate(model, x)) and "below 0" in b["mi_upper_note"]


def test_probe_capacity_is_the_gaussian_channel_information_of_a_gaussian_code():
    """Identity code on X ~ N(0, C): I(X; X + sigma eps) = 1/2 log det(I + C / sigma^2) exactly, and the capacity
    under the rows' covariance is that, up to the covariance's sampling error; InfoNCE lies below it."""
    g = torch.Generator().manual_seed(123)  # not the estimator's seed 0: its noise would repeat the data's draws
    cov = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    x = torch.randn(2000, 3, generator=g) @ torch.linalg.cholesky(cov).T
    b = E.mi_bounds(E.probe(Code(lambda v: v), 0.5), x)
    empirical = torch.cov(x.double().T, correction=0)
    assert b["capacity"] == pytest.approx(covariance_capacity(empirical, 0.5), rel=1e-9)
    true = 0.5 * float(torch.logdet(torch.eye(3) + cov.double() / 0.25))
    assert b["capacity"] == pytest.approx(true, abs=0.05)
    assert b["infonce"] - 3 * b["infonce_se"] <= b["capacity"]
    # Hadamard and Jensen: at most d/2 log(1 + P / sigma^2), P the mean power per dimension
    assert b["capacity"] <= gaussian_channel_capacity(3, 0.5, power=float(empirical.trace()) / 3)


def test_every_probe_bound_of_a_deterministic_code_is_at_most_the_capacity_bound(digits):
    ae = ibkit.build_model("ae", digits.input_dim, 8, hidden=(32,))
    ibkit.fit(ae, digits.train, epochs=3, seed=0, progress=False)
    x = digits.test
    codes = ae.encode(x).detach().double()
    power = float(codes.var(0, unbiased=False).sum()) / 8
    curve = E.probe_curve(ae, x, [1.0, 1e-2, 1e-4])
    bound = [gaussian_channel_capacity(8, s, power=power) for s in curve["sigma"]]
    assert (curve["upper"] <= np.array(bound) * (1 + 1e-9)).all()
    assert (curve["upper"] <= curve["capacity"]).all() and (curve["upper"] >= 0).all()
    assert curve["loo"].iloc[-1] > 1e3 * curve["upper"].iloc[-1]  # LOO at sigma = 1e-4: valid, and useless
    assert (curve["upper"] >= curve["infonce"] - 3 * curve["infonce_se"]).all()
    b = E.information_bracket(ae, x, probe_sigma=1e-4)
    assert b["mi_upper"] == math.inf and b["probe_upper"] == pytest.approx(curve["upper"].iloc[-1])
    assert b["probe_upper"] <= bound[-1]


def test_no_committed_upper_bound_is_negative_or_above_a_probe_capacity():
    tables = sorted(RESULTS.glob("*/runs.csv")) + sorted(RESULTS.glob("*/layers.csv"))
    assert tables
    for path in tables:
        t = pd.read_csv(path)
        if "mi_upper" in t:
            assert not (t["mi_upper"] < 0).any(), f"{path}: a negative mi_upper"
    for path in sorted(RESULTS.glob("*/probe_curve.csv")):
        t = pd.read_csv(path)
        assert "upper" in t and (t["upper"] <= t["capacity"]).all() and (t["upper"] >= 0).all(), path


def test_code_covariance_is_the_law_of_total_covariance():
    """q(z|x) = N(2 x, 0.3^2 I): Cov[Z] = 4 Cov(x) + 0.09 I over the rows (denominator N); a deterministic code's is
    the covariance of its codes."""
    x, _ = labelled_rows(300)
    empirical = torch.cov(x.double().T, correction=0)
    assert torch.allclose(E.code_covariance(MeanCode(2.0, 0.3), x), 4 * empirical + 0.09 * torch.eye(10), atol=1e-5)
    assert torch.allclose(E.code_covariance(Code(lambda v: 2 * v), x), 4 * empirical, atol=1e-5)
