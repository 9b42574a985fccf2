"""Hostile CIFAR-10 batches (rcert.data.cifar): every field is checked before arrays are
built from it, and the batch's size before it is read."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rcert.data.dataset import load_data
from rcert.errors import RcertError


def _write(folder: Path, batch: Any) -> None:
    (folder / "test_batch").write_bytes(pickle.dumps(batch, 4))


def _raises(folder: Path, match: str) -> None:
    with pytest.raises(RcertError, match=match) as info:
        load_data(f"cifar10:{folder}")
    assert "\n" not in str(info.value)


def _nested(depth: int) -> list:
    value: list = [0]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "labels",
    [[[0, 1], [2]], [0, [1]], [_nested(20), 0], [0, "a"], [0, 10], [-1, 0], [True, False],
     [2**80, 0], [0.0, 1.0], (0, 1), {0: 0, 1: 1}, np.zeros((2, 1), int), np.array([0.0, 1.0]),
     np.array([0, 12]), np.zeros(3, int), b"\x00\x01"],
    ids=["ragged", "nested", "deep", "text", "class-10", "negative", "bool", "huge-int",
         "floats", "tuple", "dict", "2-d", "float-array", "array-class-12", "array-too-long",
         "bytes"],
)
def test_labels_that_are_not_a_flat_list_of_classes(tmp_path: Path, labels: Any) -> None:
    _write(tmp_path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": labels})
    _raises(tmp_path, r"test_batch: 'labels' must be 2 integers in 0\.\.9, one per image")


def test_labels_as_an_integer_array_are_accepted(tmp_path: Path) -> None:
    _write(tmp_path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array([9, 0])})
    assert load_data(f"cifar10:{tmp_path}").y.tolist() == [9, 0]


@pytest.mark.parametrize(
    "data",
    [np.zeros((2, 3071), np.uint8), np.zeros((2, 3, 1024), np.uint8), np.zeros((2, 3072)),
     np.zeros(6144, np.uint8), [[0] * 3072] * 2, b"\x00" * 6144],
    ids=["short-rows", "3-d", "floats", "flat", "list", "bytes"],
)
def test_data_that_is_not_uint8_rows_of_3072(tmp_path: Path, data: Any) -> None:
    _write(tmp_path, {b"data": data, b"labels": [0, 1]})
    _raises(tmp_path, r"'data' must be a uint8 array \(N, 3072\)")


def test_deeply_nested_batches_are_refused_before_loading(tmp_path: Path) -> None:
    _write(tmp_path, {b"data": np.zeros((1, 3072), np.uint8), b"labels": _nested(40)})
    _raises(tmp_path, r"CIFAR-10 batch .*test_batch nests objects more than 32 deep")


def test_the_size_ceiling_is_checked_before_reading(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path, {b"data": np.zeros((100, 3072), np.uint8), b"labels": [0] * 100})
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "0.1")
    _raises(tmp_path, r"test_batch holds 0\.29\d* MB, more than the 0\.1 MB rcert reads")
