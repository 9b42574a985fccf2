"""Targets of the targeted latent attack (spec section 2.2) and the other-input draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rcert.attacks.latent_targets import STREAM_LATENT_TARGET, latent_target, other_inputs
from rcert.errors import RcertError
from rcert.settings import LATENT_TARGETS

RANGE = (-1.0, 1.0)


def _clean(b: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 2 * torch.rand(b, 1, 5, 4, generator=g) - 1


def _target(kind: str, clean: torch.Tensor, index=None, **options) -> torch.Tensor:
    index = torch.arange(len(clean)) if index is None else index
    return latent_target(kind, clean=clean, data_range=options.pop("data_range", RANGE),
                         seed=options.pop("seed", 0), index=index, **options)


def test_constant_and_inverted_targets():
    clean = _clean()
    assert torch.equal(_target("black", clean), torch.full_like(clean, -1.0))
    assert torch.equal(_target("white", clean), torch.full_like(clean, 1.0))
    assert torch.equal(_target("black", clean, data_range=(0, 1)), torch.zeros_like(clean))
    inverted = latent_target("inverted", clean=(clean + 1) / 2, data_range=(0.0, 1.0), seed=0,
                             index=torch.arange(3))
    torch.testing.assert_close(inverted, 1 - (clean + 1) / 2)
    torch.testing.assert_close(_target("inverted", clean), -clean)
    for kind in LATENT_TARGETS:
        other = clean.flip(0) if kind == "other" else None
        made = _target(kind, clean.requires_grad_(), other=other)
        assert made.shape == clean.shape and made.dtype == clean.dtype
        assert not made.requires_grad


def test_prior_targets_are_uniform_in_the_range_and_keyed_by_index():
    clean = torch.zeros(400, 1, 8, 8, dtype=torch.float64)
    prior = _target("prior", clean, data_range=(0.0, 2.0), seed=3)
    assert prior.dtype == torch.float64 and torch.all((prior > 0) & (prior < 2))
    assert stats.kstest(prior.flatten().numpy() / 2, "uniform").pvalue > 1e-3
    # An input's target is a function of (seed, its index), not of its batch.
    index = torch.tensor([5, 17, 2])
    batch = _target("prior", clean[:3], index=index, seed=3)
    alone = _target("prior", clean[:1], index=index[1:2], seed=3)
    assert torch.equal(batch[1:2], alone)
    assert not torch.equal(batch, _target("prior", clean[:3], index=index, seed=4))
    assert not torch.equal(batch[0], batch[2])
    assert STREAM_LATENT_TARGET == 11


def test_other_target_is_passed_through_and_checked():
    clean = _clean()
    other = clean.flip(0)
    assert torch.equal(_target("other", clean, other=other), other)
    with pytest.raises(RcertError, match="needs the other inputs' images"):
        _target("other", clean)
    for shape in [(2, 1, 5, 4), (3, 1, 4, 5), (3, 20)]:
        with pytest.raises(RcertError, match=r"a target of shape .* does not match the "
                                             r"model's outputs \(3, 1, 5, 4\)") as info:
            _target("other", clean, other=torch.zeros(shape))
        assert "\n" not in str(info.value)


def test_unknown_kind_lists_the_choices():
    with pytest.raises(RcertError, match="choose one of: black, white, prior, inverted, other"):
        _target("grey", _clean())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 2**40), n_labels=st.integers(1, 4))
def test_other_inputs_are_others(n, seed, n_labels):
    picks = other_inputs(n, seed=seed)
    assert picks.dtype == np.int64 and picks.shape == (n,)
    assert np.all((picks >= 0) & (picks < n) & (picks != np.arange(n)))
    np.testing.assert_array_equal(picks, other_inputs(n, seed=seed))
    labels = np.random.default_rng(seed).integers(0, n_labels, size=n)
    if len(np.unique(labels)) < 2:
        with pytest.raises(RcertError, match="no other input of another label"):
            other_inputs(n, seed=seed, labels=labels, different_label=True)
        return
    picks = other_inputs(n, seed=seed, labels=labels, different_label=True)
    assert np.all(labels[picks] != labels) and np.all((picks >= 0) & (picks < n))


def test_other_inputs_are_uniform_among_the_candidates():
    labels = np.array([0, 1, 1, 2, 0, 2])
    counts = np.zeros((6, 6))
    for seed in range(600):
        picks = other_inputs(6, seed=seed, labels=labels, different_label=True)
        counts[np.arange(6), picks] += 1
    allowed = labels[:, None] != labels[None, :]
    assert np.all(counts[~allowed] == 0)
    # 4 candidates each: 150 expected per cell, binomial sd about 10.6.
    assert np.all(np.abs(counts[allowed] - 150) < 50)
    spread = np.zeros((5, 5))
    for seed in range(500):
        spread[np.arange(5), other_inputs(5, seed=seed)] += 1
    assert np.all(np.diag(spread) == 0)
    assert np.all(np.abs(spread[~np.eye(5, dtype=bool)] - 125) < 45)


@pytest.mark.parametrize(("n", "options", "message"), [
    (1, {}, "at least 2 inputs"),
    (True, {}, "at least 2 inputs"),
    (4, {"different_label": True}, "needs the inputs' labels"),
    (4, {"labels": np.zeros(3)}, "one label per input"),
    (3, {"labels": np.zeros(3), "different_label": True}, "one label only"),
])
def test_other_inputs_errors(n, options, message):
    with pytest.raises(RcertError, match=message) as info:
        other_inputs(n, seed=0, **options)
    assert "\n" not in str(info.value)
