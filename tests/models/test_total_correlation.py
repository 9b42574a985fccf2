"""Total-correlation estimators against independent references (spec section 7, C11)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from rcert.errors import RcertError
from rcert.models.total_correlation import (
    log_aggregate,
    log_normal_pairs,
    mss_log_weights,
    total_correlation,
)


def _posteriors(n: int, d: int, seed: int, *, coupled: bool = True):
    """A dataset's Gaussian posteriors and one sample from each, float64. ``coupled`` ties
    the coordinates' means together, so the aggregate posterior has a real TC."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, generator=g, dtype=torch.float64)
    mu = (base.expand(n, d) if coupled else torch.zeros(n, d, dtype=torch.float64)) \
        + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    sigma = 0.2 + torch.rand(n, d, generator=g, dtype=torch.float64)
    z = mu + sigma * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z, mu, sigma


def _exact_mixture_tc(z, mu, sigma) -> float:
    """Monte Carlo TC of the exact mixture ``q(z) = 1/N sum_n q(z|x_n)`` at the samples, in
    numpy and scipy: ``mean_i [log q(z_i) - sum_j log q_j(z_ij)]``."""
    z, mu, sigma = (t.numpy() for t in (z, mu, sigma))
    n = len(z)
    dens = stats.norm.logpdf(z[:, None, :], loc=mu[None], scale=sigma[None])  # (i, k, j)
    joint = special.logsumexp(dens.sum(axis=2), axis=1) - math.log(n)
    marginals = (special.logsumexp(dens, axis=1) - math.log(n)).sum(axis=1)
    return float(np.mean(joint - marginals))


def test_log_densities_match_scipy():
    z, mu, sigma = _posteriors(7, 3, seed=1)
    expected = stats.norm.logpdf(z.numpy()[:, None, :], loc=mu.numpy()[None],
                                 scale=sigma.numpy()[None])
    np.testing.assert_allclose(log_normal_pairs(z, mu, sigma).numpy(), expected, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), d=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_mws_on_the_whole_dataset_is_the_exact_tc_plus_a_constant(n, d, seed):
    # C11 (a): with M = N the batch is the dataset, and MWS differs from the exact-mixture
    # TC only by (d_z - 1) log N, which carries no gradient.
    z, mu, sigma = _posteriors(n, d, seed)
    mws = float(total_correlation(z, mu, sigma, dataset_size=n))
    assert mws == pytest.approx(_exact_mixture_tc(z, mu, sigma) + (d - 1) * math.log(n),
                                rel=1e-10, abs=1e-10)


def test_one_latent_dimension_has_no_total_correlation_under_either_estimator():
    z, mu, sigma = _posteriors(30, 1, seed=2)
    for estimator in ("mws", "mss"):
        assert float(total_correlation(z, mu, sigma, 100, estimator)) == pytest.approx(0, abs=1e-12)


def test_mws_minus_its_constant_approaches_zero_for_a_factorised_posterior():
    # C11 (b): independent coordinates, so the true TC is 0; the raw MWS value is not,
    # because of the constant, and the corrected one shrinks as the batch grows.
    n, d = 2000, 3
    z, mu, sigma = _posteriors(n, d, seed=3, coupled=False)
    raw = float(total_correlation(z, mu, sigma, n))
    assert abs(raw - (d - 1) * math.log(n)) < 0.05 < raw
    small = float(total_correlation(z[:50], mu[:50], sigma[:50], 50)) - (d - 1) * math.log(50)
    coupled = _posteriors(n, d, seed=3)
    assert float(total_correlation(*coupled, n)) - (d - 1) * math.log(n) > 0.3
    assert abs(raw - (d - 1) * math.log(n)) < abs(small)


@pytest.mark.parametrize(("batch", "n"), [(2, 2), (2, 10), (5, 5), (5, 1000), (64, 60000)])
def test_mss_weights_rows_sum_to_one_with_the_own_point_on_the_diagonal(batch, n):
    w = mss_log_weights(batch, n).exp()
    np.testing.assert_allclose(w.sum(dim=1).numpy(), np.ones(batch), rtol=1e-12)
    m = batch - 1
    np.testing.assert_allclose(torch.diagonal(w).numpy(), np.full(batch, 1 / n))
    nxt = w[torch.arange(batch), (torch.arange(batch) + 1) % batch]
    np.testing.assert_allclose(nxt.numpy(), np.full(batch, (n - m) / (n * m)), atol=1e-18)
    if batch > 2:
        # The reference code's bug set column 0, not the diagonal: rows 1.. must not
        # carry the own-point weight in column 0.
        assert not torch.allclose(w[1:, 0], torch.full((batch - 1,), 1 / n,
                                                        dtype=torch.float64))


def test_mss_estimates_log_q_without_the_mws_offset():
    # MSS's weights sum to 1 per row, so log q(z_i) carries no -log N offset; on a large
    # factorised batch its TC is near 0 without any correction.
    n, d = 4000, 3
    z, mu, sigma = _posteriors(n, d, seed=4, coupled=False)
    batch = slice(0, 1000)
    tc = float(total_correlation(z[batch], mu[batch], sigma[batch], n, "mss"))
    assert abs(tc) < 0.1
    joint, _ = log_aggregate(z[batch], mu[batch], sigma[batch], n, "mss")
    exact = special.logsumexp(stats.norm.logpdf(
        z[batch].numpy()[:, None, :], loc=mu.numpy()[None], scale=sigma.numpy()[None]
    ).sum(axis=2), axis=1) - math.log(n)
    assert float(np.mean(np.abs(joint.numpy() - exact))) < 0.2


def test_the_estimate_is_differentiable():
    z, mu, sigma = _posteriors(16, 4, seed=5)
    mu = mu.clone().requires_grad_(True)
    total_correlation(z, mu, sigma, 1000).backward()
    assert mu.grad is not None and torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0


@pytest.mark.parametrize(("shape", "n", "message"), [
    ((1, 3), 10, r"needs a batch of at least 2 inputs, got 1"),
    ((4, 3), 3, r"dataset_size must be an integer >= the batch size 4, got 3"),
    ((4,), 10, r"must share one \(batch, d_z\) shape"),
])
def test_bad_batches_are_one_line(shape, n, message):
    x = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(RcertError, match=message):
        total_correlation(x, x, x + 1, n)
    with pytest.raises(RcertError, match=r"unknown total-correlation estimator 'exact'"):
        total_correlation(torch.zeros(4, 2), torch.zeros(4, 2), torch.ones(4, 2), 10, "exact")
