"""Folders of image files (3D Chairs, 3D Faces, CelebA, ...), decoded with Pillow.

Two layouts: a flat folder of images (no labels), or one subfolder per class, ``DIR/<label>/``,
whose images (at any depth below it) get the label's index among the sorted subfolder names.
Files are sorted by relative path, component by component, then shuffled with
``default_rng(0)`` and split like the digits (the last 20% are test).

Each file is read through :mod:`rcert.reading` (a regular file within the size ceiling), opened
by Pillow as PNG, JPEG, BMP, GIF or WebP only (the first frame of an animation), checked
against Pillow's decompression-bomb guard before it is decoded, converted to L or RGB,
centre-cropped to a square and box-filtered to ``res x res``; pixels become float32 k/255. One
image is decoded at a time, straight into the output array. See ``docs/data.md``.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rcert.data.specs import DataSpec, source_folder
from rcert.data.splits import Loaded, shuffled_rows
from rcert.errors import RcertError, first_line, is_out_of_memory
from rcert.reading import MB, FileLimits, read_bytes

#: File name endings (any case) read as images; other files are ignored, as are hidden ones.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

#: Most image files one folder may hold.
MAX_IMAGES = 1_000_000

# The only Pillow plugins a file may be opened with, whatever its name says.
_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")

_FIX = "replace it with an intact copy or remove it"

_LAYOUT = "pass a folder of images, or a folder of class subfolders of images"


def _pillow() -> Any:
    """``PIL.Image``, imported only when images are loaded."""
    try:
        from PIL import Image
    except ImportError:
        raise RcertError("the images dataset needs Pillow: pip install 'pillow>=9.1'") from None
    return Image


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(SUFFIXES)


def _unlistable(exc: OSError) -> None:
    raise RcertError(f"cannot list {exc.filename}: {exc.strerror}; {_LAYOUT}")


def _too_many(folder: Path) -> RcertError:
    return RcertError(f"images folder {folder} holds more than {MAX_IMAGES:,} images, more than "
                      f"rcert reads: pass a folder with fewer")


def _top_level(folder: Path) -> tuple[list[str], list[str]]:
    """The image files and the (non-hidden) subfolders directly in ``folder``, sorted."""
    files, folders = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():  # a symlink to a folder counts as a class folder
                    folders.append(entry.name)
                elif _is_image(entry.name):
                    files.append(entry.name)
                if len(files) > MAX_IMAGES:
                    raise _too_many(folder)
    except OSError as exc:
        _unlistable(exc)
    return sorted(files), sorted(folders)


def _class_files(folder: Path, label: str, budget: int) -> list[tuple[str, ...]]:
    """The images anywhere under ``folder/label`` as path components relative to ``folder``
    (hidden files and folders skipped, symlinked folders below the class folder not followed)."""
    found: list[tuple[str, ...]] = []
    for root, dirs, names in os.walk(folder / label, onerror=_unlistable):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        parts = Path(root).relative_to(folder).parts
        found += [(*parts, name) for name in names if _is_image(name)]
        if len(found) > budget:
            raise _too_many(folder)
    if not found:
        raise RcertError(f"class folder {folder / label} holds no images "
                         f"({', '.join(SUFFIXES)}): add images to it or remove it")
    return found


def list_images(folder: Path) -> tuple[list[tuple[str, ...]], list[str] | None]:
    """The image files of an images folder, sorted, and its class names (None when flat).

    Parameters
    ----------
    folder : pathlib.Path
        A folder of images, or of class subfolders of images (not both).

    Returns
    -------
    files : list of tuple of str
        Each file's path components relative to ``folder``, sorted; the first is its class.
    classes : list of str or None
        The sorted class subfolder names; a file's label is the index of its first component.
    """
    files, folders = _top_level(folder)
    if files and folders:
        raise RcertError(f"images folder {folder} holds both image files ({files[0]}) and "
                         f"subfolders ({folders[0]}): put every image in the folder itself or "
                         f"every image in class subfolders")
    if not files and not folders:
        raise RcertError(f"images folder {folder} holds no images ({', '.join(SUFFIXES)}); "
                         f"{_LAYOUT}")
    if files:
        return [(name,) for name in files], None
    found: list[tuple[str, ...]] = []
    for label in folders:
        found += _class_files(folder, label, MAX_IMAGES - len(found))
    return sorted(found), folders


def _check_image(image: Any, path: Path, limit: int | None) -> None:
    """Refuse an image too large to decode safely, of no pixels, or of 16-bit/float pixels."""
    width, height = image.size
    if limit is not None and width * height > limit:
        raise _bomb(path, limit)
    if width < 1 or height < 1:
        raise RcertError(f"image {path} has no pixels ({width}x{height}); {_FIX}")
    if image.mode.startswith(("I", "F")):
        raise RcertError(f"image {path} holds {image.mode} pixels (16-bit or float), which rcert "
                         f"does not scale: save it with 8 bits per channel")


def _bomb(path: Path, limit: int) -> RcertError:
    return RcertError(f"image {path} has more pixels than Pillow's decompression-bomb guard "
                      f"allows (PIL.Image.MAX_IMAGE_PIXELS = {limit}): check the file, or scale "
                      f"it down")


def _decode(path: Path, pil: Any, mode: str, res: int) -> np.ndarray:
    """One image file as uint8 pixels, (res, res) for L or (res, res, 3) for RGB: its centred
    square (offsets rounded down) box-filtered to res x res."""
    raw = read_bytes(path, "image", _FIX)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            with pil.open(io.BytesIO(raw), formats=_FORMATS) as image:
                _check_image(image, path, pil.MAX_IMAGE_PIXELS)
                width, height = image.size
                side = min(width, height)
                left, top = (width - side) // 2, (height - side) // 2
                square = image.convert(mode).resize(
                    (res, res), pil.Resampling.BOX, box=(left, top, left + side, top + side))
                return np.asarray(square, dtype=np.uint8)
    except RcertError:
        raise
    except (pil.DecompressionBombError, pil.DecompressionBombWarning):
        raise _bomb(path, pil.MAX_IMAGE_PIXELS) from None
    except pil.UnidentifiedImageError:
        raise RcertError(f"cannot decode image {path} (not a PNG, JPEG, BMP, GIF or WebP "
                         f"image); {_FIX}") from None
    except Exception as exc:  # Pillow's decoders raise many types on damaged data
        if is_out_of_memory(exc):
            raise
        raise RcertError(f"cannot decode image {path} ({first_line(exc, 120)}); {_FIX}") from None


def _check_size(n: int, channels: int, res: int, folder: Path) -> None:
    """Refuse, before decoding, images whose float32 array would pass the file ceiling."""
    limit = FileLimits.from_env().file_mb
    size = n * channels * res * res * 4
    if size > limit * MB:
        raise RcertError(f"the {n} images of {folder} take {size / MB:.4g} MB at {channels}x{res}"
                         f"x{res} as float32, more than the {limit:g} MB rcert holds; choose a "
                         f"smaller res= or split, or raise RCERT_MAX_FILE_MB")


def load(spec: DataSpec) -> Loaded:
    """The images of ``spec.split`` from the folder ``spec.path``, in their seeded order;
    ``factors`` holds each row's ``file`` (relative path) and, with classes, its ``label``."""
    options = dict(spec.options)
    res, channels = int(options["res"]), int(options["channels"])
    folder = source_folder(spec)
    files, classes = list_images(folder)
    rows = shuffled_rows(len(files), spec.split)
    _check_size(len(rows), channels, res, folder)
    pil, mode = _pillow(), ("L" if channels == 1 else "RGB")
    x = np.empty((len(rows), channels, res, res), dtype=np.float32)
    for i, row in enumerate(rows):  # one file at a time: no more than one image is held
        pixels = _decode(folder.joinpath(*files[row]), pil, mode, res)
        x[i] = pixels.reshape(res, res, channels).transpose(2, 0, 1)
    x /= 255  # in place: k/255 exactly as float32
    chosen = [files[row] for row in rows]
    factors = pd.DataFrame({"file": ["/".join(parts) for parts in chosen]})
    if classes is None:
        return x, None, factors, spec
    names = np.array([parts[0] for parts in chosen], dtype=object)
    factors["label"] = names
    labels = np.searchsorted(np.array(classes, dtype=object), names).astype(np.int64)
    return x, labels, factors, spec
