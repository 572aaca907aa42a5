"""Tests for the two-layer linear-Gaussian source ``load("gaussian", latent_dims=(d1, d2))``.

The closed forms (``ds.truth``, a ``LinearGaussianChain`` of two links) are checked against an independent
derivation: the joint covariance of v = (x, z1, z2) built from the generating equations as L L^T, with
x = s e0 + s1 W e1 + W A e2, z1 = s1 e1 + A e2, z2 = e2 (e standard normal), and every conditional and information
read off it with the Gaussian conditioning formula (Schur complements). The samples are checked against the
covariance, and the posterior factors against each other.
"""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from ibkit import data
from ibkit import estimators as E
from ibkit.data.gaussian import LinearGaussianChain, TwoLayerGaussianModel, TwoLayerPosteriors
from ibkit.interface import LatentVariableModel

SHAPES = [(3, 2), (2, 3), (2, 2)]  # (d1, d2): more, fewer and as many units below as above


@pytest.fixture(scope="module")
def two():
    return data.load("gaussian", input_dim=6, latent_dims=(3, 2), noise=0.5, layer_noise=0.8, seed=0)


def small(dims, seed=0):  # noise != layer_noise, so that a formula using one for the other fails
    return data.load(
        "gaussian", input_dim=5, latent_dims=dims, noise=0.4, layer_noise=0.6, n_train=10, n_test=20, seed=seed
    )


def joint_covariance(ds):
    """Cov(x, z1, z2) [D + d1 + d2] in float64 from the generating equations, and the index blocks of x, z1, z2."""
    W, A, s, s1 = ds.W.double(), ds.A.double(), ds.noise, ds.layer_noise
    (D, d1), d2 = W.shape, A.shape[1]
    L = torch.zeros(D + d1 + d2, D + d1 + d2, dtype=torch.float64)  # rows (x, z1, z2), columns (e0, e1, e2)
    L[:D, :D] = s * torch.eye(D)
    L[:D, D : D + d1] = s1 * W
    L[:D, D + d1 :] = W @ A
    L[D : D + d1, D : D + d1] = s1 * torch.eye(d1)
    L[D : D + d1, D + d1 :] = A
    L[D + d1 :, D + d1 :] = torch.eye(d2)
    idx = {"x": list(range(D)), "z1": list(range(D, D + d1)), "z2": list(range(D + d1, D + d1 + d2))}
    return L @ L.T, idx


def condition(cov, idx, keep, given):
    """E[keep | given] = B (given - its mean) and Cov(keep | given) from the joint covariance: (B, C)."""
    k = [i for name in keep for i in idx[name]]
    g = [i for name in given for i in idx[name]]
    B = torch.linalg.solve(cov[g][:, g], cov[g][:, k]).T
    return B, cov[k][:, k] - B @ cov[g][:, k]


def block(cov, idx, *names):
    k = [i for name in names for i in idx[name]]
    return cov[k][:, k]


def logdet(m):
    return torch.logdet(m).item()


def off_diagonal(m):
    return (m - torch.diag(m.diagonal())).abs().max().item()


# ----------------------------------------------------------------------------------------------
# the record and its parameters


def test_record_and_structure(two):
    assert isinstance(two, data.LinearGaussianDataset) and isinstance(two, data.Dataset)
    assert two.likelihood == "gaussian" and two.train_labels is None and two.input_dim == 6
    assert two.train.shape == two.test.shape == (5000, 6) and two.train.dtype == torch.float32
    assert two.latent_dims == (3, 2) and two.noise == 0.5 and two.layer_noise == 0.8
    assert two.W.shape == (6, 3) and two.b.shape == (6,) and two.A.shape == (3, 2)
    assert all(t.dtype == torch.float32 for t in (two.W, two.b, two.A))
    # A = [diag(a); 0] with a in [0.8, 2.0]; W has orthogonal columns of norm in [0.5, 2.5]
    a = two.A.diagonal()
    assert torch.equal(two.A[:2] - torch.diag(a), torch.zeros(2, 2)) and torch.equal(two.A[2], torch.zeros(2))
    assert ((a >= 0.8) & (a <= 2.0)).all()
    WtW = two.W.double().T @ two.W.double()
    assert off_diagonal(WtW) < 1e-5
    assert ((WtW.diagonal().sqrt() >= 0.5 - 1e-6) & (WtW.diagonal().sqrt() <= 2.5 + 1e-6)).all()
    model = two.truth
    assert isinstance(model, LinearGaussianChain) and isinstance(model, LatentVariableModel)
    assert two.truth is model and model.depth == 2 and model.weights == (two.W, two.A)
    assert model.input_dim == 6 and model.latent_dims == (3, 2) and model.latent_dim == 5
    assert repr(model) == "LinearGaussianChain(input_dim=6, latent_dims=(3, 2), noises=(0.5, 0.8))"


@pytest.mark.parametrize("dims", SHAPES)
def test_axis_aligned_top_layer(dims):
    ds = small(dims)
    m = min(dims)
    assert ds.A.shape == dims and ds.W.shape == (5, dims[0])
    assert (ds.A[:m, :m].diagonal() > 0).all()
    assert torch.count_nonzero(ds.A) == m  # zero off the diagonal and below it


def test_seeds_reproduce():
    one, again = small((3, 2), seed=4), small((3, 2), seed=4)
    for name in ("train", "test", "W", "b", "A"):
        assert torch.equal(getattr(one, name), getattr(again, name))
    other = small((3, 2), seed=5)
    assert not torch.equal(other.W, one.W) and not torch.equal(other.train, one.train)


def test_defaults_and_options():
    assert data.options("gaussian")["latent_dims"] is None and data.options("gaussian")["layer_noise"] is None
    ds = data.load("gaussian", latent_dims=[2, 1], n_train=10, n_test=10)  # a list is accepted
    assert ds.latent_dims == (2, 1) and ds.input_dim == 8 and ds.noise == 0.5 and ds.layer_noise == 0.5
    ds = data.load("gaussian", latent_dims=(2, 1), layer_noise=0.3, noise=0.2, n_train=10, n_test=10)
    assert ds.layer_noise == 0.3 and ds.noise == 0.2


def test_one_entry_is_the_one_layer_source():
    one = data.load("gaussian", latent_dims=(3,), n_train=50, n_test=50, seed=2)
    ref = data.load("gaussian", latent_dim=3, n_train=50, n_test=50, seed=2)
    assert type(one) is data.LinearGaussianDataset and one.truth.depth == ref.truth.depth == 1
    for name in ("train", "test", "W", "b"):
        assert torch.equal(getattr(one, name), getattr(ref, name))


# ----------------------------------------------------------------------------------------------
# the marginal p(x)


def test_covariance_and_mean_match_the_generating_equations_and_samples(two):
    cov, idx = joint_covariance(two)
    C = two.covariance().double()
    assert two.covariance().dtype == torch.float32 and C.shape == (6, 6)
    torch.testing.assert_close(C, block(cov, idx, "x"), rtol=1e-6, atol=1e-6)
    x = torch.cat([two.train, two.test]).double()
    n = x.shape[0]
    S = torch.cov(x.T)
    # Var of a sample covariance entry of a Gaussian = (C_ii C_jj + C_ij^2) / n; allow 5 standard errors
    se = ((torch.outer(C.diagonal(), C.diagonal()) + C**2) / n).sqrt()
    assert ((S - C).abs() <= 5 * se).all()
    assert ((x.mean(0) - two.b.double()).abs() <= 5 * (C.diagonal() / n).sqrt()).all()


def test_log_px_is_the_marginal_of_the_joint_gaussian(two):
    cov, idx = joint_covariance(two)
    x = two.test[:500]
    got = two.log_px(x)
    assert got.dtype == torch.float32 and got.shape == (500,)
    reference = MultivariateNormal(two.b.double(), block(cov, idx, "x")).log_prob(x.double())
    torch.testing.assert_close(got.double(), reference, rtol=1e-6, atol=1e-5)
    # loose: the Gaussian fitted to the n training rows. Its D (D + 3) / 2 estimated parameters put an error of
    # standard deviation about sqrt(D (D + 3) / (2 n)) = 0.07 on each row's log-density, with a mean near zero.
    fitted = MultivariateNormal(two.train.double().mean(0), torch.cov(two.train.double().T))
    error = fitted.log_prob(x.double()) - got.double()
    scale = math.sqrt(6 * 9 / (2 * len(two.train)))
    assert error.abs().mean().item() < 2 * scale and abs(error.mean().item()) < scale / 2


def test_log_px_is_bayes_rule_with_the_exact_posterior(two):
    """log p(z) + log p(x|z) - log p(z|x) = log p(x) at every z: exact, so float32 round-off only."""
    model, x = two.truth, two.test[:64]
    q = two.exact_posterior(x)
    assert q.batch_shape == (64,) and q.event_shape == (5,) and q.loc.dtype == torch.float32
    z = torch.randn(3, 64, 5, generator=torch.Generator().manual_seed(0)) * 1.5
    log_joint = model.prior().log_prob(z) + model.log_likelihood(x, z)
    assert log_joint.shape == (3, 64) and log_joint.dtype == torch.float32
    torch.testing.assert_close(log_joint - q.log_prob(z), two.log_px(x).expand(3, -1), rtol=0, atol=1e-3)


def test_entropy_is_minus_mean_log_px(two):
    """-log p(x) = const + chi^2_D / 2 has variance D / 2: 4 standard errors of the mean over 10,000 rows."""
    x = torch.cat([two.train, two.test])
    estimate = -two.log_px(x).double().mean().item()
    assert abs(estimate - two.entropy()) < 4 * math.sqrt(6 / 2 / len(x))
    cov, idx = joint_covariance(two)
    assert two.entropy() == pytest.approx(0.5 * logdet(2 * math.pi * math.e * block(cov, idx, "x")), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# information


@pytest.mark.parametrize("dims", SHAPES)
def test_informations_are_schur_complements_of_the_joint(dims):
    ds = small(dims)
    cov, idx = joint_covariance(ds)
    Cx = block(cov, idx, "x")

    def h(given):  # log det Cov(x | given): 2 h(X | given) up to a constant
        return logdet(condition(cov, idx, ["x"], given)[1])

    def mi(given):  # I(X; given) = 1/2 [log det Cov(x) - log det Cov(x | given)]
        return 0.5 * (logdet(Cx) - h(given))

    i1, i2 = ds.layer_information()
    assert i1 == pytest.approx(mi(["z1"]), rel=1e-6)
    assert ds.mutual_information() == pytest.approx(mi(["z1", "z2"]), rel=1e-6)
    assert i1 == pytest.approx(ds.mutual_information(), rel=1e-12)  # I(X;Z) = I(X;Z1)
    assert i2 == pytest.approx(mi(["z2"]), rel=1e-6)
    assert ds.conditional_information() == pytest.approx(0.5 * (h(["z2"]) - h(["z1", "z2"])), rel=1e-6)
    C1 = block(cov, idx, "z1")
    assert ds.latent_information() == pytest.approx(
        0.5 * (logdet(C1) - logdet(condition(cov, idx, ["z1"], ["z2"])[1])), rel=1e-6
    )
    # h(X) - h(X|Z1) with h(X|Z1) = h(s eps)
    h_noise = ds.input_dim / 2 * math.log(2 * math.pi * math.e * ds.noise**2)
    assert ds.mutual_information() == pytest.approx(ds.entropy() - h_noise, rel=1e-9)
    # data processing along z2 -> z1 -> x
    assert 0 < i2 < i1 and i2 <= ds.latent_information() and ds.conditional_information() > 0


@pytest.mark.parametrize("dims", SHAPES)
def test_informations_per_axis(dims):
    """With W = U diag(w) (U orthonormal) and A = [diag(a); 0] the source splits into independent axes j:
    x_j = w_j z1_j + s e, z1_j = a_j z2_j + s1 e' (a_j = 0 for j >= min(d1, d2))."""
    ds = small(dims)
    s2, t2 = ds.noise**2, ds.layer_noise**2
    w2 = (ds.W.double() ** 2).sum(0)  # [d1]
    a2 = torch.zeros(dims[0], dtype=torch.float64)
    m = min(dims)
    a2[:m] = ds.A.double()[:m, :m].diagonal() ** 2
    i1 = 0.5 * torch.log1p(w2 * (a2 + t2) / s2).sum().item()
    i2 = 0.5 * torch.log((w2 * (a2 + t2) + s2) / (w2 * t2 + s2)).sum().item()
    assert ds.layer_information() == pytest.approx((i1, i2), rel=1e-5)
    assert ds.latent_information() == pytest.approx(0.5 * torch.log1p(a2 / t2).sum().item(), rel=1e-5)


def test_rate_of_the_exact_posterior_is_the_mutual_information(two):
    """E_x KL(p(z|x) || p(z)) = I(X;Z) for the exact posterior; 5 standard errors over 5,000 rows."""
    kl = E.rate(two.truth, two.test, per_example=True).double()
    assert abs(kl.mean().item() - two.mutual_information()) < 5 * kl.std().item() / math.sqrt(len(kl))


# ----------------------------------------------------------------------------------------------
# the posterior and its factors


def test_posterior_is_gaussian_conditioning(two):
    cov, idx = joint_covariance(two)
    x = two.test[:50]
    B, C = condition(cov, idx, ["z1", "z2"], ["x"])
    q = two.exact_posterior(x)
    torch.testing.assert_close(q.loc.double(), (x.double() - two.b.double()) @ B.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q.covariance_matrix.double(), C.expand(50, -1, -1), rtol=1e-5, atol=1e-6)
    prior = two.truth.prior()
    assert prior.event_shape == (5,) and prior.batch_shape == ()
    torch.testing.assert_close(prior.covariance_matrix.double(), block(cov, idx, "z1", "z2"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dims", SHAPES)
def test_layer_posteriors_are_gaussian_conditioning_and_diagonal(dims):
    ds = small(dims)
    d1, d2 = dims
    cov, idx = joint_covariance(ds)
    x = ds.test
    xc = x.double() - ds.b.double()
    post = ds.layer_posteriors(x)
    assert isinstance(post, TwoLayerPosteriors) and post.latent_dims == dims

    def check(B, C, scale):
        assert off_diagonal(C) < 1e-5  # the exact factor is diagonal, independently of ibkit's formulas
        torch.testing.assert_close(scale.double() ** 2, C.diagonal(), rtol=1e-5, atol=1e-6)

    # p(z2|x)
    B, C = condition(cov, idx, ["z2"], ["x"])
    check(B, C, post.z2_scale)
    torch.testing.assert_close(post.K.double(), B, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(post.z2_loc.double(), xc @ B.T, rtol=1e-5, atol=1e-5)
    # p(z1|z2, x): mean P (x - b) + R z2
    B, C = condition(cov, idx, ["z1"], ["x", "z2"])
    check(B, C, post.z1_given_z2_scale)
    torch.testing.assert_close(post.P.double(), B[:, :5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(post.R.double(), B[:, 5:], rtol=1e-5, atol=1e-5)
    z2 = torch.randn(20, d2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        post.z1_given_z2_x(z2).mean.double(), xc @ B[:, :5].T + z2.double() @ B[:, 5:].T, rtol=1e-5, atol=1e-5
    )
    # p(z1|x)
    B, C = condition(cov, idx, ["z1"], ["x"])
    check(B, C, post.z1_scale)
    torch.testing.assert_close(post.G.double(), B, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(post.z1_loc.double(), xc @ B.T, rtol=1e-5, atol=1e-5)
    # p(z2|z1) = p(z2|z1, x): x adds nothing once z1 is known
    B, C = condition(cov, idx, ["z2"], ["z1"])
    check(B, C, post.z2_given_z1_scale)
    torch.testing.assert_close(post.M.double(), B, rtol=1e-5, atol=1e-5)
    B_x, C_x = condition(cov, idx, ["z2"], ["z1", "x"])
    torch.testing.assert_close(B_x[:, d1:], torch.zeros(d2, 5, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(C_x, C, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dims", SHAPES)
def test_factors_multiply_back_to_the_joint_posterior(dims):
    ds = small(dims)
    d1, d2 = dims
    x = ds.test
    q, post = ds.exact_posterior(x), ds.layer_posteriors(x)
    z = q.sample((4,)) + torch.randn(4, 20, d1 + d2, generator=torch.Generator().manual_seed(1))
    z1, z2 = z[..., :d1], z[..., d1:]
    reference = q.log_prob(z)  # [4, 20]
    for factor, shape in ((post.z2_given_x(), d2), (post.z1_given_x(), d1)):
        assert isinstance(factor, Independent) and factor.batch_shape == (20,) and factor.event_shape == (shape,)
    top_down = post.z2_given_x().log_prob(z2) + post.z1_given_z2_x(z2).log_prob(z1)
    bottom_up = post.z1_given_x().log_prob(z1) + post.z2_given_z1(z1).log_prob(z2)
    assert top_down.shape == bottom_up.shape == (4, 20)
    for got in (top_down, bottom_up, post.log_prob_top_down(z), post.log_prob_bottom_up(z)):
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=2e-4)


def test_log_likelihood_reads_only_the_bottom_layer(two):
    model = two.truth
    x, z = two.test[:10], torch.randn(4, 10, 5, generator=torch.Generator().manual_seed(1))
    reference = Normal(z[..., :3] @ two.W.T + two.b, 0.5).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, z), reference)
    moved = z.clone()
    moved[..., 3:] += 10.0
    assert torch.equal(model.log_likelihood(x, moved), model.log_likelihood(x, z))
    with pytest.raises(ValueError, match=r"z must have shape \[S, N, d1 \+ d2\] = \[S, 10, 5\]"):
        model.log_likelihood(x, torch.zeros(4, 10, 3))


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"latent_dims": (2, 3, 4)}, r"latent_dims=\(2, 3, 4\) has 3 entries; allowed are \(d1,\) .* \(d1, d2\)"),
        ({"latent_dims": ()}, r"latent_dims=\(\) has 0 entries"),
        ({"latent_dims": 3}, r"latent_dims=3 must be a tuple of integers"),
        ({"latent_dims": "32"}, r"latent_dims='32' must be a tuple of integers"),
        ({"latent_dims": (0, 2)}, r"latent_dims\[0\]=0 must be >= 1"),
        ({"latent_dims": (2, 1.5)}, r"latent_dims\[1\]=1.5 must be an integer"),
        ({"latent_dims": (9, 2)}, r"latent_dims=\(9, 2\) has d1=9 > input_dim=8.*choose d1 <= 8"),
        ({"latent_dims": (3, 2), "input_dim": 2}, r"d1=3 > input_dim=2"),
        ({"latent_dims": (3, 2), "latent_dim": 4}, r"latent_dims=\(3, 2\) and latent_dim=4 both set"),
        ({"latent_dims": (2,), "eigenvalues": (2.0, 1.0)}, r"latent_dims=\(2,\) cannot be combined with eigenvalues"),
        ({"latent_dims": (3, 2), "layer_noise": 0}, r"layer_noise=0 must be > 0"),
        ({"latent_dims": (3, 2), "layer_noise": -0.1}, r"layer_noise=-0.1 must be > 0"),
        ({"layer_noise": 0.3}, r"layer_noise=0.3 is the noise between two latent layers.*latent_dims=\(d1, d2\)"),
        ({"latent_dims": (2,), "layer_noise": 0.3}, r"layer_noise=0.3 .* but this source has one"),
        ({"latent_dims": (3, 2), "noise": 0.0}, r"noise=0.0 must be > 0"),
    ],
)
def test_bad_input(options, match):
    with pytest.raises(ValueError, match=match):
        data.load("gaussian", n_train=10, n_test=10, **options)


def test_model_refuses_bad_parameters(two):
    with pytest.raises(ValueError, match=r"weights\[1\] must be a tensor \[d1, d2\] = \[3, d2\]"):
        TwoLayerGaussianModel(two.W, two.b, 0.5, torch.zeros(2, 2), 0.8)
    with pytest.raises(ValueError, match=r"noises\[1\]=0.0 must be > 0"):
        TwoLayerGaussianModel(two.W, two.b, 0.5, two.A, 0.0)
    post = two.layer_posteriors(two.test[:3])
    with pytest.raises(ValueError, match=r"z2 must be a tensor \[\.\.\., 2\]; got \[3, 3\]"):
        post.z1_given_z2_x(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"z must be a tensor \[\.\.\., 5\]"):
        post.log_prob_top_down(torch.zeros(3, 4))
    # a W without orthogonal columns has correlated factors: no diagonal form
    skew = TwoLayerGaussianModel(two.W + two.W[:, :1], two.b, 0.5, two.A, 0.8)
    with pytest.raises(ValueError, match=r"layer_posteriors: the exact p\(z2\|x\) has a correlation .* orthogonal"):
        skew.layer_posteriors(two.test[:3])
    skew.posterior(two.test[:3])  # the joint posterior needs no structure
