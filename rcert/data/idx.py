"""MNIST and Fashion-MNIST from their IDX files (optionally gzipped)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from rcert.data.specs import DataSpec, source_folder
from rcert.data.splits import Loaded, parts
from rcert.errors import RcertError

_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise RcertError(f"cannot read {path} ({err}): replace it with an intact copy") from err


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a uint8 IDX file (optionally gzipped), checking its magic number and its size.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    magic : int
        Expected magic number: ``0x00000803`` for images, ``0x00000801`` for labels.

    Returns
    -------
    numpy.ndarray
        uint8 array with the dimensions the header gives.
    """
    raw = _read_bytes(path)
    if raw[:4] != magic.to_bytes(4, "big"):
        raise RcertError(
            f"{path} is not the expected IDX file: magic 0x{raw[:4].hex()}, expected "
            f"0x{magic:08x}; pass the original {'image' if magic == _IDX_IMAGES else 'label'} file"
        )
    data_start = 4 + 4 * (magic & 0xFF)
    if len(raw) < data_start:
        raise RcertError(f"{path} ends inside its header: replace it with an intact copy")
    dims = tuple(int(d) for d in np.frombuffer(raw[4:data_start], dtype=">u4"))
    expected = data_start + math.prod(dims)
    if len(raw) != expected:
        raise RcertError(
            f"{path} holds {len(raw)} bytes but its header promises {expected}: "
            "the file is truncated or corrupt, replace it with an intact copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=data_start).reshape(dims)


def load(spec: DataSpec) -> Loaded:
    folder, title = source_folder(spec), _TITLES[spec.name]
    xs, ys = [], []
    for part in parts(spec.split):
        image_stem, label_stem = _IDX_STEMS[part]
        image_path = _find_idx(folder, image_stem)
        if image_path is None:
            raise RcertError(
                f"no {title} files in {folder}: expected {image_stem}[.gz]; "
                "pass the folder that holds the IDX files"
            )
        images = _read_idx(image_path, _IDX_IMAGES)
        xs.append(images[:, None].astype(np.float32) / 255)
        label_path = _find_idx(folder, label_stem)
        labels = None if label_path is None else _read_idx(label_path, _IDX_LABELS)
        if labels is not None and len(labels) != len(images):
            raise RcertError(
                f"{label_path} has {len(labels)} labels for {len(images)} images in "
                f"{image_path}: use the label file that belongs to the images"
            )
        ys.append(labels)
    # Labels are all or nothing: a partial y would misalign with x.
    y = None if any(labels is None for labels in ys) else np.concatenate(ys).astype(np.int64)
    return np.concatenate(xs), y, None, spec
