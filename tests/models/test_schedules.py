"""KL schedules (``ibkit.models.schedules``): warm-up, capacity target, free bits and aggressive training, each
checked against what its paper specifies, on the loss's algebra and on trained digits VAEs."""

import pytest
import torch

import ibkit
from ibkit import estimators as E
from ibkit.config import RunSpec
from ibkit.models.schedules import free_bits_rate, rate_penalty
from ibkit.train import train_step


def test_free_bits_count_a_group_below_its_floor_as_the_floor_and_pass_no_gradient_through_it():
    terms = torch.tensor([[0.1, 2.0, 0.3], [0.3, 4.0, 0.1]], requires_grad=True)  # [N=2, G=3]: means 0.2, 3, 0.2
    floors = torch.tensor([0.5, 0.5, 0.1])
    clipped = free_bits_rate(terms, floors)
    assert clipped.mean().item() == pytest.approx(0.5 + 3.0 + 0.2)  # sum_g max(mean_g, floor_g)
    clipped.mean().backward()
    torch.testing.assert_close(terms.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))
    stacked = torch.stack([terms.detach(), 2 * terms.detach()])  # [K=2, N, G] with floors [K, 1, G]
    per_model = torch.stack([floors, torch.zeros(3)]).unsqueeze(1)
    means = free_bits_rate(stacked, per_model).mean(-1)
    torch.testing.assert_close(means, torch.tensor([3.7, 6.8]))  # a floor of 0 clips nothing


def test_a_capacity_target_is_the_batch_mean_objective():
    """gamma |mean R - C_t| in value and gradient (not pythae's per-example gamma mean |R_n - C_t|), C_t rising
    linearly over capacity_epochs; with no capacity the penalty is beta_t R with the warm-up's beta_t."""
    rate = torch.tensor([1.0, 6.0, 2.0], requires_grad=True)  # mean 3
    knobs = dict(beta=torch.tensor(1.0), warmup_epochs=torch.tensor(0.0), gamma=torch.tensor(10.0),
                 capacity_epochs=torch.tensor(4.0))
    penalty = rate_penalty(rate, progress=torch.tensor(2.0), capacity=torch.tensor(8.0), **knobs)  # C_t = 4
    assert penalty.mean().item() == pytest.approx(10.0 * abs(3.0 - 4.0))
    penalty.mean().backward()
    torch.testing.assert_close(rate.grad, torch.full((3,), -10.0 / 3))  # d/dR_n of 10 |mean R - 4|
    warm = rate_penalty(rate.detach(), progress=torch.tensor(1.0), capacity=torch.tensor(float("nan")),
                        **{**knobs, "beta": torch.tensor(2.0), "warmup_epochs": torch.tensor(4.0)})
    torch.testing.assert_close(warm, 2.0 * 0.25 * rate.detach())


def test_schedule_configs_refuse_what_they_cannot_mean_and_name_runs_by_what_is_set(tiny_vae):
    with pytest.raises(ValueError, match=r"beta=4.0 with capacity=4.0: a capacity target replaces beta"):
        tiny_vae(input_dim=8, latent_dim=2, beta=4.0, capacity=4.0)
    with pytest.raises(ValueError, match="free_bits=-0.1"):
        tiny_vae(input_dim=8, latent_dim=2, free_bits=-0.1)
    assert RunSpec("vae", dict(latent_dim=8, beta=4.0, free_bits=0.5), 1).run_id == "vae-d8-beta4.0-freebits0.5-seed1"
    assert RunSpec("vae", dict(latent_dim=8, beta=4.0), 1).run_id == "vae-d8-beta4.0-seed1"


@pytest.fixture(scope="module")
def scheduled(digits, tiny_vae):
    """Digits VAEs (d = 8) trained as one fit_many batch for 30 epochs: plain beta = 4, beta = 4 with free bits
    (0.5 nats per unit: floor 4 nats), a capacity of 4 nats reached at epoch 20, and beta = 1 warmed up over 10
    epochs."""
    settings = [dict(beta=4.0), dict(beta=4.0, free_bits=0.5), dict(capacity=4.0, capacity_epochs=20.0),
                dict(warmup_epochs=10.0)]
    models = [tiny_vae(input_dim=digits.input_dim, latent_dim=8, hidden=(64,), seed=0, **s) for s in settings]
    histories = ibkit.fit_many(models, digits.train, epochs=30, seed=0, progress=False)
    return models, histories


def test_free_bits_keep_a_beta_4_vae_from_collapsing(scheduled, digits):
    (plain, free, _, _), (h_plain, h_free, _, _) = scheduled
    assert E.rate(plain, digits.test) < 1.0  # beta = 4 alone collapses
    assert E.rate(free, digits.test) > 2.5
    assert (h_free["trained_rate"] >= 4.0 - 1e-4).all()  # the loss saw at least the floor, 8 x 0.5 nats
    assert (h_free["rate"] < h_free["trained_rate"]).any()  # and the history the true rate, below it early on
    torch.testing.assert_close(torch.tensor(h_plain["trained_rate"].values), torch.tensor(h_plain["rate"].values))


def test_a_capacity_of_4_nats_lands_within_15_percent(scheduled, digits):
    (_, _, capped, _), (_, _, history, _) = scheduled
    assert E.rate(capped, digits.test) == pytest.approx(4.0, rel=0.15)
    used = history["capacity_used"].values
    assert used[0] < 0.2 and used[19] == pytest.approx(4.0 * 19.5 / 20, rel=0.02) and (used[20:] == 4.0).all()
    assert history["beta_used"].isna().all()  # a capacity target replaces beta


def test_the_warm_up_is_visible_in_the_history(scheduled):
    *_, warm = scheduled[1]
    beta = warm["beta_used"].values  # epoch e's mean beta_t over its steps: about (e - 1/2) / 10
    assert beta[0] < 0.1 and (beta[1:10] > beta[:9]).all() and (beta[10:] == 1.0).all()
    assert beta[4] == pytest.approx(0.45, abs=0.01)


def test_a_scheduled_model_trains_alike_alone_and_in_a_batch(scheduled, digits, tiny_vae):
    """fit_many stacks the schedules' knobs like any other: the free-bits VAE trained alone ends where it did."""
    alone = tiny_vae(input_dim=digits.input_dim, latent_dim=8, hidden=(64,), seed=0, beta=4.0, free_bits=0.5)
    history = ibkit.fit(alone, digits.train, epochs=30, seed=0, progress=False)
    assert history["rate"].iloc[-1] == pytest.approx(scheduled[1][1]["rate"].iloc[-1], abs=0.02)


def test_a_step_can_keep_a_part_of_the_model_and_its_adam_moments_still(tiny_vae):
    x = (torch.rand(32, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    m = tiny_vae(input_dim=12, latent_dim=2, hidden=(8,), seed=0)
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-2)
    decoder = list(m.decoder.parameters())
    decoder[-1].requires_grad_(False)  # a part frozen before (trainable="encoder", say) stays frozen after the step
    before = [p.detach().clone() for p in decoder]
    train_step(m, optimizer, x, None, frozen=decoder)
    assert all(torch.equal(p, b) for p, b in zip(decoder, before, strict=True))
    assert [p.requires_grad for p in decoder] == [True] * (len(decoder) - 1) + [False]
    assert all(p not in optimizer.state for p in decoder)  # no moments: Adam never saw a gradient for them
    assert all(p in optimizer.state for p in m.encoder.parameters())


def test_aggressive_training_takes_encoder_steps_until_the_mutual_information_stops_rising(digits, tiny_vae):
    """He et al. 2019: while aggressive, each epoch takes many encoder-only steps; once the MI estimate falls the
    training is plain for good; fit_many trains such a model as fit does."""
    m = tiny_vae(input_dim=digits.input_dim, latent_dim=4, hidden=(32,), seed=0, aggressive=True)
    h = ibkit.fit(m, digits.train[:256], epochs=6, batch_size=64, seed=0, progress=False)
    assert {"aggressive", "encoder_steps", "mi"} <= set(h.columns) and bool(h["aggressive"].iloc[0])
    steps = h["encoder_steps"].values
    assert steps[0] >= 4 * 15  # at least 15 encoder steps before each of the epoch's 4 decoder steps
    assert (h["mi"].diff().dropna() > 0).all() and h["aggressive"].all()  # the MI kept rising: aggressive throughout
    again = tiny_vae(input_dim=digits.input_dim, latent_dim=4, hidden=(32,), seed=0, aggressive=True)
    (batched,) = ibkit.fit_many([again], digits.train[:256], epochs=6, batch_size=64, seed=0, progress=False)
    assert batched["loss"].values == pytest.approx(h["loss"].values, rel=1e-5)


def test_aggressive_training_turns_plain_for_good_once_the_mutual_information_falls(monkeypatch, digits, tiny_vae):
    import ibkit.estimators

    estimates = iter([0.5, 0.9, 0.7, 2.0])  # rises, rises, falls (off from here), rises again (stays off)
    monkeypatch.setattr(ibkit.estimators, "mi_bounds", lambda *a, **k: {"infonce": next(estimates)})
    m = tiny_vae(input_dim=digits.input_dim, latent_dim=2, hidden=(8,), seed=0, aggressive=True)
    h = ibkit.fit(m, digits.train[:128], epochs=4, batch_size=64, seed=0, progress=False)
    assert h["aggressive"].tolist() == [True, True, True, False]  # epoch 3 was aggressive, and measured the fall
    assert (h["encoder_steps"].values[:3] >= 2 * 15).all() and h["encoder_steps"].iloc[3] == 0
