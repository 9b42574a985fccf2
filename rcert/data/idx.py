"""MNIST and Fashion-MNIST from their IDX files (optionally gzipped).

A header declares the data's dimensions; the declared size is checked before any data is
read, and no more than one byte past it is ever read or decompressed, so a small gzip that
expands to gigabytes is refused after reading the few bytes it declares.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from rcert.data.specs import DataSpec, source_folder
from rcert.data.splits import Loaded, parts
from rcert.errors import RcertError, first_line
from rcert.reading import check_declared, open_regular

_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


_FIX = "replace it with an intact copy"


def _find_idx(folder: Path, stem: str) -> Path | None:
    # exists(), not is_file(): a FIFO or folder in the file's place is reported as what it is.
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


@contextmanager
def _open_idx(path: Path) -> Iterator[IO[bytes]]:
    """``path`` open for reading, through gzip when it ends in .gz; a regular file only."""
    with open_regular(path, "data", "pass the folder that holds the IDX files") as handle:
        if path.suffix != ".gz":
            yield handle
            return
        with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
            yield stream


def _read_dims(stream: IO[bytes], path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions in the header at the start of ``stream``, its magic number checked."""
    found = stream.read(4)
    if found != magic.to_bytes(4, "big"):
        raise RcertError(
            f"{path} is not the expected IDX file: magic 0x{found.hex()}, expected "
            f"0x{magic:08x}; pass the original {'image' if magic == _IDX_IMAGES else 'label'} file"
        )
    # The magic is fixed, so is the number of dimensions: 3 for images, 1 for labels.
    ndim = magic & 0xFF
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise RcertError(f"{path} ends inside its header: {_FIX}")
    dims = struct.unpack(f">{ndim}I", raw)
    if 0 in dims[1:]:
        raise RcertError(f"{path} declares empty images of {dims[1]}x{dims[2]} pixels: {_FIX}")
    return dims


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
    try:
        with _open_idx(path) as stream:
            dims = _read_dims(stream, path, magic)
            declared = check_declared(math.prod(dims), "data", path)
            # One byte past the declared size tells a longer file from an exact one.
            body = stream.read(declared + 1)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise RcertError(f"cannot read {path} ({first_line(err)}): {_FIX}") from None
    if len(body) != declared:
        held = "more than the" if len(body) > declared else f"only {len(body)} of the"
        raise RcertError(f"{path} holds {held} {declared} bytes of data its header promises: "
                         f"the file is truncated or corrupt, {_FIX}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load(spec: DataSpec) -> Loaded:
    """The images (and labels, when every split has its label file) of ``spec.split``."""
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
        x = images[:, None].astype(np.float32)
        x /= 255  # in place: one float copy of the images, not two
        xs.append(x)
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
