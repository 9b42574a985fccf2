import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rcert.engine import noise


def test_standard_normal_distribution():
    eta = noise.gaussian(0, torch.arange(40), 2500, 5).double().flatten().numpy()
    assert stats.kstest(eta, "norm").pvalue > 1e-3
    assert abs(eta.mean()) < 0.005
    assert abs(eta.std() - 1) < 0.005


def test_dimensions_are_independent():
    eta = noise.gaussian(1, torch.arange(4), 20000, 6).reshape(-1, 6).double()
    corr = torch.corrcoef(eta.T) - torch.eye(6, dtype=torch.float64)
    assert corr.abs().max() < 0.02


def test_inputs_and_streams_are_independent():
    a = noise.gaussian(3, torch.arange(30), 3000, 1).squeeze(-1).double()
    corr = torch.corrcoef(a) - torch.eye(30, dtype=torch.float64)
    assert corr.abs().max() < 0.08  # 3000 draws: |rho| ~ 0.018 each, max of 435 pairs
    b = noise.gaussian(3, torch.arange(30), 3000, 1, stream=1).squeeze(-1).double()
    cross = torch.corrcoef(torch.cat([a, b]))[:30, 30:]
    assert cross.abs().max() < 0.08
    assert not torch.equal(a, b)


def test_same_seed_same_draws_other_seed_other_draws():
    idx = torch.arange(5)
    assert torch.equal(noise.gaussian(7, idx, 100, 3), noise.gaussian(7, idx, 100, 3))
    assert not torch.equal(noise.gaussian(7, idx, 100, 3), noise.gaussian(8, idx, 100, 3))
    big = 2**40 + 7
    assert not torch.equal(noise.gaussian(big, idx, 10, 3), noise.gaussian(7, idx, 10, 3))


@settings(max_examples=25, deadline=None)
@given(split=st.integers(0, 60), d=st.integers(1, 7))
def test_chunked_samples_equal_one_call(split, d):
    idx = torch.tensor([0, 5, 2**33 + 1])
    whole = noise.gaussian(11, idx, 60, d)
    parts = torch.cat([noise.gaussian(11, idx, split, d),
                       noise.gaussian(11, idx, 60 - split, d, start=split)], dim=1)
    assert torch.equal(whole, parts)


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, 999), min_size=1, max_size=8))
def test_an_input_draws_do_not_depend_on_its_batch(rows):
    full = noise.gaussian(2, torch.arange(1000), 20, 4)
    sub = noise.gaussian(2, torch.tensor(rows), 20, 4)
    assert torch.equal(sub, full[rows])


def test_negative_seed_rejected():
    with pytest.raises(ValueError):
        noise.gaussian(-1, torch.arange(2), 3, 2)


def test_hash_is_a_bijection_on_a_sample():
    x = torch.arange(0, 2**20, dtype=torch.int64) * 4093
    h = noise.hash32(x & 0xFFFFFFFF)
    assert len(np.unique(h.numpy())) == len(x)
    assert int(h.min()) >= 0 and int(h.max()) < 2**32
