"""Reading the files rcert is given: regular files only, sizes checked before reading.

Every file rcert reads (checkpoints, data, TOML configs, baselines, results, resume parts)
is opened here, so the same rules hold on every path:

* only a regular file (or a symlink to one) is opened: a folder, a named pipe, a device or
  a socket is refused by its type, before anything blocks on it;
* its size is checked against :class:`FileLimits` before it is read, and a
  size a file *declares* (an array's shape, a decompressed length) is checked with
  :func:`check_declared` before anything is allocated for it;
* JSON and TOML documents are bounded in size and nesting depth, and JSON's non-standard
  ``NaN`` and ``Infinity`` are refused (rcert writes non-finite numbers as strings).

Anything unexpected is a one-line :class:`~rcert.errors.RcertError`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rcert.errors import RcertError, first_line, with_hint
from rcert.settings import field_help, positive_float, positive_int, set_field

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))

MB = 2**20


@dataclass(frozen=True)
class FileLimits:
    """The largest inputs rcert reads (:mod:`rcert.reading`), checked before any allocation.

    The environment variables ``RCERT_MAX_FILE_MB`` and ``RCERT_MAX_DOCUMENT_MB`` override
    the first two (:meth:`from_env`), so the guard holds on every path without an option on
    every command.
    """

    file_mb: float = field(default=4096.0, metadata=field_help(
        "Largest checkpoint or data array in MB, after decompression "
        "(env RCERT_MAX_FILE_MB)."))
    document_mb: float = field(default=256.0, metadata=field_help(
        "Largest JSON or TOML document in MB: configs, baselines, results, resume parts "
        "(env RCERT_MAX_DOCUMENT_MB)."))
    json_depth: int = field(default=64, metadata=field_help(
        "Deepest nesting of arrays and objects a JSON document may have."))

    def __post_init__(self) -> None:
        for name in ("file_mb", "document_mb"):
            set_field(self, name, positive_float(getattr(self, name), name))
        set_field(self, "json_depth", positive_int(self.json_depth, "json_depth"))

    @classmethod
    def from_env(cls, environ: Any = None) -> FileLimits:
        """The limits, with ``RCERT_MAX_FILE_MB`` and ``RCERT_MAX_DOCUMENT_MB`` on top."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, variable in (("file_mb", "RCERT_MAX_FILE_MB"),
                               ("document_mb", "RCERT_MAX_DOCUMENT_MB")):
            text = environ.get(variable, "").strip()
            if text:
                try:
                    values[name] = positive_float(float(text), variable)
                except ValueError:  # RcertError included
                    raise RcertError(f"{variable} must be a number of MB > 0 such as 8192, "
                                     f"got {text!r}") from None
        return cls(**values)


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words: "a regular file", "a folder", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((word for test, word in _KINDS if test(mode)), "a special file")



def _not(what: str, path: Path, mode: int, noun: str, hint: str) -> RcertError:
    return RcertError(f"{what} {path} is {kind_of(mode)}, not {noun}{with_hint(hint)}")


def _check_kind(path: str | os.PathLike, what: str, hint: str, wanted: Any,
                noun: str) -> Path:
    """``path`` as a Path if ``wanted(st_mode)`` (symlinks followed), else an RcertError that
    says what it is instead: missing, or ``kind_of`` its mode."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise RcertError(f"{what} {path} does not exist{with_hint(hint)}") from None
    except OSError as exc:
        raise RcertError(f"cannot read {what} {path}: {exc.strerror}{with_hint(hint)}") from None
    if not wanted(mode):
        raise _not(what, path, mode, noun, hint)
    return path


def check_regular(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """``path`` as a Path if it is a regular file (symlinks followed), else an RcertError
    that says what it is instead: missing, a folder, a FIFO, a device or a socket.

    ``what`` names the file in the message ("model", "baseline"); ``hint`` says how to fix it.
    """
    return _check_kind(path, what, hint, stat.S_ISREG, "a regular file")


def check_folder(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """``path`` as a Path if it is a folder (symlinks followed), else an RcertError that says
    what it is instead (:func:`check_regular`'s rule for folders)."""
    return _check_kind(path, what, hint, stat.S_ISDIR, "a folder")


def open_regular(path: str | os.PathLike, what: str, hint: str = "") -> IO[bytes]:
    """``path`` opened for binary reading, if it is a regular file (:func:`check_regular`).

    The type is checked again on the open descriptor, which was opened without blocking, so a
    path swapped for a FIFO between the two checks cannot hang the run.
    """
    path = check_regular(path, what, hint)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RcertError(f"cannot read {what} {path}: {exc.strerror}{with_hint(hint)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not(what, path, mode, "a regular file", hint)
    return os.fdopen(fd, "rb")


def size_of(handle: IO[bytes]) -> int:
    """The size in bytes of an open file."""
    return os.fstat(handle.fileno()).st_size


def _too_big(what: str, path: Path, size: float, limit_mb: float, variable: str,
             verb: str = "holds") -> RcertError:
    return RcertError(f"{what} {path} {verb} {size / MB:.4g} MB, more than the {limit_mb:g} MB "
                      f"rcert reads; check that it is the right file, or raise {variable}")


def check_declared(nbytes: int, what: str, path: str | os.PathLike, *,
                   actual: int | None = None, limits: FileLimits | None = None) -> int:
    """``nbytes``, the size a file declares for its content (an array's shape times its item
    size, a decompressed length), if it is consistent and affordable; else an RcertError.

    ``actual`` is the number of bytes the file really holds for that content, when known
    (an uncompressed array): the two must agree. The size must also stay within
    ``limits.file_mb``. Call it before allocating anything of that size.
    """
    limits = limits or FileLimits.from_env()
    if nbytes < 0:
        raise RcertError(f"{what} {path} declares a negative size; the file is damaged")
    if actual is not None and nbytes != actual:
        raise RcertError(f"{what} {path} declares {nbytes} bytes of data but holds {actual}; "
                         f"the file is damaged or truncated")
    if nbytes > limits.file_mb * MB:
        raise _too_big(what, Path(path), nbytes, limits.file_mb, "RCERT_MAX_FILE_MB",
                       verb="declares")
    return nbytes


def read_bytes(path: str | os.PathLike, what: str, hint: str = "", *,
               document: bool = False) -> bytes:
    """The bytes of a regular file of at most ``file_mb`` MB, or ``document_mb`` for a
    ``document`` (:class:`FileLimits`), refused by size before it is read."""
    limits = FileLimits.from_env()
    limit, variable = ((limits.document_mb, "RCERT_MAX_DOCUMENT_MB") if document
                       else (limits.file_mb, "RCERT_MAX_FILE_MB"))
    with open_regular(path, what, hint) as handle:
        size = size_of(handle)
        if size > limit * MB:
            raise _too_big(what, Path(path), size, limit, variable)
        try:
            # The size found, not the limit: read() reserves what it is asked for, and a
            # reservation of the whole ceiling fails under a limit on address space. A file
            # that grows meanwhile is cut at the size checked.
            return handle.read(size)
        except OSError as exc:
            raise RcertError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_text(path: str | os.PathLike, what: str, hint: str = "") -> str:
    """A UTF-8 text document of at most ``document_mb`` MB (:class:`FileLimits`)."""
    raw = read_bytes(path, what, hint, document=True)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RcertError(f"{what} {path} is not UTF-8 text (byte {exc.start}){with_hint(hint)}"
                         ) from None


# A JSON string literal, escapes included; its brackets do not nest anything.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _reject_constant(name: str) -> float:
    raise RcertError(f"it holds {name}, which strict JSON does not allow; rcert writes "
                     f'non-finite numbers as the strings "inf", "-inf" and "nan"')


def nesting_depth(text: str, limit: int) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, counted up to ``limit + 1``
    (enough to refuse it) without parsing."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def parse_json(text: str, where: str, hint: str = "") -> Any:
    """JSON ``text`` parsed strictly (no NaN or Infinity), its depth bounded first
    (:class:`FileLimits`); ``where`` names the document in the one-line error."""
    limit = FileLimits.from_env().json_depth
    if nesting_depth(text, limit) > limit:
        raise RcertError(f"{where} nests arrays or objects more than {limit} deep; no rcert "
                         f"document does{with_hint(hint)}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RcertError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}){with_hint(hint)}") from None
    except RecursionError:
        raise RcertError(f"{where} nests too deep to read{with_hint(hint)}") from None
    except RcertError as exc:
        raise RcertError(f"{where}: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise RcertError(f"{where} is not valid JSON ({first_line(exc, 120)})"
                         f"{with_hint(hint)}") from None


def read_json(path: str | os.PathLike, what: str, hint: str = "") -> Any:
    """A JSON document from a regular file, bounded in size and depth (:func:`parse_json`)."""
    return parse_json(read_text(path, what, hint), f"{what} {path}", hint)


def parse_toml(text: str, where: str, hint: str = "") -> dict[str, Any]:
    """TOML ``text`` parsed; ``where`` names the document in the one-line error."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RcertError(f"{where} is not valid TOML: {exc}{with_hint(hint)}") from None
    except RecursionError:
        raise RcertError(f"{where} nests too deep to read{with_hint(hint)}") from None


def read_toml(path: str | os.PathLike, what: str, hint: str = "") -> dict[str, Any]:
    """A TOML document from a regular file, bounded in size (:func:`read_text`)."""
    return parse_toml(read_text(path, what, hint), f"{what} {path}", hint)
