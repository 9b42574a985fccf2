import torch
from scipy import stats

from rcert.engine import montecarlo


def _norms(model, x, n, max_rows, seed=0):
    mu, sigma = model.encode(x)
    return montecarlo.distortion_norms(model, mu.detach(), sigma.detach(),
                                       index=torch.arange(len(x)), n_samples=n, seed=seed,
                                       max_rows=max_rows)


def test_linear_vae_distances_are_scaled_chi(linear_vae):
    dist = _norms(linear_vae, torch.rand(4, 12), 4000, 10**6)
    scaled = (dist.double() / (linear_vae.w * linear_vae.s)) ** 2
    assert stats.kstest(scaled.flatten().numpy(), stats.chi2(3).cdf).pvalue > 1e-3


def test_chunking_changes_results_only_by_float_rounding(tiny_vae):
    # BLAS blocks differently for other batch shapes, so agreement is to rounding, not bits;
    # the same chunking (same config) is bit-for-bit reproducible.
    x = torch.rand(9, 10)
    whole = _norms(tiny_vae, x, 50, 10**6)
    assert torch.equal(_norms(tiny_vae, x, 50, 10**6), whole)
    for max_rows in (1, 7, 64, 449):
        assert torch.allclose(_norms(tiny_vae, x, 50, max_rows), whole, rtol=1e-5, atol=1e-6)


def test_rows_for_budget_scales_with_budget_and_size():
    assert montecarlo.rows_for_budget(256, 784) > montecarlo.rows_for_budget(64, 784)
    assert montecarlo.rows_for_budget(256, 64) > montecarlo.rows_for_budget(256, 784)
    assert montecarlo.rows_for_budget(0.001, 10**6) == 16


def test_progress_callback_counts_every_decoded_code(tiny_vae):
    seen = []
    mu, sigma = tiny_vae.encode(torch.rand(5, 10))
    montecarlo.distortion_norms(tiny_vae, mu.detach(), sigma.detach(), index=torch.arange(5),
                                n_samples=33, seed=0, max_rows=20, on_rows=seen.append)
    assert sum(seen) == 5 * 33


def test_cpu_batches_are_capped_for_cache_but_not_gpu_ones():
    assert montecarlo.rows_for_budget(10**6, 64) == 16384
    assert montecarlo.rows_for_budget(10**6, 64, "cuda") > 16384
