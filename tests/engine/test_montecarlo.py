import torch
from scipy import stats

from rcert.engine import montecarlo


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform test inputs, drawn on the CPU from a seeded generator."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _norms(model, x, n, max_rows, seed=0, device="cpu"):
    """Distances computed on ``device``, returned on the CPU."""
    model, x = model.to(device), x.to(device)
    with torch.no_grad():
        mu, sigma = model.encode(x)
    dist = montecarlo.distortion_norms(model, mu, sigma,
                                       index=torch.arange(len(x), device=device), n_samples=n,
                                       seed=seed, max_rows=max_rows)
    assert dist.device.type == torch.device(device).type
    return dist.cpu()


def test_linear_vae_distances_are_scaled_chi(linear_vae, device):
    dist = _norms(linear_vae, _rand(4, 12), 4000, 10**6, device=device)
    scaled = (dist.double() / (linear_vae.w * linear_vae.s)) ** 2
    assert stats.kstest(scaled.flatten().numpy(), stats.chi2(3).cdf).pvalue > 1e-3


def test_chunking_changes_results_only_by_float_rounding(tiny_vae, device):
    # BLAS blocks differently for other batch shapes, so agreement is to rounding, not bits;
    # the same chunking (same config) is bit-for-bit reproducible.
    x = _rand(9, 10, seed=1)
    whole = _norms(tiny_vae, x, 50, 10**6, device=device)
    assert torch.equal(_norms(tiny_vae, x, 50, 10**6, device=device), whole)
    for max_rows in (1, 7, 64, 449):
        assert torch.allclose(_norms(tiny_vae, x, 50, max_rows, device=device), whole,
                              rtol=1e-5, atol=1e-6)


def test_the_device_changes_results_only_by_float_rounding(tiny_vae, device):
    # The noise is a function of (seed, input, draw), not of the device.
    x = _rand(6, 10, seed=2)
    on_cpu = _norms(tiny_vae, x, 40, 10**6)
    assert torch.allclose(_norms(tiny_vae, x, 40, 10**6, device=device), on_cpu,
                          rtol=1e-4, atol=1e-5)


def test_rows_for_budget_scales_with_budget_and_size():
    assert montecarlo.rows_for_budget(256, 784) > montecarlo.rows_for_budget(64, 784)
    assert montecarlo.rows_for_budget(256, 64) > montecarlo.rows_for_budget(256, 784)
    assert montecarlo.rows_for_budget(0.001, 10**6) == 16


def test_progress_callback_counts_every_decoded_code(tiny_vae, device):
    seen = []
    tiny_vae.to(device)
    with torch.no_grad():
        mu, sigma = tiny_vae.encode(_rand(5, 10, seed=3).to(device))
    montecarlo.distortion_norms(tiny_vae, mu, sigma, index=torch.arange(5, device=device),
                                n_samples=33, seed=0, max_rows=20, on_rows=seen.append)
    assert sum(seen) == 5 * 33


def test_cpu_batches_are_capped_for_cache_but_not_gpu_ones():
    assert montecarlo.rows_for_budget(10**6, 64) == 16384
    assert montecarlo.rows_for_budget(10**6, 64, "cuda") > 16384
