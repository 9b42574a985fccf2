"""What rcert.data.arrays accepts as inputs from a .npy/.npz: finite numbers, one non-empty
sample per row, integer labels; anything else is a one-line RcertError naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rcert.data.dataset import load_data
from rcert.errors import RcertError


def _raises(spec: str, match: str) -> None:
    with pytest.raises(RcertError, match=match) as info:
        load_data(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([[0.0, 1.0], [np.nan, 0.0], [0.0, np.inf]], r"in 2 inputs, the first at index 1"),
        ([[0.0, 1.0], [0.0, 1.0], [-np.inf, 0.0]], r"in 1 inputs, the first at index 2"),
        ([[0.0, 1.0], [1e300, 0.0]], r"in 1 inputs, the first at index 1"),  # inf as float32
    ],
)
def test_non_finite_inputs_name_the_file_and_the_first_bad_input(
    tmp_path: Path, values: list, match: str
) -> None:
    np.save(tmp_path / "nan.npy", np.array(values))
    _raises(f"{tmp_path}/nan.npy", rf"nan\.npy holds NaN or infinite values \(as float32\) {match}")
    np.savez(tmp_path / "nan.npz", x=np.array(values)[:, None])
    _raises(f"{tmp_path}/nan.npz", r"nan\.npz holds NaN or infinite values")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((3, 0)), r"inputs of shape \(0,\), which hold no values"),
        (np.zeros((3, 2, 0, 4)), r"inputs of shape \(2, 0, 4\), which hold no values"),
        (np.zeros(()), r"shape \(\): store one sample per row"),
        (np.zeros((2, 2), dtype=complex), "complex128 values"),
        (np.zeros((2, 2), dtype="datetime64[s]"), "datetime64"),
        (np.zeros((2, 2), dtype=[("a", "<f4")]), "values: store integer or float pixels"),
        (np.full((2, 2), -1), "outside 0..255"),
    ],
    ids=["zero-width", "zero-pixels", "scalar", "complex", "datetime", "structured", "negative"],
)
def test_arrays_that_are_not_inputs(tmp_path: Path, array: np.ndarray, match: str) -> None:
    np.save(tmp_path / "a.npy", array)
    _raises(f"{tmp_path}/a.npy", match)


def test_accepted_dtypes_become_float32(tmp_path: Path) -> None:
    for dtype, scale in (("?", 1), (">u2", 255), ("<f2", 1), (">f8", 1)):
        array = np.ones((2, 3), dtype=dtype)
        np.save(tmp_path / "a.npy", array)
        x = load_data(f"{tmp_path}/a.npy").x.numpy()
        np.testing.assert_array_equal(x, np.full((2, 3), 1 / scale, dtype=np.float32))


@pytest.mark.parametrize(
    "labels",
    [np.zeros(3), np.zeros((2, 1), int), np.zeros(4, int), np.array(["a", "b"]),
     np.zeros(2, bool)],
    ids=["float", "2-d", "too-many", "text", "bool"],
)
def test_labels_of_the_wrong_kind_or_length(tmp_path: Path, labels: np.ndarray) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3)), y=labels)
    _raises(f"{tmp_path}/d.npz", r"'y' must hold 2 integer labels, one per input")


def test_an_npz_without_the_requested_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3)))
    _raises(f"{tmp_path}/d.npz:key=x", r"no array 'x' \(keys: images\)")
