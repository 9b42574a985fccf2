"""Datasets for certification: one spec string selects the data, ``load_data`` builds it.

A spec is colon-separated: a dataset name (or a ``.npy``/``.npz`` path), then a split word
(``train``, ``test``, ``all``) and ``key=value`` options in any order, e.g. ``digits:test``,
``dsprites:train:res=32``, ``mnist:data/mnist:test`` or ``runs/x.npz:key=images``. ``str`` of a
parsed spec is canonical, with every default written out, so a checkpoint that records the spec
of its training data rebuilds exactly the same data. See ``docs/data.md``.

Built-in sources are float32 in ``DATA_RANGE`` with a fixed, seeded train/test split.
Bad input raises :class:`rcert.errors.RcertError`, never a raw parsing error.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits

from rcert.errors import RcertError

DATA_RANGE = (0.0, 1.0)

_SPLITS = ("train", "test", "all")
_NAMED = ("digits", "dsprites")
_FOLDER = ("mnist", "fashion-mnist", "cifar10")
_DATASETS = (*_NAMED, *_FOLDER, "file")

# Default values of each dataset's options; None means "no default" (resolved from the file).
_OPTIONS: dict[str, dict[str, str | None]] = {
    "digits": {},
    "dsprites": {"n": "6000", "res": "64"},
    "mnist": {},
    "fashion-mnist": {},
    "cifar10": {},
    "file": {"key": None},
}


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec; ``str(spec)`` is its canonical form and ``parse_spec`` inverts it.

    Parameters
    ----------
    name : str
        One of ``digits``, ``dsprites``, ``mnist``, ``fashion-mnist``, ``cifar10``, ``file``.
    split : str
        ``train``, ``test`` or ``all`` (train followed by test). Files only allow ``all``.
    path : str or None
        The folder of mnist/fashion-mnist/cifar10, the ``.npy``/``.npz`` of ``file``, else None.
        Stored as given, not resolved.
    options : tuple of (str, str)
        ``key=value`` options. Construction validates them, fills in defaults and sorts them,
        so specs that select the same data compare equal.
    """

    name: str
    split: str
    path: str | None
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.name not in _DATASETS:
            raise RcertError(f"unknown dataset {self.name!r}: choose one of {', '.join(_DATASETS)}")
        if self.split not in _SPLITS:
            raise RcertError(f"unknown split {self.split!r}: choose one of {', '.join(_SPLITS)}")
        _check_path(self.name, self.path)
        if self.name == "file" and self.split != "all":
            raise RcertError(
                f"{self.path} has no train/test split: drop ':{self.split}' or write ':all'"
            )
        # Normalising here (not only in parse_spec) makes a hand-built spec equal to its parse.
        object.__setattr__(self, "options", _normalise_options(self.name, self.options))

    def with_split(self, split: str) -> DataSpec:
        """Return the same data source with another split.

        Parameters
        ----------
        split : str
            ``train``, ``test`` or ``all``.

        Returns
        -------
        DataSpec
            A copy of this spec with ``split`` replaced (files accept only ``all``).
        """
        return replace(self, split=split)

    def __str__(self) -> str:
        head = [self.path] if self.name == "file" else [self.name]
        if self.name in _FOLDER:
            head.append(self.path)
        return ":".join([*head, self.split, *(f"{k}={v}" for k, v in self.options)])


def _check_path(name: str, path: str | None) -> None:
    if name in _NAMED:
        if path is not None:
            raise RcertError(f"{name} is built in and takes no path; write just '{name}'")
        return
    if not path:
        what = "a .npy or .npz file" if name == "file" else "the folder that holds the files"
        raise RcertError(f"{name} needs a path: pass {what}")
    if ":" in path:
        raise RcertError(f"path {path!r} contains ':', which separates spec items; move or link it")
    if name == "file" and not _looks_like_file(path):
        raise RcertError(f"{path!r} is not recognised as a file: end it in .npy/.npz or add a '/'")
    if name in _FOLDER and path in _SPLITS:
        raise RcertError(f"{name} needs a folder before the split: write {name}:DIR:{path}")


def _looks_like_file(item: str) -> bool:
    return "/" in item or item.endswith((".npy", ".npz"))


def _normalise_options(
    name: str, options: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    known = _OPTIONS[name]
    given = dict(options)
    unknown = sorted(set(given) - set(known))
    if unknown:
        accepted = f"known options are {', '.join(known)}" if known else "it takes no options"
        raise RcertError(f"unknown option {unknown[0]!r} for {name}: {accepted}")
    merged = {k: v for k, v in known.items() if v is not None} | given
    for key, value in merged.items():
        if not isinstance(value, str) or not value or ":" in value:
            raise RcertError(f"option {key} of {name} needs a value without ':', got {value!r}")
    if name == "dsprites":
        merged["n"] = str(_int_option("n", merged["n"], 1, _DSPRITES_GRID_SIZE))
        res = _int_option("res", merged["res"], 8, _CANVAS)
        if _CANVAS % res:
            raise RcertError(f"res={res} does not divide {_CANVAS}: choose 8, 16, 32 or 64")
        merged["res"] = str(res)
    return tuple(sorted(merged.items()))


def _int_option(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise RcertError(f"option {key}={value} must be a whole number in {low}..{high}")
    return number


def parse_spec(spec: str) -> DataSpec:
    """Parse a data spec string such as ``dsprites:train:res=32`` or ``x.npz:key=images``.

    Parameters
    ----------
    spec : str
        ``NAME[:SPLIT][:KEY=VALUE...]``; mnist, fashion-mnist and cifar10 take their folder as
        the second item (``mnist:DIR[:SPLIT]``); a first item that contains ``/`` or ends in
        ``.npy``/``.npz`` is a file. The split defaults to ``test`` (``all`` for files).

    Returns
    -------
    DataSpec
        The validated spec with every default filled in.
    """
    if not isinstance(spec, str):
        raise RcertError(
            f"a data spec is a string such as 'digits:test', got {type(spec).__name__}"
        )
    items = spec.split(":")
    if not all(items):
        raise RcertError(f"empty item in data spec {spec!r}: separate items with a single ':'")
    head, rest = items[0], items[1:]
    if _looks_like_file(head):
        name, path = "file", head
    elif head in _FOLDER:
        if not rest:
            raise RcertError(f"{head} needs a folder: write {head}:DIR[:SPLIT]")
        name, path, rest = head, rest[0], rest[1:]
    elif head in _NAMED:
        name, path = head, None
    else:
        known = ", ".join((*_NAMED, *_FOLDER))
        raise RcertError(f"unknown dataset {head!r}: choose one of {known}, or a .npy/.npz path")
    split = None
    options: dict[str, str] = {}
    for item in rest:
        if item in _SPLITS:
            if split is not None:
                raise RcertError(f"data spec {spec!r} names a split twice: keep one of them")
            split = item
        elif "=" in item:
            key, value = item.split("=", 1)
            if key in options:
                raise RcertError(f"data spec {spec!r} sets option {key!r} twice: keep one")
            options[key] = value
        else:
            raise RcertError(
                f"unexpected item {item!r} in data spec {spec!r}: "
                f"expected a split ({', '.join(_SPLITS)}) or key=value"
            )
    if split is None:
        split = "all" if name == "file" else "test"
    return DataSpec(name, split, path, tuple(options.items()))


def default_eval_spec(recorded: str | None, source: str = "the model") -> DataSpec:
    """The data to certify a model on when none is given: the test split of its training data.

    Parameters
    ----------
    recorded : str or None
        The training-data spec recorded in a checkpoint.
    source : str
        Where the spec came from, for the error message (e.g. the checkpoint's path).
    """
    if not recorded:
        raise RcertError(f"{source} records no training data: pass --data")
    spec = parse_spec(recorded)
    if spec.name == "file":
        raise RcertError(f"{source} was trained on the file {spec.path}, which has no test "
                         f"split: pass held-out data with --data")
    return spec.with_split("test")


@dataclass
class Dataset:
    """Inputs (and labels, when the source has them) of one split of one data source.

    Attributes
    ----------
    x : torch.Tensor
        float32, contiguous; images are (N, C, H, W), plain vectors (N, D). Built-in sources
        lie in ``DATA_RANGE``; float files are passed through unclipped.
    y : numpy.ndarray or None
        int64 labels (N,).
    factors : pandas.DataFrame or None
        dSprites generative factors, one row per image.
    spec : DataSpec
        The spec that rebuilds exactly these rows (an npz's chosen key filled in).
    index : numpy.ndarray
        int64 (N,): each row's position in its split, a stable id to seed per-input randomness.
    """

    x: torch.Tensor
    y: np.ndarray | None
    factors: pd.DataFrame | None
    spec: DataSpec
    index: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, ``x.shape[1:]``."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, limit: int) -> Dataset:
        """Return the first ``limit`` rows (all of them if there are fewer).

        Parameters
        ----------
        limit : int
            Number of rows to keep, at least 1.
        """
        if limit < 1:
            raise RcertError(f"limit must be at least 1, got {limit}: pass a positive count")
        return Dataset(
            x=self.x[:limit],
            y=None if self.y is None else self.y[:limit],
            factors=None if self.factors is None else self.factors.iloc[:limit],
            spec=self.spec,
            index=self.index[:limit],
        )


def load_data(spec: str | DataSpec) -> Dataset:
    """Build the dataset a spec selects.

    Parameters
    ----------
    spec : str or DataSpec
        A spec string (see :func:`parse_spec`) or a parsed spec.

    Returns
    -------
    Dataset
        The rows of the selected split, in their fixed order.
    """
    if not isinstance(spec, DataSpec):
        spec = parse_spec(spec)
    x, y, factors, spec = _LOADERS[spec.name](spec)
    if len(x) == 0:
        raise RcertError(f"data spec {spec} selects no rows: choose another split or more data")
    return Dataset(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y=y,
        factors=factors,
        spec=spec,
        index=np.arange(len(x), dtype=np.int64),
    )


_Loaded = tuple[np.ndarray, np.ndarray | None, pd.DataFrame | None, DataSpec]


def _split_slice(n: int, split: str) -> slice:
    """Rows of ``split`` in a shuffled sequence of n: the last 20% (rounded up) are test."""
    n_train = n - math.ceil(n / 5)
    return {"train": slice(0, n_train), "test": slice(n_train, n), "all": slice(0, n)}[split]


def _parts(split: str) -> tuple[str, ...]:
    return ("train", "test") if split == "all" else (split,)


# --- scikit-learn digits -------------------------------------------------------------------


def _load_digits(spec: DataSpec) -> _Loaded:
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))[
        _split_slice(len(digits.images), spec.split)
    ]
    x = (digits.images[order] / 16.0)[:, None]
    return x, digits.target[order].astype(np.int64), None, spec


# --- dSprites, rendered procedurally ------------------------------------------------------

_CANVAS = 64
_SHAPE_NAMES = ("square", "ellipse", "heart")
_SCALES = np.linspace(0.5, 1.0, 6)
_ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
_POSITIONS = np.linspace(0.0, 1.0, 32)
_GRID = (len(_SHAPE_NAMES), len(_SCALES), len(_ORIENTATIONS), len(_POSITIONS), len(_POSITIONS))
_DSPRITES_GRID_SIZE = math.prod(_GRID)
# Every shape fits the unit disk of its own frame, so at scale s it stays within
# _SHAPE_RADIUS * s pixels of its centre whatever the orientation. Positions 0..1 move the
# centre over 12..52 px; the largest shape then keeps >= 2 blank pixels to every edge.
_SHAPE_RADIUS = 10.0
_POSITION_SPAN = 40.0
_HALF_SIDE = 1 / np.sqrt(2)  # square's corners on the unit circle
_ELLIPSE_MINOR = 0.5
_HEART_RADIUS = 1.43  # the heart curve reaches radius 1.4245 from its origin
_CHUNK = 512  # images rendered at once: bounds memory to a few (512, 64, 64) arrays


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= _HALF_SIDE


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    w = v / _ELLIPSE_MINOR
    return u * u + w * w <= 1.0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # (x^2 + y^2 - 1)^3 <= x^2 y^3 with y pointing up; v points down the image, so y = -v makes
    # the tip point down. Plain products, not np.power, so no libm kernel enters per pixel.
    x = u * _HEART_RADIUS
    y = -v * _HEART_RADIUS
    t = x * x + y * y - 1.0
    return t * t * t <= x * x * y * y * y


_INSIDE = (_square, _ellipse, _heart)


def _dsprites_factors(n: int) -> pd.DataFrame:
    """The first n cells of a seed-0 permutation of the factor grid (no repeats)."""
    flat = np.random.default_rng(0).permutation(_DSPRITES_GRID_SIZE)[:n]
    shape, scale, orientation, pos_x, pos_y = np.unravel_index(flat, _GRID)
    return pd.DataFrame(
        {
            "shape": shape.astype(np.int64),
            "shape_name": np.asarray(_SHAPE_NAMES)[shape],
            "scale": _SCALES[scale],
            "orientation": _ORIENTATIONS[orientation],
            "pos_x": _POSITIONS[pos_x],
            "pos_y": _POSITIONS[pos_y],
        }
    )


def _pixel_centre(position: np.ndarray) -> np.ndarray:
    return (_CANVAS / 2 + (position - 0.5) * _POSITION_SPAN).astype(np.float32)


def _render_dsprites(factors: pd.DataFrame, res: int = _CANVAS) -> np.ndarray:
    """Render dSprites images from their factors.

    Each pixel centre is mapped into the shape's frame (shift to the position, rotate by
    ``-orientation``, divide by the scale) and tested against the shape's implicit inequality.

    Parameters
    ----------
    factors : pandas.DataFrame
        Columns ``shape`` (0 square, 1 ellipse, 2 heart), ``scale``, ``orientation`` (radians),
        ``pos_x`` and ``pos_y`` (0..1, left to right and top to bottom).
    res : int
        Output side; must divide 64. Below 64, blocks of ``64 // res`` pixels are averaged,
        so the binary images become grey levels in [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 (N, res, res).
    """
    n, block = len(factors), _CANVAS // res
    shape = factors["shape"].to_numpy()
    # Trigonometry once per image in float64; per-pixel work is only + - * /, which IEEE rounds
    # the same everywhere, so a recorded spec re-renders the same pixels on another machine.
    angle = factors["orientation"].to_numpy(np.float64)
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    radius = (_SHAPE_RADIUS * factors["scale"].to_numpy(np.float64)).astype(np.float32)
    centre_x = _pixel_centre(factors["pos_x"].to_numpy(np.float64))
    centre_y = _pixel_centre(factors["pos_y"].to_numpy(np.float64))
    pixel = np.arange(_CANVAS, dtype=np.float32) + np.float32(0.5)
    out = np.empty((n, res, res), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        dx = pixel[None, None, :] - centre_x[rows, None, None]
        dy = pixel[None, :, None] - centre_y[rows, None, None]
        c, s, r = cos[rows, None, None], sin[rows, None, None], radius[rows, None, None]
        u = (c * dx + s * dy) / r
        v = (c * dy - s * dx) / r
        mask = np.zeros(u.shape, dtype=bool)
        for code, inside in enumerate(_INSIDE):
            chosen = shape[rows] == code
            mask[chosen] = inside(u[chosen], v[chosen])
        m = len(mask)
        out[rows] = mask.reshape(m, res, block, res, block).mean(axis=(2, 4), dtype=np.float32)
    return out


def _load_dsprites(spec: DataSpec) -> _Loaded:
    options = dict(spec.options)
    n, res = int(options["n"]), int(options["res"])
    factors = _dsprites_factors(n).iloc[_split_slice(n, spec.split)].reset_index(drop=True)
    x = _render_dsprites(factors, res)[:, None]
    return x, factors["shape"].to_numpy(), factors, spec


# --- MNIST and Fashion-MNIST IDX files ----------------------------------------------------

_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def _folder(spec: DataSpec) -> Path:
    folder = Path(spec.path)
    if not folder.is_dir():
        raise RcertError(f"no such folder {spec.path} for {spec.name}: pass an existing folder")
    return folder


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


def _load_idx(spec: DataSpec) -> _Loaded:
    folder, title = _folder(spec), _TITLES[spec.name]
    xs, ys = [], []
    for part in _parts(spec.split):
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


# --- CIFAR-10 python batches ---------------------------------------------------------------

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


def _load_cifar10(spec: DataSpec) -> _Loaded:
    folder = _folder(spec)
    if (folder / _CIFAR_SUBDIR).is_dir():
        folder = folder / _CIFAR_SUBDIR
    names = [name for part in _parts(spec.split) for name in _CIFAR_BATCHES[part]]
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


# --- .npy / .npz files ---------------------------------------------------------------------

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


def _load_file(spec: DataSpec) -> _Loaded:
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


_LOADERS = {
    "digits": _load_digits,
    "dsprites": _load_dsprites,
    "mnist": _load_idx,
    "fashion-mnist": _load_idx,
    "cifar10": _load_cifar10,
    "file": _load_file,
}
