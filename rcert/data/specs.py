"""Data specs: the string that selects a dataset, its split and options, in canonical form.

A spec is colon-separated: a dataset name (or a ``.npy``/``.npz`` path), then a split word
(``train``, ``test``, ``all``) and ``key=value`` options in any order, e.g. ``digits:test``,
``dsprites:train:res=32``, ``mnist:data/mnist:test`` or ``runs/x.npz:key=images``. ``str`` of a
parsed spec is canonical, with every default written out, so a checkpoint that records the spec
of its training data rebuilds exactly the same data. See ``docs/data.md``.

Built-in sources are float32 in ``DATA_RANGE`` with a fixed, seeded train/test split.
Bad input raises :class:`rcert.errors.RcertError`, never a raw parsing error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rcert.data import dsprites
from rcert.errors import RcertError
from rcert.reading import check_folder

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
        merged["n"] = str(_int_option("n", merged["n"], 1, dsprites.GRID_SIZE))
        res = _int_option("res", merged["res"], 8, dsprites.CANVAS)
        if dsprites.CANVAS % res:
            raise RcertError(f"res={res} does not divide {dsprites.CANVAS}: choose 8, 16, 32 or 64")
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


def source_folder(spec: DataSpec) -> Path:
    """The folder of a folder dataset (mnist, fashion-mnist, cifar10), if it is one."""
    return check_folder(spec.path, f"{spec.name} folder", "pass the folder that holds the files")
