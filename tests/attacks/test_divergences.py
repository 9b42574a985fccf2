"""Divergences, penalties and the lambda grid of the targeted attacks, against references."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch.distributions import Independent, Normal, kl_divergence

from rcert.attacks.divergences import (
    divergence,
    gaussian_kl,
    gaussian_w2_squared,
    lambda_grid,
    penalty,
)
from rcert.errors import RcertError


def _pair(seed: int, rows: int = 5, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    mu_a, mu_t = (torch.randn(rows, d, generator=g, dtype=torch.float64) for _ in range(2))
    sigma_a, sigma_t = (0.1 + torch.rand(rows, d, generator=g, dtype=torch.float64)
                        for _ in range(2))
    return mu_a, sigma_a, mu_t, sigma_t


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), d=st.integers(1, 8))
def test_kl_matches_torch_distributions(seed, d):
    mu_a, sigma_a, mu_t, sigma_t = _pair(seed, d=d)
    expected = kl_divergence(Independent(Normal(mu_a, sigma_a), 1),
                             Independent(Normal(mu_t, sigma_t), 1))
    torch.testing.assert_close(gaussian_kl(mu_a, sigma_a, mu_t, sigma_t), expected,
                               rtol=1e-12, atol=1e-12)


def test_w2_matches_the_quantile_coupling_of_samples():
    # In one dimension W2 is the L2 distance between quantile functions; a diagonal
    # Gaussian's squared W2 is the sum over coordinates. Compare with the closed form.
    mu_a, sigma_a, mu_t, sigma_t = _pair(3, rows=1, d=3)
    levels = (np.arange(200_000) + 0.5) / 200_000
    total = 0.0
    for j in range(3):
        qa = stats.norm.ppf(levels, mu_a[0, j].item(), sigma_a[0, j].item())
        qt = stats.norm.ppf(levels, mu_t[0, j].item(), sigma_t[0, j].item())
        total += np.mean((qa - qt) ** 2)
    closed = gaussian_w2_squared(mu_a, sigma_a, mu_t, sigma_t).item()
    assert closed == pytest.approx(total, rel=1e-3)
    assert divergence("w2", mu_a, sigma_a, mu_t, sigma_t).item() == pytest.approx(
        np.sqrt(closed), rel=1e-12)


@pytest.mark.parametrize("kind", ["kl", "w2", "w2_squared"])
def test_a_perfect_match_is_zero_with_a_finite_gradient(kind):
    mu, sigma = (t.requires_grad_(True) for t in _pair(4)[:2])
    value = divergence(kind, mu, sigma, mu.detach(), sigma.detach())
    assert torch.allclose(value, torch.zeros_like(value), atol=1e-7)
    value.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(sigma.grad).all()


def test_penalties_are_the_norm_and_its_square_per_row():
    d = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64).requires_grad_(True)
    torch.testing.assert_close(penalty("l2", d), torch.tensor([5.0, 0.0],
                                                               dtype=torch.float64))
    torch.testing.assert_close(penalty("l2_squared", d.reshape(2, 1, 2)),
                               torch.tensor([25.0, 0.0], dtype=torch.float64))
    penalty("l2", d).sum().backward()
    assert torch.isfinite(d.grad).all()  # d = 0 is where every attack starts


def test_the_protocol_grid_is_fifty_geometric_values_from_2_to_the_minus_20_to_2_to_the_20():
    grid = lambda_grid()
    assert len(grid) == 50 and grid[0] == 2.0**-20 and grid[-1] == pytest.approx(2.0**20)
    np.testing.assert_allclose(grid[1:] / grid[:-1], 2 ** (40 / 49), rtol=1e-12)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: lambda_grid(0), r"needs at least 1 value, got 0"),
    (lambda: lambda_grid(5, 3.0, -3.0), r"finite exponents low <= high"),
    (lambda: divergence("js", *_pair(0)), r"unknown divergence 'js'"),
    (lambda: penalty("l1", torch.zeros(2, 3)), r"unknown penalty 'l1'"),
])
def test_bad_choices_are_one_line(call, message):
    with pytest.raises(RcertError, match=message):
        call()
