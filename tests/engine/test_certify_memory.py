"""certify keeps O(N) state: each chunk reduces its distance sample to per-input scalars.

The order statistics are checked against the definitions of SPEC section 3 on the full,
brute-force distance sample, not against the ranks the implementation computes.
"""

import importlib
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import UNBOXED, LinearVAE, TinyMLPVAE

from rcert.engine import montecarlo
from rcert.errors import RcertError
from rcert.statistics import binomial

certify_mod = importlib.import_module("rcert.engine.certify")


def _full_sample(model, x, *, n_samples, seed):
    """Every distance of every input in one decoder call per input: ``(N, n_samples)``."""
    with torch.no_grad():
        mu, sigma = model.encode(x)
    index = torch.arange(x.shape[0])
    return montecarlo.distortion_norms(model, mu, sigma, index=index, n_samples=n_samples,
                                       seed=seed, max_rows=n_samples).double().numpy()


def _brute_force(dist, *, r, m, alpha):
    """k, r_min and r_min_upper of each row straight from their definitions (SPEC section 3).

    r_min: the smallest sampled distance d with #{dist <= d} / n > m (exactly, m as the
    decimal written). r_min_upper: the smallest d whose count certifies, i.e. whose
    Clopper-Pearson lower bound exceeds m; inf when none does.
    """
    n = dist.shape[1]
    counts = (dist[:, None, :] <= dist[:, :, None]).sum(axis=2)   # (N, n): #{<= d_i}
    m_exact = Fraction(repr(m))
    robust = np.vectorize(lambda c: Fraction(int(c), n) > m_exact)(counts)
    certified = binomial.clopper_pearson_lower(counts, n, alpha) > m
    r_min = np.where(robust, dist, np.inf).min(axis=1)
    r_min_upper = np.where(certified, dist, np.inf).min(axis=1)
    return (dist <= r).sum(axis=1), r_min, r_min_upper


@pytest.mark.parametrize("model_cls", [LinearVAE, TinyMLPVAE])
@pytest.mark.parametrize(("n_samples", "m", "alpha"),
                         [(100, 0.29, 0.01), (90, 0.7, 0.05), (301, 0.5, 0.001),
                          (5, 0.5, 0.001)])
def test_order_statistics_match_a_full_sort_whatever_the_chunking(model_cls, n_samples, m,
                                                                  alpha):
    model = model_cls()
    x = torch.rand(9, *model.input_shape, generator=torch.Generator().manual_seed(3))
    r = 0.6
    k, r_min, r_min_upper = _brute_force(_full_sample(model, x, n_samples=n_samples, seed=5),
                                         r=r, m=m, alpha=alpha)
    if n_samples == 5:
        assert np.all(np.isinf(r_min_upper))   # too few draws to certify anything
    rows = []
    # Budgets from "one input per chunk" (yet holding one input's draws) up to "every
    # input in one chunk".
    for memory_mb in (3e-3, 0.02, 0.05, 64.0):
        df = certify_mod.certify(model, x, r=r, m=m, n_samples=n_samples, alpha=alpha,
                                 seed=5, memory_mb=memory_mb, run=UNBOXED)
        np.testing.assert_array_equal(df["k"], k)
        # Decoder batch shapes differ from the brute force, so allow float rounding; a
        # wrong rank moves the value by a whole gap between draws, far above rtol.
        np.testing.assert_allclose(df["r_min"], r_min, rtol=1e-6)
        np.testing.assert_allclose(df["r_min_upper"], r_min_upper, rtol=1e-6)
        rows.append(df[["k", "r_min", "r_min_upper"]].to_numpy())
    for other in rows[1:]:
        np.testing.assert_allclose(other, rows[0], rtol=1e-6)


def _spy(monkeypatch):
    """Record what each chunk hands back and each distance call's chunk and decoder rows."""
    chunks, calls = [], []
    chunk_fn, norms_fn = certify_mod._certify_chunk, montecarlo.distortion_norms

    def chunk_spy(*args, **kwargs):
        out = chunk_fn(*args, **kwargs)
        chunks.append(out)
        return out

    def norms_spy(model, mu, sigma, **kwargs):
        calls.append((mu.shape[0], kwargs["n_samples"], kwargs["max_rows"]))
        return norms_fn(model, mu, sigma, **kwargs)

    monkeypatch.setattr(certify_mod, "_certify_chunk", chunk_spy)
    monkeypatch.setattr(montecarlo, "distortion_norms", norms_spy)
    return chunks, calls


def test_only_per_input_scalars_survive_a_chunk(monkeypatch, tiny_vae):
    chunks, calls = _spy(monkeypatch)
    n_inputs, n_samples = 23, 400
    x = torch.rand(n_inputs, 10, generator=torch.Generator().manual_seed(0))
    df = certify_mod.certify(tiny_vae, x, r=0.3, n_samples=n_samples, memory_mb=0.02)
    assert len(df) == n_inputs and len(chunks) > 2     # several chunks, or the test is moot
    for out, (b, _, _) in zip(chunks, calls, strict=True):
        for key, value in out.items():
            # Nothing of size B * n_samples (e.g. a sorted sample) may outlive the chunk.
            assert np.shape(value) == (b,), (key, np.shape(value))
    assert sum(b for b, _, _ in calls) == n_inputs


@pytest.mark.parametrize(("memory_mb", "n_samples", "floor"),
                         [(0.5, 2000, False), (4.0, 20000, False), (0.05, 400, True),
                          (0.02, 2000, True)])
def test_distances_and_decoder_batch_fit_the_budget_together(monkeypatch, memory_mb,
                                                             n_samples, floor):
    chunks, calls = _spy(monkeypatch)
    model = TinyMLPVAE(input_size=64)
    x = torch.rand(12, 64, generator=torch.Generator().manual_seed(1))
    certify_mod.certify(model, x, r=0.3, n_samples=n_samples, memory_mb=memory_mb)
    budget = memory_mb * 2**20
    one_row = 4 * n_samples                       # one input's float32 distances
    assert len(calls) == len(chunks) and all(n == n_samples for _, n, _ in calls)
    for b, _, max_rows in calls:
        # Distances plus one same-sized temporary, plus the decoder's working set.
        decoder = montecarlo.row_bytes(64) * max_rows
        assert b == 1 or 2 * b * one_row + decoder <= budget
    # Where the decoder's floor of MIN_ROWS rows alone overflows the budget, one input per
    # chunk is the floor; elsewhere chunks hold several inputs, or the test is moot.
    assert floor == (montecarlo.row_bytes(64) * montecarlo.MIN_ROWS > budget / 2)
    assert max(b for b, _, _ in calls) == 1 if floor else max(b for b, _, _ in calls) > 1


@pytest.mark.parametrize(("n_samples", "memory_mb"), [(10**12, 256.0), (2000, 0.01)])
def test_a_sample_that_cannot_fit_the_budget_is_refused_before_any_work(monkeypatch,
                                                                       n_samples, memory_mb):
    chunks, calls = _spy(monkeypatch)
    most = int(memory_mb * 2**20 // montecarlo.SAMPLE_BYTES)
    with pytest.raises(RcertError, match=rf"n_samples = {n_samples} needs .* at most "
                                         rf"n_samples = {most}; lower n_samples"):
        certify_mod.certify(TinyMLPVAE(input_size=64), torch.rand(2, 64), r=0.3,
                            n_samples=n_samples, memory_mb=memory_mb)
    assert not chunks and not calls
    # The largest sample that fits runs.
    df = certify_mod.certify(TinyMLPVAE(input_size=64), torch.rand(2, 64), r=0.3,
                             n_samples=min(most, 5000), memory_mb=memory_mb)
    assert (df["n"] == min(most, 5000)).all()
