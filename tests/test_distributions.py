"""ibkit.distributions: posterior operations and KL helpers beside torch.distributions, with no model code."""

import ast
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, StudentT, kl_divergence

import ibkit.distributions as D


def test_it_imports_nothing_of_ibkit_but_checks():
    tree = ast.parse(Path(D.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name.split(".")[0] == "ibkit"} <= {"ibkit.checks", "ibkit.interface"}


def test_kl_or_monte_carlo_is_closed_form_where_torch_has_it_and_an_unbiased_mean_otherwise():
    loc, scale = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.full((4, 3), 0.7)
    q = Independent(Normal(loc, scale), 1)
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    torch.testing.assert_close(D.kl_or_monte_carlo(q, p), kl_divergence(q, p))
    heavy = Independent(StudentT(30.0, torch.zeros(3), torch.ones(3)), 1)  # torch has no KL(Normal || StudentT)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, heavy)
    torch.manual_seed(0)
    z = q.sample((20000,))
    estimate = D.kl_or_monte_carlo(q, heavy, z)
    torch.testing.assert_close(estimate, D.kl_samples(q, heavy, z).mean(0))
    torch.testing.assert_close(estimate, D.monte_carlo_kl(q, heavy, z))
    # the exact KL by quadrature on a grid, dimension by dimension: -H(q) - E_q log t(z)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)
    base = Normal(loc.double().unsqueeze(-1), scale.double().unsqueeze(-1))  # [4, 3, grid]
    cross = torch.trapezoid(base.log_prob(grid).exp() * StudentT(30.0).log_prob(grid), grid).sum(-1)
    exact = -q.entropy().double() - cross
    se = D.kl_samples(q, heavy, z).double().std(0) / math.sqrt(len(z))
    assert ((estimate.double() - exact).abs() < 4 * se).all()
    assert D.kl_samples(q, heavy, n_samples=5).shape == (5, 4)


def test_the_iaf_registers_its_own_rule_where_it_is_defined():
    from ibkit.models.iaf import IAFDistribution

    assert D.rsample_from.registered()[:2] == ["Independent", "MultivariateNormal"]
    assert "IAFDistribution" in D.rsample_from.registered()
    assert "IAFDistribution" not in D.add_noise.registered()
    assert D.rsample_from._rules[IAFDistribution].__module__ == "ibkit.models.iaf"


def test_full_gaussian_rules():
    L = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    q = MultivariateNormal(torch.zeros(3, 2), scale_tril=L.expand(3, 2, 2))
    eps = torch.ones(1, 3, 2)
    torch.testing.assert_close(D.rsample_from(q, eps), (L @ torch.ones(2)).expand(1, 3, 2))
    torch.testing.assert_close(D.covariance(q, None), (L @ L.T).double().expand(3, 2, 2))
    assert D.diagonal_normal(q) is None
    assert math.isclose(D.add_noise(q, 1.0).covariance_matrix[0, 0, 0].item(), 2.0, rel_tol=1e-6)
