import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rcert.statistics import binomial, margins


def test_clopper_pearson_closed_forms():
    n, alpha = 200, 0.01
    assert binomial.clopper_pearson_lower(np.array([0]), n, alpha)[0] == 0.0
    # k = n: P(Binom(n, p) >= n) = p^n = alpha
    assert np.isclose(binomial.clopper_pearson_lower(np.array([n]), n, alpha)[0], alpha ** (1 / n))
    # k = 1: 1 - (1 - p)^n = alpha
    assert np.isclose(binomial.clopper_pearson_lower(np.array([1]), n, alpha)[0],
                      1 - (1 - alpha) ** (1 / n))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 400), frac=st.floats(0, 1), alpha=st.floats(1e-4, 0.3))
def test_clopper_pearson_is_the_binomial_tail_inversion(n, frac, alpha):
    k = round(frac * n)
    p = binomial.clopper_pearson_lower(np.array([k]), n, alpha)[0]
    assert 0 <= p <= k / n + 1e-12
    if k > 0:
        # At the bound the chance of seeing k or more successes is exactly alpha.
        assert np.isclose(stats.binom.sf(k - 1, n, p), alpha, rtol=1e-6, atol=1e-9)


def test_clopper_pearson_coverage_over_repeated_trials():
    rng = np.random.default_rng(0)
    n, alpha, trials = 50, 0.1, 20000
    for p in (0.05, 0.3, 0.5, 0.8, 0.97):
        k = rng.binomial(n, p, size=trials)
        covered = np.mean(binomial.clopper_pearson_lower(k, n, alpha) <= p)
        # Conservative: coverage at least 1 - alpha, up to simulation error (~0.002 SE).
        assert covered >= 1 - alpha - 0.01


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), m=st.floats(0.05, 0.95), alpha=st.floats(1e-4, 0.3))
def test_certified_rank_is_the_first_rank_that_certifies(n, m, alpha):
    k_star = binomial.certified_rank(n, m, alpha)
    lower = binomial.clopper_pearson_lower(np.arange(0, n + 1), n, alpha)
    if k_star is None:
        assert lower[-1] <= m
    else:
        assert lower[k_star] > m and lower[k_star - 1] <= m
        # Same rank from the order-statistic side: P(Binom(n, m) >= k*) < alpha.
        assert stats.binom.sf(k_star - 1, n, m) < alpha + 1e-12


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), m=st.floats(0.01, 0.99), seed=st.integers(0, 10**6),
       r=st.floats(0, 3))
def test_quantile_rank_matches_p_hat(n, m, seed, r):
    x = np.sort(np.random.default_rng(seed).exponential(size=n))
    p_hat = np.mean(x <= r)
    j = binomial.quantile_rank(n, m)
    assert (p_hat > m) == (j <= n and x[j - 1] <= r)


def test_margin_conventions():
    s = np.array([0.5, 0.5, 0.5, 0.5])
    t = np.array([1.0, -0.2, 0.0, 2.0])
    j = np.array([2.0, 2.0, 0.0, 0.0])
    assert np.allclose(margins.theorem1(s, t, j), [0.25, 0.0, 0.0, np.inf])
    assert np.allclose(margins.spectral(s, t, j), [0.25, 0.0, 0.0, np.inf])
    assert np.allclose(margins.whitened(t, j), [0.5, 0.0, 0.0, np.inf])
    assert np.allclose(margins.latent_margin(s, t), [0.5, 0.0, 0.0, 1.0])


def test_probit_gap_and_cap():
    assert np.isclose(margins.probit_gap(np.array([0.5]), 0.5)[0], 0.0)
    assert np.isclose(margins.probit_gap(np.array([stats.norm.cdf(1.0)]), 0.5)[0], 1.0)
    assert np.isclose(margins.probit_gap(np.array([0.9]), 0.7)[0],
                      stats.norm.ppf(0.9) - stats.norm.ppf(0.7))
    capped = margins.capped_p_hat(np.array([1.0, 0.3]), 100)
    assert np.allclose(capped, [1 - 1 / 200, 0.3])
    assert np.isfinite(margins.probit_gap(capped, 0.5)).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), d_z=st.integers(1, 6), big_d=st.integers(1, 30),
       t=st.floats(0.01, 4))
def test_published_le_spectral_le_whitened(seed, d_z, big_d, t):
    import torch

    from rcert.engine.jacobian import jacobian_norms

    rng = np.random.default_rng(seed)
    jac = torch.tensor(rng.normal(size=(1, d_z, big_d)))
    sigma = torch.tensor(rng.uniform(0.01, 2, size=(1, d_z)))
    norms = {k: v.numpy() for k, v in jacobian_norms(jac, sigma).items()}
    s_min = sigma.min().item()
    pub = margins.theorem1(s_min, t, norms["jacobian_fro"])
    spe = margins.spectral(s_min, t, norms["jacobian_spec"])
    whi = margins.whitened(t, norms["jacobian_whitened"])
    assert pub <= spe * (1 + 1e-9) and spe <= whi * (1 + 1e-9)


# Every level a user can write with two decimals, as the exact decimal they wrote.
_LEVELS = [Fraction(c, 100) for c in range(1, 100)]


def test_quantile_rank_is_the_first_rank_above_m_exactly():
    for n in range(1, 1001):
        for m in _LEVELS:
            j = binomial.quantile_rank(n, float(m))
            # Brute force in exact rational arithmetic: j/n > m and (j-1)/n <= m.
            assert Fraction(j, n) > m and Fraction(j - 1, n) <= m, (n, m)


def test_quantile_rank_agrees_with_the_float_p_hat_test():
    # Elsewhere robustness is decided as p_hat = k/n > m in floats; the rank must agree
    # for every count k = 0..n.
    levels = np.arange(1, 100) / 100
    for n in range(1, 1001):
        k = np.arange(0, n + 1)[:, None]
        j = np.array([binomial.quantile_rank(n, m) for m in levels])
        np.testing.assert_array_equal(k >= j, k / n > levels, err_msg=f"n={n}")


def test_quantile_rank_named_examples():
    # 29/100 * 100 = 29 exactly, so 29 of 100 is not > m: rank 30 (floats gave 29).
    assert binomial.quantile_rank(100, 0.29) == 30
    # 0.7 * 90 = 63 exactly: rank 64 (floats gave 63).
    assert binomial.quantile_rank(90, 0.7) == 64


def test_the_count_of_float_rank_errors_that_docs_statistics_md_quotes():
    # docs/statistics.md: floor(m n) + 1 in floating point gave a rank one too low for this
    # many (n <= 1000, m in {0.01, ..., 0.99}) pairs, the examples among them, none at
    # m = 1/2 with even n; rcert's rank is the exact one for all of them.
    wrong = [(n, m) for n in range(1, 1001) for m in _LEVELS
             if math.floor(float(m) * n) + 1 != math.floor(m * n) + 1]
    assert {(100, Fraction(29, 100)), (90, Fraction(7, 10))} <= set(wrong)
    assert not [n for n, m in wrong if m == Fraction(1, 2) and n % 2 == 0]
    for n, m in wrong:
        assert binomial.quantile_rank(n, float(m)) == math.floor(m * n) + 1
    docs = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"
    quoted = re.search(r"that happened for (\d+)\s+pairs", docs.read_text())
    assert quoted is not None and int(quoted.group(1)) == len(wrong)


@pytest.mark.parametrize("n", [10**6, 10**9, 10**12])
def test_certified_rank_needs_no_array_of_n(n):
    # Bisection: a sample size far beyond memory still gets its exact rank.
    k_star = binomial.certified_rank(n, 0.5, 1e-3)
    lower = binomial.clopper_pearson_lower(np.array([k_star - 1, k_star]), n, 1e-3)
    assert lower[0] <= 0.5 < lower[1]
