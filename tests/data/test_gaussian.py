"""Tests for ``ibkit.data.gaussian``: the one closed form ``LinearGaussianChain`` and the source built on it.

The chain of one link must give the numbers of the former one-layer ``LinearGaussianModel``, and the chain of two
links those of the former ``TwoLayerGaussianModel``: the constants below were computed with that code (ibkit at
commit 1fcc60f, before the chain), on the parameters here. A chain of three links, which no former class had, is
checked against the joint covariance of (x, z1, z2, z3) built from the generating equations.
"""

import math

import numpy as np
import pytest
import torch

from ibkit import data
from ibkit import estimators as E
from ibkit.data.gaussian import (
    LinearGaussianChain,
    LinearGaussianDataset,
    LinearGaussianModel,
    TwoLayerGaussianModel,
    load_gaussian,
    sample,
)
from ibkit.interface import LatentVariableModel

B = torch.tensor([0.1, -0.2, 0.3, 0.0])
X = torch.tensor([[0.5, -1.0, 0.2, 0.3], [1.2, 0.4, -0.7, 0.0]])
W_ONE = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.1], [0.7, 0.1]])  # one link, noise 0.5
W_AXES = torch.tensor([[1.5, 0, 0], [0, 0.8, 0], [0, 0, -1.2], [0, 0, 0]])  # two links, noises (0.4, 0.7)
A_AXES = torch.tensor([[1.1, 0], [0, 0.9], [0, 0]])
W_TWO = torch.tensor([[1.0, 0.5, -0.2], [-0.3, 0.8, 0.4], [0.2, -1.1, 0.3], [0.7, 0.1, 0.9]])
A_TWO = torch.tensor([[0.6, -0.4], [0.2, 1.0], [-0.5, 0.3]])
Z_ONE = torch.tensor([[[0.3, -0.2], [1.0, 0.5]]])  # [S=1, N=2, 2]
Z_TWO = torch.tensor([[[0.3, -0.2, 0.1, 0.5, -0.6], [1.0, 0.5, -0.4, 0.0, 0.2]]])  # [1, 2, 3 + 2]

# ----------------------------------------------------------------------------------------------------------------
# what the former LinearGaussianModel / TwoLayerGaussianModel / load_gaussian gave (float32 values to 7 decimals)

ONE = dict(
    covariance=[[1.5, 0.1, -0.35, 0.75], [0.1, 0.98, -0.9400001, -0.13], [-0.35, -0.9400001, 1.5, 0.03],
                [0.75, -0.13, 0.03, 0.75]],
    entropy=5.03038704009247,
    mutual_information=2.127221629513561,
    log_px=[-3.9901953, -3.9123447],
    posterior_loc=[[0.4525687, -0.1482129], [0.3328486, 0.8870282]],
    posterior_cov=[[0.1340574, -0.0062484], [-0.0062484, 0.1062234]],
    log_likelihood=[[-1.9011655, -3.4181652]],
)

TWO_AXES = dict(
    covariance=[[3.9850001, 0.0, 0.0, 0.0], [0.0, 0.992, 0.0, 0.0], [0.0, 0.0, 0.8656, 0.0], [0.0, 0.0, 0.0, 0.16]],
    entropy=5.374549831625233,
    mutual_information=3.363958626303162,
    layer_information=(3.363958626303162, 0.9444017304897206),
    conditional_information=2.4195568958134412,
    latent_information=1.1098461445634784,
    log_px=[-4.0042319, -4.2854548],
    posterior_loc=[[0.2559598, -0.8387097, 0.0679298, 0.1656211, -0.5806451],
                   [0.7038896, 0.6290323, 0.6792976, 0.455458, 0.4354839]],
    posterior_cov=[[0.068256, 0.0, 0.0, 0.0441656, 0.0], [0.0, 0.2096774, 0.0, 0.0, 0.1451613],
                   [0.0, 0.0, 0.090573, 0.0, 0.0], [0.0441656, 0.0, 0.0, 0.316813, 0.0],
                   [0.0, 0.1451613, 0.0, 0.0, 0.4774193]],
    prior_cov=[[1.7, 0.0, 0.0, 1.1, 0.0], [0.0, 1.3000001, 0.0, 0.0, 0.9], [0.0, 0.0, 0.49, 0.0, 0.0],
               [1.1, 0.0, 0.0, 1.0, 0.0], [0.0, 0.9, 0.0, 0.0, 1.0]],
    log_likelihood=[[-1.5809035, -7.4805913]],
    factor_z2_loc=[[0.1656211, -0.5806451], [0.455458, 0.4354839]],
    factor_z2_scale=[0.5628615, 0.6909554],
    factor_z1_offset=[[0.2328713, -0.6621622, 0.0679298], [0.6403961, 0.4966216, 0.6792976]],
    factor_R=[[0.139406, 0.0], [0.0, 0.3040541], [0.0, 0.0]],
    factor_z1_given_z2_scale=[0.2491967, 0.4068667, 0.3009535],
    factor_z1_loc=[[0.2559598, -0.8387097, 0.0679298], [0.7038896, 0.6290323, 0.6792976]],
    factor_z1_scale=[0.2612584, 0.4579055, 0.3009535],
    factor_M=[[0.6470588, 0.0, 0.0], [0.0, 0.6923077, 0.0]],
    factor_z2_given_z1_scale=[0.5368755, 0.6139406],
)

TWO = dict(
    covariance=[[1.4337001, -0.1246, -0.4445, 0.2749], [-0.1246, 1.7261001, -1.4804001, 0.2085],
                [-0.4445, -1.4804001, 2.0672002, 0.0514], [0.2749, 0.2085, 0.0514, 0.8101]],
    entropy=5.53484891488093,
    mutual_information=3.5242577095588596,
    layer_information=(3.5242577095588596, 0.9162861848699008),
    conditional_information=2.607971524688959,
    latent_information=1.0466231524913163,
    log_px=[-4.607255, -4.1740913],
    posterior_loc=[[0.547781, -0.1731692, -0.3138815, 0.3554673, -0.2407513],
                   [0.409482, 0.9291413, -0.3269446, 0.5966945, 0.448642]],
    posterior_cov=[[0.0967623, -0.0063967, -0.0338329, 0.0604522, -0.0251526],
                   [-0.0063967, 0.0724913, 0.0040652, 0.0151493, 0.0454873],
                   [-0.0338329, 0.0040652, 0.1307512, -0.0702767, 0.0249834],
                   [0.0604522, 0.0151493, -0.0702767, 0.5013622, 0.0374392],
                   [-0.0251526, 0.0454873, 0.0249834, 0.0374392, 0.3219292]],
    prior_cov=[[1.0100001, -0.28, -0.42, 0.6000001, -0.4], [-0.28, 1.53, 0.2, 0.2, 1.0],
               [-0.42, 0.2, 0.83, -0.5, 0.3], [0.6000001, 0.2, -0.5, 1.0, -0.0], [-0.4, 1.0, 0.3, -0.0, 1.0]],
    log_likelihood=[[-1.7762164, -2.8902788]],
)

LOAD_ONE = dict(
    train0=[0.7390806, 1.8328817, 0.1977196, -1.4200439, -1.4083359],
    test_last=[1.1776695, -2.1453116, -0.6225458, -1.6595155, -2.1770296],
    W0=[0.0012302, 0.2987455, -0.2741379],
    entropy=5.499146123720428,
)

LOAD_TWO = dict(
    train0=[1.6727763, 2.9836335, -1.0288262, 0.8131931, 2.0938847],
    test_last=[1.2581335, 3.9942586, -1.2194451, 1.4512239, 1.6281183],
    A=[[1.1322695, 0.0, 0.0], [0.0, 0.9927824, 0.0]],
    entropy=5.904656801866643,
)

LOAD_SPECTRUM = dict(
    train0=[1.0229219, -1.2146193, 0.2628416, 0.1421344, -1.0982326, -0.5090243, 0.3583475, -0.860877],
    entropy=9.272066685753806,
)


def close(got, want, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64),
                               rtol=1e-6, atol=atol)


def check_closed_forms(chain, want):
    """Every closed form the former class had, against its numbers ``want``."""
    assert chain.entropy() == pytest.approx(want["entropy"], rel=1e-12)
    assert chain.mutual_information() == pytest.approx(want["mutual_information"], rel=1e-12)
    close(chain.covariance(), want["covariance"])
    close(chain.log_px(X), want["log_px"])
    q = chain.posterior(X)
    close(q.loc, want["posterior_loc"])
    close(q.covariance_matrix[0], want["posterior_cov"])
    z = Z_ONE if chain.depth == 1 else Z_TWO
    close(chain.log_likelihood(X, z), want["log_likelihood"])


# ----------------------------------------------------------------------------------------------------------------
# the chain against the former classes


def test_one_link_is_the_former_one_layer_model():
    chain = LinearGaussianChain((W_ONE,), B, (0.5,))
    assert chain.depth == 1 and chain.latent_dims == (2,) and chain.latent_dim == 2 and chain.input_dim == 4
    assert isinstance(chain, LatentVariableModel)
    check_closed_forms(chain, ONE)
    prior = chain.prior()
    assert torch.equal(prior.loc, torch.zeros(2)) and torch.equal(prior.scale_tril, torch.eye(2))  # N(0, I) exactly
    assert chain.layer_information() == pytest.approx((ONE["mutual_information"],), rel=1e-12)
    # the former constructor's name builds the same chain
    again = LinearGaussianModel(W_ONE, B, 0.5)
    assert isinstance(again, LinearGaussianChain) and again.weights == (again.W,) and torch.equal(again.W, W_ONE)
    assert again.mutual_information() == chain.mutual_information()


@pytest.mark.parametrize(("W", "A", "want"), [(W_AXES, A_AXES, TWO_AXES), (W_TWO, A_TWO, TWO)], ids=["axes", "general"])
def test_two_links_are_the_former_two_layer_model(W, A, want):
    chain = TwoLayerGaussianModel(W, B, 0.4, A, 0.7)
    assert chain.depth == 2 and chain.latent_dims == (3, 2) and chain.latent_dim == 5
    assert torch.equal(chain.A, A) and chain.layer_noise == 0.7 and chain.noises == (0.4, 0.7)
    check_closed_forms(chain, want)
    assert chain.layer_information() == pytest.approx(want["layer_information"], rel=1e-12)
    assert chain.conditional_information() == pytest.approx(want["conditional_information"], rel=1e-12)
    assert chain.latent_information() == pytest.approx(want["latent_information"], rel=1e-12)
    close(chain.prior().covariance_matrix, want["prior_cov"])


def test_two_links_factor_as_the_former_layer_posteriors():
    post = TwoLayerGaussianModel(W_AXES, B, 0.4, A_AXES, 0.7).layer_posteriors(X)
    for name in ("z2_loc", "z2_scale", "z1_offset", "R", "z1_given_z2_scale", "z1_loc", "z1_scale", "M",
                 "z2_given_z1_scale"):
        close(getattr(post, name), TWO_AXES[f"factor_{name}"])


def test_load_draws_the_former_rows():
    """The same seed and options give the rows the former loader drew (the sampler draws in the same order)."""
    one = data.load("gaussian", input_dim=5, latent_dim=3, noise=0.3, n_train=100, n_test=50, seed=7)
    close(one.train[0], LOAD_ONE["train0"])
    close(one.test[-1], LOAD_ONE["test_last"])
    close(one.W[0], LOAD_ONE["W0"])
    assert one.entropy() == pytest.approx(LOAD_ONE["entropy"], rel=1e-12)
    assert one.provenance == {"split": "sampled 100/50 (seed 7)"}
    two = data.load("gaussian", input_dim=5, latent_dims=(2, 3), noise=0.4, layer_noise=0.6, n_train=10, n_test=20,
                    seed=1)
    close(two.train[0], LOAD_TWO["train0"])
    close(two.test[-1], LOAD_TWO["test_last"])
    close(two.A, LOAD_TWO["A"])
    assert two.entropy() == pytest.approx(LOAD_TWO["entropy"], rel=1e-12)
    assert two.provenance == {"split": "sampled 10/20"}
    spectrum = data.load("gaussian", eigenvalues=(4, 2, 1, 0.5, 0.25, 0.25, 0.25, 0.25), latent_dim=4, n_train=10,
                         n_test=10)
    close(spectrum.train[0], LOAD_SPECTRUM["train0"])
    assert spectrum.entropy() == pytest.approx(LOAD_SPECTRUM["entropy"], rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# a chain of three links, against the joint covariance of (x, z1, z2, z3)

W3 = (torch.tensor([[1.0, 0.5, -0.2], [-0.3, 0.8, 0.4], [0.2, -1.1, 0.3], [0.7, 0.1, 0.9], [0.0, 0.6, -0.5]]),
      torch.tensor([[0.6, -0.4], [0.2, 1.0], [-0.5, 0.3]]),
      torch.tensor([[1.2, -0.3], [0.4, 0.9]]))
NOISES3 = (0.3, 0.6, 0.8)
B3 = torch.tensor([0.2, -0.1, 0.0, 0.5, -0.3])


@pytest.fixture(scope="module")
def three():
    return LinearGaussianChain(W3, B3, NOISES3)


def joint(chain):
    """Cov(x, z1, ..., zL) [D + d, D + d] float64 as L L^T from the generating equations, and each layer's indices
    (0: x)."""
    sizes = (chain.input_dim, *chain.latent_dims)
    starts = np.cumsum((0, *sizes)).tolist()
    idx = [list(range(a, a + n)) for a, n in zip(starts, sizes, strict=False)]
    n = starts[-1]
    M = torch.zeros(n, n, dtype=torch.float64)  # layer l as a linear map of the noises e_0..e_L (e_L = z_L)
    M[np.ix_(idx[-1], idx[-1])] = torch.eye(sizes[-1], dtype=torch.float64)
    for layer in range(chain.depth - 1, -1, -1):
        W = chain.weights[layer].double()
        M[idx[layer], :] = W @ M[idx[layer + 1], :]
        M[np.ix_(idx[layer], idx[layer])] += chain.noises[layer] * torch.eye(sizes[layer], dtype=torch.float64)
    return M @ M.T, idx


def conditional(cov, keep, given):
    """(B, C): E[keep | given] = B given (zero means) and Cov(keep | given)."""
    B = torch.linalg.solve(cov[np.ix_(given, given)], cov[np.ix_(given, keep)]).T
    return B, cov[np.ix_(keep, keep)] - B @ cov[np.ix_(given, keep)]


def test_three_links_match_the_joint_gaussian(three):
    cov, idx = joint(three)
    x_idx, z_idx = idx[0], [i for block in idx[1:] for i in block]
    Cx = cov[np.ix_(x_idx, x_idx)]
    torch.testing.assert_close(three.covariance().double(), Cx, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(three.prior().covariance_matrix.double(), cov[np.ix_(z_idx, z_idx)], rtol=1e-6,
                               atol=1e-6)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0)) + B3
    B, C = conditional(cov, z_idx, x_idx)
    q = three.posterior(x)
    assert q.batch_shape == (7,) and q.event_shape == (7,)
    torch.testing.assert_close(q.loc.double(), (x.double() - B3.double()) @ B.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q.covariance_matrix[0].double(), C, rtol=1e-5, atol=1e-6)
    logdet = lambda m: torch.logdet(m).item()  # noqa: E731
    info = [0.5 * (logdet(Cx) - logdet(conditional(cov, x_idx, idx[layer])[1])) for layer in (1, 2, 3)]
    assert three.layer_information() == pytest.approx(info, rel=1e-9)
    assert three.mutual_information() == pytest.approx(info[0], rel=1e-12)
    assert info[0] > info[1] > info[2] > 0  # data processing along z3 -> z2 -> z1 -> x
    assert three.conditional_information(2) == pytest.approx(info[1] - info[2], rel=1e-9)
    for layer in (1, 2):
        mi = 0.5 * (logdet(cov[np.ix_(idx[layer], idx[layer])])
                    - logdet(conditional(cov, idx[layer], idx[layer + 1])[1]))
        assert three.latent_information(layer) == pytest.approx(mi, rel=1e-9)
    assert three.entropy() == pytest.approx(0.5 * logdet(2 * math.pi * math.e * Cx), rel=1e-9)


def test_three_links_bayes_rule_and_rate(three):
    """log p(z) + log p(x|z) - log p(z|x) = log p(x) at every z; the rate of the exact posterior is I(X;Z)
    (5 standard errors over 2,000 rows)."""
    x = sample(three, 2000, np.random.default_rng(0))
    z = torch.randn(3, 64, 7, generator=torch.Generator().manual_seed(1))
    log_joint = three.prior().log_prob(z) + three.log_likelihood(x[:64], z)
    torch.testing.assert_close(log_joint - three.posterior(x[:64]).log_prob(z), three.log_px(x[:64]).expand(3, -1),
                               rtol=0, atol=1e-3)
    kl = E.rate(three, x, per_example=True).double()
    assert abs(kl.mean().item() - three.mutual_information()) < 5 * kl.std().item() / math.sqrt(len(kl))


def test_sample_follows_the_chain(three):
    """Ancestral rows: the sample covariance within 5 standard errors of Cov x, the mean of b; a seed repeats."""
    rows = sample(three, 20000, np.random.default_rng(3))
    assert rows.dtype == torch.float32 and rows.shape == (20000, 5)
    x = rows.double()
    C = three.covariance().double()
    se = ((torch.outer(C.diagonal(), C.diagonal()) + C**2) / len(x)).sqrt()
    assert ((torch.cov(x.T) - C).abs() <= 5 * se).all()
    assert ((x.mean(0) - B3.double()).abs() <= 5 * (C.diagonal() / len(x)).sqrt()).all()
    assert torch.equal(sample(three, 10, np.random.default_rng(4)), sample(three, 10, np.random.default_rng(4)))


# ----------------------------------------------------------------------------------------------------------------
# the dataset and its truth


def test_dataset_answers_from_its_truth():
    ds = load_gaussian(n_train=20, n_test=30, seed=2)
    assert isinstance(ds, LinearGaussianDataset) and isinstance(ds, data.Dataset)
    chain = ds.truth
    assert isinstance(chain, LinearGaussianChain) and ds.true_model() is chain
    assert ds.W is chain.W and ds.b is chain.b and ds.noise == chain.noise and ds.latent_dims == (2,)
    assert ds.mutual_information() == chain.mutual_information() and ds.entropy() == chain.entropy()
    assert torch.equal(ds.covariance(), chain.covariance()) and torch.equal(ds.log_px(ds.test), chain.log_px(ds.test))
    assert torch.equal(ds.exact_posterior(ds.test).loc, chain.posterior(ds.test).loc)
    for name in ("covariance", "entropy", "log_px", "mutual_information"):  # what experiments look for
        assert hasattr(ds, name)
    assert not hasattr(ds, "A") and not hasattr(ds, "layer_noise")  # one layer
    two = load_gaussian(latent_dims=(3, 2), n_train=20, n_test=30)
    assert two.layer_information() == two.truth.layer_information() and torch.equal(two.A, two.truth.A)


def test_true_model_with_arguments_points_to_the_generating_builders():
    ds = load_gaussian(n_train=5, n_test=5)
    with pytest.raises(TypeError, match=r"ibkit.models.generating: generating_vae\(ds, posterior"):
        ds.true_model(posterior="full")


# ----------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (((), B, ()), r"weights must be a non-empty sequence of tensors"),
        ((W_ONE, B, (0.5,)), r"weights must be a non-empty sequence of tensors"),
        (((B,), B, (0.5,)), r"weights\[0\] must be a tensor \[D, d1\]; got \[4\]"),
        (((W_ONE, A_TWO), B, (0.5, 0.5)), r"weights\[1\] must be a tensor \[d1, d2\] = \[2, d2\]"),
        (((W_ONE,), B[:3], (0.5,)), r"offset must be a tensor \[D\] = \[4\]; got \[3\]"),
        (((W_ONE,), B, (0.5, 0.5)), r"noises must be a sequence of 1 standard deviations"),
        (((W_ONE,), B, 0.5), r"noises must be a sequence of 1"),
        (((W_ONE,), B, (0.0,)), r"noises\[0\]=0.0 must be > 0"),
    ],
)
def test_chain_refuses_bad_parameters(args, match):
    with pytest.raises(ValueError, match=match):
        LinearGaussianChain(*args)


def test_two_layer_questions_need_two_layers():
    one = LinearGaussianChain((W_ONE,), B, (0.5,))
    with pytest.raises(ValueError, match=r"layer_posteriors factors a two-layer posterior.*latent_dims=\(2,\)"):
        one.layer_posteriors(X)
    with pytest.raises(ValueError, match=r"this chain has one latent layer"):
        one.conditional_information()
    with pytest.raises(AttributeError, match=r"A is the second link of a chain"):
        one.A  # noqa: B018
    with pytest.raises(ValueError, match=r"layer=3 must be <= 2"):
        LinearGaussianChain(W3, B3, NOISES3).latent_information(3)
    with pytest.raises(ValueError, match=r"LinearGaussianDataset.truth must be a LinearGaussianChain with "
                                         r"input_dim=3"):
        LinearGaussianDataset(name="gaussian", train=torch.zeros(2, 3), test=torch.zeros(2, 3), likelihood="gaussian",
                              truth=one)
