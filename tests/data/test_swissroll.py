"""The ``swissroll`` dataset: the classic roll from fixed seeds, scaled into [0, 1] by fixed
constants, labelled by the quarter of its roll parameter, split like dSprites."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcert.data import swissroll
from rcert.data.dataset import load_data
from rcert.data.specs import parse_spec
from rcert.errors import RcertError


def test_shapes_bounds_and_default_spec() -> None:
    data = load_data("swissroll:all")
    assert str(data.spec) == "swissroll:all:n=2000:noise=0.05"
    assert data.x.shape == (2000, 3) and data.x.dtype == torch.float32 and data.input_shape == (3,)
    assert data.x.min() >= 0 and data.x.max() <= 1
    assert data.y.dtype == np.int64 and set(data.y) == {0, 1, 2, 3}
    assert list(data.factors.columns) == ["t", "height"]
    assert data.data_range == (0.0, 1.0)
    assert len(load_data("swissroll")) == 400  # test, the last 20%


def test_is_deterministic_and_a_smaller_n_is_a_prefix() -> None:
    first, second = load_data("swissroll:all:n=500"), load_data("swissroll:all:n=500")
    assert first.x.numpy().tobytes() == second.x.numpy().tobytes()
    np.testing.assert_array_equal(first.y, second.y)
    larger = load_data("swissroll:all:n=900")
    torch.testing.assert_close(larger.x[:500], first.x, rtol=0, atol=0)
    np.testing.assert_array_equal(larger.y[:500], first.y)


def test_clean_points_follow_the_documented_formula() -> None:
    data = load_data("swissroll:all:n=300:noise=0")
    t, height = data.factors["t"].to_numpy(), data.factors["height"].to_numpy()
    assert (1.5 * np.pi <= t).all() and (t <= 4.5 * np.pi).all()
    assert (0 <= height).all() and (height <= 21).all()
    clean = np.stack([t * np.cos(t), height, t * np.sin(t)], axis=1)
    expected = (clean - np.array([1.5, 10.5, 1.5])) / 30 + 0.5
    np.testing.assert_allclose(data.x.numpy(), expected, rtol=0, atol=1e-7)
    # The clean roll stays well inside the box, so nothing is clipped.
    assert data.x.min() > 0.08 and data.x.max() < 0.93
    # Labels: the quarter of [1.5 pi, 4.5 pi] that holds t.
    quarter = np.floor((t - 1.5 * np.pi) / (0.75 * np.pi)).astype(np.int64)
    np.testing.assert_array_equal(data.y, np.minimum(quarter, 3))


def test_noise_is_added_with_its_own_fixed_stream() -> None:
    clean = load_data("swissroll:all:n=200:noise=0").x.numpy().astype(np.float64)
    noisy = load_data("swissroll:all:n=200:noise=0.5").x.numpy().astype(np.float64)
    expected = 0.5 * np.random.default_rng(1).standard_normal((200, 3)) / 30
    np.testing.assert_allclose(noisy - clean, expected, rtol=0, atol=1e-6)
    loud = load_data("swissroll:all:n=2000:noise=1").x
    assert loud.min() >= 0 and loud.max() <= 1


def test_labels_are_balanced_quarters_in_order_of_t() -> None:
    data = load_data("swissroll:all:n=4000")
    counts = np.bincount(data.y, minlength=4)
    assert (np.abs(counts - 1000) < 120).all()
    t = data.factors["t"].to_numpy()
    for k in range(3):
        assert t[data.y == k].max() <= t[data.y == k + 1].min()


def test_split_is_80_20_of_the_same_draw() -> None:
    train, test, every = (load_data(f"swissroll:{s}:n=50") for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (40, 10, 50)
    torch.testing.assert_close(every.x, torch.cat([train.x, test.x]), rtol=0, atol=0)
    np.testing.assert_array_equal(every.y, np.concatenate([train.y, test.y]))
    np.testing.assert_array_equal(test.index, np.arange(10))
    assert test.factors.index.tolist() == list(range(10))


def test_range_moves_the_roll_onto_minus_one_one() -> None:
    unit = load_data("swissroll:all:n=300")
    signed = load_data("swissroll:all:n=300:range=-1,1")
    assert signed.data_range == (-1.0, 1.0) and str(signed.spec).endswith(":range=-1,1")
    np.testing.assert_array_equal(signed.x.numpy(), unit.x.numpy() * 2 - 1)
    assert signed.x.min() >= -1 and signed.x.max() <= 1


@pytest.mark.parametrize(("text", "canonical"), [
    ("swissroll", "swissroll:test:n=2000:noise=0.05"),
    ("swissroll:noise=5e-2:n=0100", "swissroll:test:n=100:noise=0.05"),
    ("swissroll:noise=0.0:train", "swissroll:train:n=2000:noise=0"),
    ("swissroll:noise=-0", "swissroll:test:n=2000:noise=0"),
    ("swissroll:noise=1", "swissroll:test:n=2000:noise=1"),
    ("swissroll:noise=0.123456789", "swissroll:test:n=2000:noise=0.123456789"),
])
def test_canonical_strings(text: str, canonical: str) -> None:
    spec = parse_spec(text)
    assert str(spec) == canonical and parse_spec(str(spec)) == spec


@pytest.mark.parametrize(("text", "match"), [
    ("swissroll:n=0", "n=0 must be a whole number in 1..1000000"),
    (f"swissroll:n={swissroll.MAX_POINTS + 1}", "n=1000001"),
    ("swissroll:noise=-0.1", "noise=-0.1 must be a number in 0..1"),
    ("swissroll:noise=2", "noise=2"),
    ("swissroll:noise=nan", "noise=nan"),
    ("swissroll:noise=inf", "noise=inf"),
    ("swissroll:noise=lots", "noise=lots"),
    ("swissroll:res=8", "unknown option 'res' for swissroll: known options are n, noise, range"),
    ("swissroll:/data", "unexpected item '/data'"),
])
def test_bad_swissroll_specs(text: str, match: str) -> None:
    with pytest.raises(RcertError, match=match) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)
