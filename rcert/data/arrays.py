"""Inputs from the user's ``.npy``/``.npz`` files (never unpickled)."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from rcert.data.specs import DataSpec
from rcert.data.splits import Loaded
from rcert.errors import RcertError

_ARRAY_FILE_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


def _read_member(archive: np.lib.npyio.NpzFile, key: str, path: str) -> np.ndarray:
    # NpzFile decompresses lazily, so a corrupt or object-typed member only fails on access.
    try:
        return archive[key]
    except _ARRAY_FILE_ERRORS as err:
        raise RcertError(
            f"cannot read {key!r} from {path} ({err}): save it as a plain array"
        ) from err


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
    raise RcertError(f"{path} holds several arrays (keys: {listed}): choose one with :key=NAME")


def _as_inputs(x: np.ndarray, path: str) -> np.ndarray:
    if x.ndim < 2:
        raise RcertError(
            f"{path} holds an array of shape {x.shape}: store one sample per row, (N, D) or "
            "(N, C, H, W)"
        )
    if x.dtype.kind == "b":
        return x.astype(np.float32)
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise RcertError(
                f"{path} holds integers outside 0..255: store 8-bit pixels or floats in [0, 1]"
            )
        return x.astype(np.float32) / 255
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    raise RcertError(f"{path} holds {x.dtype} values: store integer or float pixels")


def _as_labels(y: np.ndarray, n: int, path: str) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise RcertError(
            f"{path}: 'y' must hold {n} integer labels, one per input, got {y.dtype} {y.shape}; "
            "fix or remove it"
        )
    return y.astype(np.int64)


def load(spec: DataSpec) -> Loaded:
    path = spec.path
    requested = dict(spec.options).get("key")
    if not Path(path).is_file():
        raise RcertError(f"no such file {path}: pass the path of a .npy or .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except _ARRAY_FILE_ERRORS as err:
        raise RcertError(f"cannot load {path} ({err}): pass a .npy/.npz of plain arrays") from err
    if isinstance(loaded, np.ndarray):
        if requested is not None:
            raise RcertError(f"{path} holds a single array: drop key={requested}")
        return _as_inputs(loaded, path), None, None, spec
    with loaded:
        key = _choose_key(list(loaded.files), requested, path)
        x = _as_inputs(_read_member(loaded, key, path), path)
        y = None
        if key != "y" and "y" in loaded.files:
            y = _as_labels(_read_member(loaded, "y", path), len(x), path)
    return x, y, None, replace(spec, options=(("key", key),))
