"""CIFAR-10 from its python batches, read with an unpickler that admits only arrays."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rcert.data.specs import DataSpec, source_folder
from rcert.data.splits import Loaded, parts
from rcert.errors import RcertError

_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


_CIFAR_SUBDIR = "cifar-10-batches-py"


_CIFAR_PIXELS = 3 * 32 * 32


# Exactly the callables a pickled numpy array needs, across numpy 1.x/2.x and protocols 2-5.
_PICKLE_ALLOWED = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and plain containers, and nothing else.

    A pickle can call any importable function while loading; refusing every global outside
    ``_PICKLE_ALLOWED`` means a tampered batch cannot run code.
    """

    def __init__(self, file: BinaryIO, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise RcertError(
                f"refusing to unpickle {module}.{name} from {self._source}: "
                "CIFAR-10 batches contain only arrays"
            )
        return super().find_class(module, name)


def _batch_item(batch: dict[Any, Any], key: str, path: Path) -> Any:
    # The original batches have bytes keys; batches re-pickled under Python 3 often have str.
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise RcertError(f"{path} has no {key!r} entry: pass an original CIFAR-10 python batch")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, path).load()
    except RcertError:
        raise
    # A corrupt pickle can fail with almost any exception type, all meaning "bad file".
    except Exception as err:
        raise RcertError(f"cannot unpickle {path} ({err}): replace it with an intact copy") from err
    if not isinstance(batch, dict):
        raise RcertError(f"{path} is not a CIFAR-10 batch (no dict): pass the python batches")
    data = _batch_item(batch, "data", path)
    labels = np.asarray(_batch_item(batch, "labels", path))
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _CIFAR_PIXELS
    ):
        raise RcertError(f"{path}: 'data' must be a uint8 array (N, {_CIFAR_PIXELS})")
    if labels.dtype.kind not in "iu" or labels.shape != (len(data),):
        raise RcertError(f"{path}: 'labels' must be {len(data)} integers, one per image")
    return data, labels


def load(spec: DataSpec) -> Loaded:
    folder = source_folder(spec)
    if (folder / _CIFAR_SUBDIR).is_dir():
        folder = folder / _CIFAR_SUBDIR
    names = [name for part in parts(spec.split) for name in _CIFAR_BATCHES[part]]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise RcertError(
            f"no CIFAR-10 batch {missing[0]} in {folder}: expected data_batch_1..5 and "
            f"test_batch; pass the folder that holds them or its parent with {_CIFAR_SUBDIR}"
        )
    batches = [_read_cifar_batch(folder / name) for name in names]
    data = np.concatenate([data for data, _ in batches])
    x = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255
    return x, np.concatenate([labels for _, labels in batches]).astype(np.int64), None, spec
