"""CIFAR-10 from its python batches, read with an unpickler that admits only arrays
(:mod:`rcert.data.pickles`), every field checked before arrays are built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rcert.data.pickles import load_pickle
from rcert.data.specs import DataSpec, source_folder
from rcert.data.splits import Loaded, parts
from rcert.errors import RcertError
from rcert.reading import read_bytes

_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


_CIFAR_SUBDIR = "cifar-10-batches-py"


_CIFAR_PIXELS = 3 * 32 * 32


_CIFAR_CLASSES = 10


_KIND = "CIFAR-10 batch"


_HINT = "replace it with an intact copy of the CIFAR-10 python batch"


def _batch_item(batch: dict[Any, Any], key: str, path: Path) -> Any:
    # The original batches have bytes keys; batches re-pickled under Python 3 often have str.
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise RcertError(f"{path} has no {key!r} entry: pass an original CIFAR-10 python batch")


def _labels(value: Any, n: int, path: Path) -> np.ndarray:
    """``value`` as int64 labels if it is a flat list (or 1-D integer array) of ``n`` class
    numbers; checked item by item before numpy sees it, so a ragged or nested list, a huge
    int or a string is a one-line error rather than a shape numpy guesses or a traceback."""
    labels = None
    if isinstance(value, list) and all(
        type(v) is int and 0 <= v < _CIFAR_CLASSES for v in value
    ):
        labels = np.array(value, dtype=np.int64)
    elif (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu"
          and (value.size == 0 or (value.min() >= 0 and value.max() < _CIFAR_CLASSES))):
        labels = value.astype(np.int64)
    if labels is None or len(labels) != n:
        raise RcertError(f"{path}: 'labels' must be {n} integers in 0..{_CIFAR_CLASSES - 1}, "
                         f"one per image; {_HINT}")
    return labels


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # A regular file within the size ceiling, read whole before it is unpickled.
    batch = load_pickle(read_bytes(path, "data", _HINT), path, _KIND)
    if not isinstance(batch, dict):
        raise RcertError(f"{path} is not a CIFAR-10 batch (no dict): pass the python batches")
    data = _batch_item(batch, "data", path)
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _CIFAR_PIXELS
    ):
        raise RcertError(f"{path}: 'data' must be a uint8 array (N, {_CIFAR_PIXELS}); {_HINT}")
    return data, _labels(_batch_item(batch, "labels", path), len(data), path)


def load(spec: DataSpec) -> Loaded:
    """The images and labels of ``spec.split`` from the batches in the folder ``spec.path``."""
    folder = source_folder(spec)
    if (folder / _CIFAR_SUBDIR).is_dir():
        folder = folder / _CIFAR_SUBDIR
    names = [name for part in parts(spec.split) for name in _CIFAR_BATCHES[part]]
    # exists(), not is_file(): a FIFO or folder in a batch's place is reported as what it is.
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise RcertError(
            f"no CIFAR-10 batch {missing[0]} in {folder}: expected data_batch_1..5 and "
            f"test_batch; pass the folder that holds them or its parent with {_CIFAR_SUBDIR}"
        )
    batches = [_read_cifar_batch(folder / name) for name in names]
    x = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32).astype(np.float32)
    x /= 255  # in place: one float copy of the images, not two
    return x, np.concatenate([labels for _, labels in batches]), None, spec
