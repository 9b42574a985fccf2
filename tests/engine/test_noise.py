import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rcert.engine import noise
from rcert.errors import RcertError


def _draw(seed, index, n, d, device, **kw):
    """``noise.gaussian`` with the index on ``device``; the draws come back on the CPU."""
    eta = noise.gaussian(seed, torch.as_tensor(index, device=device), n, d, **kw)
    assert eta.device.type == device.type
    return eta.cpu()


def test_standard_normal_distribution(device):
    eta = _draw(0, torch.arange(40), 2500, 5, device).double().flatten().numpy()
    assert stats.kstest(eta, "norm").pvalue > 1e-3
    assert abs(eta.mean()) < 0.005
    assert abs(eta.std() - 1) < 0.005


def test_dimensions_are_independent(device):
    eta = _draw(1, torch.arange(4), 20000, 6, device).reshape(-1, 6).double()
    corr = torch.corrcoef(eta.T) - torch.eye(6, dtype=torch.float64)
    assert corr.abs().max() < 0.02


def test_inputs_and_streams_are_independent(device):
    a = _draw(3, torch.arange(30), 3000, 1, device).squeeze(-1).double()
    corr = torch.corrcoef(a) - torch.eye(30, dtype=torch.float64)
    assert corr.abs().max() < 0.08  # 3000 draws: |rho| ~ 0.018 each, max of 435 pairs
    b = _draw(3, torch.arange(30), 3000, 1, device, stream=1).squeeze(-1).double()
    cross = torch.corrcoef(torch.cat([a, b]))[:30, 30:]
    assert cross.abs().max() < 0.08
    assert not torch.equal(a, b)


def test_same_seed_same_draws_other_seed_other_draws(device):
    idx = torch.arange(5)
    assert torch.equal(_draw(7, idx, 100, 3, device), _draw(7, idx, 100, 3, device))
    assert not torch.equal(_draw(7, idx, 100, 3, device), _draw(8, idx, 100, 3, device))
    big = 2**40 + 7
    assert not torch.equal(_draw(big, idx, 10, 3, device), _draw(7, idx, 10, 3, device))


def test_draws_do_not_depend_on_the_device(device):
    # The integer hash is exact everywhere; only log/cos/sin of Box-Muller may round apart.
    idx = torch.tensor([0, 3, 2**33 + 1])
    torch.testing.assert_close(_draw(5, idx, 500, 4, device, dtype=torch.float64),
                               noise.gaussian(5, idx, 500, 4, dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(split=st.integers(0, 60), d=st.integers(1, 7))
def test_chunked_samples_equal_one_call(device, split, d):
    idx = torch.tensor([0, 5, 2**33 + 1])
    whole = _draw(11, idx, 60, d, device)
    parts = torch.cat([_draw(11, idx, split, d, device),
                       _draw(11, idx, 60 - split, d, device, start=split)], dim=1)
    assert torch.equal(whole, parts)


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, 999), min_size=1, max_size=8))
def test_an_input_draws_do_not_depend_on_its_batch(device, rows):
    full = _draw(2, torch.arange(1000), 20, 4, device)
    sub = _draw(2, torch.tensor(rows), 20, 4, device)
    assert torch.equal(sub, full[rows])


def test_negative_seed_rejected(device):
    with pytest.raises(RcertError):
        noise.gaussian(-1, torch.arange(2, device=device), 3, 2)


def test_hash_is_a_bijection_on_a_sample(device):
    x = torch.arange(0, 2**20, dtype=torch.int64, device=device) * 4093
    h = noise.hash32(x & 0xFFFFFFFF).cpu()
    assert len(np.unique(h.numpy())) == len(x)
    assert int(h.min()) >= 0 and int(h.max()) < 2**32
