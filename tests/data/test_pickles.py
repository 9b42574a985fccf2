"""The restricted unpickler (rcert.data.pickles): arrays and plain containers only, no
callable that allocates more than the pickle pays for, no nesting that crashes hashing."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from rcert.data import pickles
from rcert.errors import RcertError

SOURCE = Path("batch")


def _load(raw: bytes):
    return pickles.load_pickle(raw, SOURCE, "CIFAR-10 batch")


def _refused(raw: bytes, match: str) -> None:
    with pytest.raises(RcertError, match=match) as info:
        _load(raw)
    assert "\n" not in str(info.value)


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _call(callable_: bytes, *args: bytes) -> bytes:
    """REDUCE of ``callable_`` on the pickled ``args`` (MARK ... TUPLE)."""
    return callable_ + b"(" + b"".join(args) + b"tR"


def _bytes(data: bytes) -> bytes:
    return b"C" + bytes([len(data)]) + data


def _text(text: str) -> bytes:
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_of_every_protocol_load(protocol: int) -> None:
    data = np.arange(24, dtype=np.uint8).reshape(2, 12)
    batch = {b"data": data, b"labels": [1, 2], b"filenames": [b"a.png", b"b.png"]}
    loaded = _load(pickle.dumps(batch, protocol))
    np.testing.assert_array_equal(loaded[b"data"], data)
    assert loaded[b"labels"] == [1, 2]


def test_numpy_1_module_names_load() -> None:
    raw = pickle.dumps(np.arange(3, dtype=np.uint8), 2)
    assert b"numpy._core.multiarray" in raw
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    np.testing.assert_array_equal(_load(old), np.arange(3))


def test_a_full_size_batch_stays_within_the_bounds() -> None:
    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"testing batch 1 of 1",
             b"labels": [int(v) for v in rng.integers(0, 10, 10_000)],
             b"data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(10_000)]}
    raw = pickle.dumps(batch, 4)
    start = time.perf_counter()
    assert len(_load(raw)[b"labels"]) == 10_000
    assert time.perf_counter() - start < 1


def test_codecs_other_than_latin1_text_are_refused() -> None:
    # Nested _codecs.encode(..., 'hex') doubles the data at every level: 40 levels of a
    # few bytes each would ask for terabytes.
    hexed = _call(_global("_codecs", "encode"), _bytes(b"ab"), _text("hex"))
    _refused(hexed + b".", r"cannot unpickle batch \(_codecs.encode is only used on text")
    latin1 = _call(_global("_codecs", "encode"), _text("ab"), _text("latin1"))
    assert _load(latin1 + b".") == b"ab"


def test_ndarray_is_never_called_directly() -> None:
    # ndarray((10**9,), 'O') would allocate and fill 8 GB from a 40-byte pickle.
    call = _call(_global("numpy", "ndarray"), b"(J\x00\xca\x9a\x3bt", _bytes(b"O"))
    _refused(call + b".", r"cannot unpickle batch \(")


def test_reconstruct_only_builds_empty_arrays() -> None:
    reconstruct = _global("numpy._core.multiarray", "_reconstruct")
    ndarray = _global("numpy", "ndarray")
    big = _call(reconstruct, ndarray, b"(J\x00\xca\x9a\x3bt", _bytes(b"O"))
    _refused(big + b".", r"_reconstruct is only used for an empty ndarray")
    empty = _call(reconstruct, ndarray, b"(K\x00t", _bytes(b"b"))
    assert _load(empty + b".").shape == (0,)


def test_deep_nesting_is_refused_before_it_is_hashed() -> None:
    # A tuple nested a million deep, used as a dict key: hashing it overflows the C stack
    # (a segfault) in plain pickle.loads.
    deep = b"\x80\x04}" + b")" + b"\x85" * 1_000_000 + b"K\x01s."
    _refused(deep, r"batch nests objects more than 32 deep")


def test_memoised_objects_grown_later_count_at_their_grown_depth() -> None:
    # Each list is memoised empty, then filled with the previous one: the memo must see the
    # depth the list reaches, not the depth it had when it was memoised.
    raw = b"\x80\x04]q\x000"  # an empty list, memoised as 0, popped
    for level in range(1, 40):  # a new list memoised as level, then the last one put in it
        raw += b"]q" + bytes([level]) + b"h" + bytes([level - 1]) + b"a0"
    _refused(raw + b"h\x27.", r"nests objects more than 32 deep")


def test_too_many_operations(monkeypatch) -> None:
    monkeypatch.setattr(pickles, "MAX_OPS", 1000)
    _refused(pickle.dumps(list(range(2000)), 4), r"more than 1000 pickle operations")


@pytest.mark.parametrize(
    "raw",
    [b"garbage", pickle.dumps({b"data": 1})[:-3], b"\x80\x04h\x05.", b"\x80\x04a."],
    ids=["garbage", "truncated", "unknown-memo", "empty-stack"],
)
def test_damaged_pickles(raw: bytes) -> None:
    _refused(raw, r"cannot unpickle batch \(")
