"""Data specs: the string that selects a dataset, its split and options, in canonical form.

A spec is colon-separated: a dataset name (or a ``.npy``/``.npz`` path), then a split word
(``train``, ``test``, ``all``) and ``key=value`` options in any order, e.g. ``digits:test``,
``dsprites:train:res=32``, ``mnist:data/mnist:test``, ``images:data/chairs:res=64`` or
``runs/x.npz:key=images``. ``str`` of a parsed spec is canonical, with every default written
out except ``range=0,1`` (left out so that specs recorded before the option existed keep their
string), so a checkpoint that records the spec of its training data rebuilds exactly the same
data. See ``docs/data.md``.

Built-in sources are float32 in ``DATA_RANGE`` with a fixed, seeded train/test split; every
dataset takes ``range=-1,1`` to map them affinely onto [-1, 1] (:attr:`DataSpec.data_range`).
Bad input raises :class:`rcert.errors.RcertError`, never a raw parsing error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from rcert.data import dsprites, swissroll
from rcert.errors import RcertError
from rcert.reading import check_folder

#: The range loaders produce, and the default of the ``range`` option.
DATA_RANGE = (0.0, 1.0)

#: The values of the ``range`` option, as written in a canonical spec, and their intervals.
RANGES = {"0,1": DATA_RANGE, "-1,1": (-1.0, 1.0)}

_DEFAULT_RANGE = "0,1"

_SPLITS = ("train", "test", "all")
_NAMED = ("digits", "dsprites", "swissroll")
_FOLDER = ("mnist", "fashion-mnist", "cifar10", "images")
_DATASETS = (*_NAMED, *_FOLDER, "file")

# Default values of each dataset's own options; None means "no default" (resolved from the
# file). Every dataset also takes ``range`` (default 0,1, which str() leaves out).
_OPTIONS: dict[str, dict[str, str | None]] = {
    "digits": {},
    "dsprites": {"n": "6000", "res": "64"},
    "swissroll": {"n": "2000", "noise": "0.05"},
    "mnist": {},
    "fashion-mnist": {},
    "cifar10": {},
    "images": {"channels": "1", "res": "64"},
    "file": {"key": None},
}

#: Side lengths the images dataset resizes to.
IMAGE_RES = (1, 1024)


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec; ``str(spec)`` is its canonical form and ``parse_spec`` inverts it.

    Parameters
    ----------
    name : str
        One of ``digits``, ``dsprites``, ``swissroll``, ``mnist``, ``fashion-mnist``,
        ``cifar10``, ``images``, ``file``.
    split : str
        ``train``, ``test`` or ``all`` (train followed by test). Files only allow ``all``.
    path : str or None
        The folder of mnist/fashion-mnist/cifar10/images, the ``.npy``/``.npz`` of ``file``,
        else None. Stored as given, not resolved.
    options : tuple of (str, str)
        ``key=value`` options. Construction validates them, fills in defaults (but drops
        ``range=0,1``, the default range) and sorts them, so specs that select the same data
        compare equal.
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

    @property
    def data_range(self) -> tuple[float, float]:
        """The interval the data are scaled to: ``(0.0, 1.0)``, or ``(-1.0, 1.0)`` with
        ``range=-1,1``."""
        return RANGES[dict(self.options).get("range", _DEFAULT_RANGE)]

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
    known = _OPTIONS[name] | {"range": _DEFAULT_RANGE}
    given = dict(options)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise RcertError(f"unknown option {unknown[0]!r} for {name}: known options are "
                         f"{', '.join(known)}")
    merged = {k: v for k, v in known.items() if v is not None} | given
    for key, value in merged.items():
        if not isinstance(value, str) or not value or ":" in value:
            raise RcertError(f"option {key} of {name} needs a value without ':', got {value!r}")
    _check_values(name, merged)
    merged["range"] = _range_option(merged["range"])
    if merged["range"] == _DEFAULT_RANGE:
        del merged["range"]  # left out, so that specs written before the option keep their str
    return tuple(sorted(merged.items()))


def _check_values(name: str, merged: dict[str, str]) -> None:
    """Validate the dataset's own options and write them in canonical form, in place."""
    if name == "dsprites":
        merged["n"] = str(_int_option("n", merged["n"], 1, dsprites.GRID_SIZE))
        res = _int_option("res", merged["res"], 8, dsprites.CANVAS)
        if dsprites.CANVAS % res:
            raise RcertError(f"res={res} does not divide {dsprites.CANVAS}: choose 8, 16, 32 or 64")
        merged["res"] = str(res)
    elif name == "swissroll":
        merged["n"] = str(_int_option("n", merged["n"], 1, swissroll.MAX_POINTS))
        merged["noise"] = _float_option("noise", merged["noise"], 0.0, swissroll.MAX_NOISE)
    elif name == "images":
        merged["res"] = str(_int_option("res", merged["res"], *IMAGE_RES))
        if merged["channels"] not in ("1", "3"):
            raise RcertError(f"option channels={merged['channels']} must be 1 (grey) or 3 (RGB)")


def _range_option(value: str) -> str:
    """The canonical spelling (a key of :data:`RANGES`) of a ``range`` value such as -1,1."""
    try:
        bounds = tuple(float(v) for v in value.split(","))
    except ValueError:
        bounds = ()
    for text, interval in RANGES.items():
        if bounds == interval:
            return text
    raise RcertError(f"option range={value} must be 0,1 or -1,1: the interval the data are "
                     f"scaled to")


def _float_option(key: str, value: str, low: float, high: float) -> str:
    """A number in low..high, written canonically (the shortest text that reads back)."""
    try:
        number = float(value) + 0.0  # + 0.0 turns -0 into 0
    except ValueError:
        number = math.nan
    if not low <= number <= high:
        raise RcertError(f"option {key}={value} must be a number in {low:g}..{high:g}")
    text = f"{number:g}"
    return text if float(text) == number else repr(number)


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
        ``NAME[:SPLIT][:KEY=VALUE...]``; mnist, fashion-mnist, cifar10 and images take their
        folder as the second item (``mnist:DIR[:SPLIT]``); a first item that contains ``/`` or
        ends in ``.npy``/``.npz`` is a file. The split defaults to ``test`` (``all`` for
        files). Every dataset takes ``range=0,1`` (the default) or ``range=-1,1``.

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


def source_folder(spec: DataSpec) -> Path:
    """The folder of a folder dataset (mnist, fashion-mnist, cifar10, images), if it is one."""
    return check_folder(spec.path, f"{spec.name} folder", "pass the folder that holds the files")
