"""Inputs from the user's ``.npy``/``.npz`` files (never unpickled; see :mod:`rcert.data.npy`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rcert.data.npy import NPY_MAGIC, ZIP_MAGICS, Npz, read_npy
from rcert.data.specs import DataSpec
from rcert.data.splits import Loaded
from rcert.errors import RcertError
from rcert.reading import open_regular

_HINT = "pass the path of a .npy or .npz file"


def _choose_key(keys: list[str], requested: str | None, path: str) -> str:
    listed = ", ".join(keys) or "none"
    if requested is not None:
        if requested not in keys:
            raise RcertError(f"{path} has no array {requested!r} (keys: {listed}): fix key=")
        return requested
    if "x" in keys:
        return "x"
    candidates = [k for k in keys if k != "y"]  # y holds labels, never inputs
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise RcertError(f"{path} holds no input array (keys: {listed}): save the inputs as x")
    raise RcertError(f"{path} holds several arrays (keys: {listed}): choose one with :key=NAME")


def _as_float(x: np.ndarray, path: str) -> np.ndarray:
    if x.dtype.kind in "bf":
        # Values beyond float32's range become inf, which _as_inputs refuses by input.
        with np.errstate(over="ignore"):
            return x.astype(np.float32)
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise RcertError(
                f"{path} holds integers outside 0..255: store 8-bit pixels or floats in [0, 1]"
            )
        scaled = x.astype(np.float32)
        scaled /= 255  # in place: one float copy of the data, not two
        return scaled
    raise RcertError(f"{path} holds {x.dtype} values: store integer or float pixels")


def _as_inputs(x: np.ndarray, path: str) -> np.ndarray:
    if x.ndim < 2:
        raise RcertError(
            f"{path} holds an array of shape {x.shape}: store one sample per row, (N, D) or "
            "(N, C, H, W)"
        )
    if 0 in x.shape[1:]:
        raise RcertError(f"{path} holds inputs of shape {x.shape[1:]}, which hold no values: "
                         f"store one non-empty sample per row")
    x = _as_float(x, path)
    bad = ~np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
    if bad.any():
        raise RcertError(f"{path} holds NaN or infinite values (as float32) in {int(bad.sum())} "
                         f"inputs, the first at index {int(np.argmax(bad))}: clean or drop them")
    return x


def _as_labels(y: np.ndarray, n: int, path: str) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise RcertError(
            f"{path}: 'y' must hold {n} integer labels, one per input, got {y.dtype} {y.shape}; "
            "fix or remove it"
        )
    return y.astype(np.int64)


def _load_npz(archive: Npz, requested: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    key = _choose_key(archive.keys, requested, archive.path)
    x = _as_inputs(archive.read(key), archive.path)
    y = None
    if key != "y" and "y" in archive.keys:
        y = _as_labels(archive.read("y"), len(x), archive.path)
    return x, y, key


def load(spec: DataSpec) -> Loaded:
    """The inputs (and labels ``y`` of an .npz) of the file ``spec.path``."""
    path = spec.path
    requested = dict(spec.options).get("key")
    with open_regular(path, "data", _HINT) as handle:
        magic = handle.read(len(NPY_MAGIC))
        handle.seek(0)
        if magic == NPY_MAGIC:
            if requested is not None:
                raise RcertError(f"{path} holds a single array: drop key={requested}")
            return _as_inputs(read_npy(handle, path), path), None, None, spec
        if magic[:4] not in ZIP_MAGICS:
            raise RcertError(f"data {path} is neither a .npy nor a .npz file: {_HINT} "
                             f"written by np.save or np.savez")
        x, y, key = _load_npz(Npz(handle, path), requested)
    return x, y, None, replace(spec, options=(("key", key),))
