"""The regularisers of Lu & Chen against independent references: scipy's Shapiro-Wilk, and
the MMD written out as a double loop in numpy."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rcert.errors import RcertError
from rcert.models.regularisers import (
    mmd_squared,
    shapiro_wilk,
    shapiro_wilk_weights,
    swt_penalty,
)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(6, 400), seed=st.integers(0, 10**6), skew=st.sampled_from([1, 2, 3]))
def test_shapiro_wilk_matches_scipy(n, seed, skew):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64) ** skew
    expected = [stats.shapiro(z[:, j].numpy()).statistic for j in range(2)]
    np.testing.assert_allclose(shapiro_wilk(z).numpy(), expected, rtol=0, atol=1e-7)


def test_weights_are_antisymmetric_with_unit_norm():
    for n in (6, 7, 64, 5000):
        a = shapiro_wilk_weights(n)
        assert float(a.square().sum()) == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(a, -a.flip(0), rtol=0, atol=1e-12)
        assert float(a[-1]) > 0


def test_w_ignores_location_and_scale_and_has_gradients():
    g = torch.Generator().manual_seed(1)
    z = torch.rand(64, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(shapiro_wilk(3.0 + 7.0 * z), shapiro_wilk(z))
    z.requires_grad_(True)
    swt_penalty(z).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # Normal codes are nearly W = 1; a two-point code is far from it.
    normal = torch.randn(500, 4, generator=g, dtype=torch.float64)
    assert float(swt_penalty(normal)) < 0.01
    assert float(swt_penalty((normal > 0).double())) > 0.3


@pytest.mark.parametrize("n", [5, 5001])
def test_shapiro_wilk_refuses_batches_out_of_range(n):
    with pytest.raises(RcertError, match="needs a batch of 6 to 5000 codes"):
        shapiro_wilk(torch.zeros(n, 2))


def _mmd_loop(z, s, kernel):
    """The unbiased MMD^2, term by term."""
    n, d = z.shape

    def k(a, b):
        sq = float(((a - b) ** 2).sum())
        return math.exp(-sq / (2 * d)) if kernel == "rbf" else 2 * d / (2 * d + sq)

    within = sum(k(z[i], z[j]) + k(s[i], s[j]) for i in range(n) for j in range(n) if i != j)
    across = sum(k(z[i], s[j]) for i in range(n) for j in range(n))
    return within / (n * (n - 1)) - 2 * across / n**2


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_matches_the_double_loop(kernel):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.5
    s = torch.randn(9, 3, generator=g, dtype=torch.float64)
    assert float(mmd_squared(z, s, kernel)) == pytest.approx(
        _mmd_loop(z.numpy(), s.numpy(), kernel), rel=1e-10)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_is_unbiased_at_zero_and_grows_with_a_shift(kernel):
    g = torch.Generator().manual_seed(3)
    same = [float(mmd_squared(torch.randn(32, 2, generator=g, dtype=torch.float64),
                              torch.randn(32, 2, generator=g, dtype=torch.float64), kernel))
            for _ in range(300)]
    # Unbiased: the mean over repetitions is 0 within its standard error.
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(len(same))
    shifted = float(mmd_squared(torch.randn(256, 2, generator=g, dtype=torch.float64) + 1.0,
                                torch.randn(256, 2, generator=g, dtype=torch.float64), kernel))
    assert shifted > 10 * np.std(same)


def test_mmd_refuses_mismatched_batches():
    with pytest.raises(RcertError, match="codes and prior draws of one shape"):
        mmd_squared(torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(RcertError, match="unknown MMD kernel 'laplace'"):
        mmd_squared(torch.zeros(4, 2), torch.zeros(4, 2), "laplace")
