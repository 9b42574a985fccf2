"""``.npy`` and ``.npz`` files, read without trusting what they declare.

An array's header declares its shape and item type, and a zip's table of contents the
decompressed size of each member. Both are checked (:func:`rcert.reading.check_declared`)
against the bytes the file really holds and the size ceiling before anything of that size is
allocated: a few-byte file that declares a 256 TiB array is a one-line error, not a
MemoryError. Arrays of Python objects are refused, so nothing is ever unpickled.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import numpy as np

from rcert.errors import RcertError, first_line
from rcert.reading import check_declared, size_of

NPY_MAGIC = b"\x93NUMPY"

#: How a zip starts: with its first member, or with the end record of an empty archive.
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# The magic string, the version, the header's length field and the longest header numpy
# reads (read_array_header's max_header_size): nothing past this belongs to a header.
_HEADER_BYTES = len(NPY_MAGIC) + 2 + 4 + 10_000

# Version 3 differs from 2 only in encoding the header as UTF-8 instead of latin-1, which
# changes the names of structured fields (refused as inputs anyway), never a shape or size.
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0,
                   (3, 0): np.lib.format.read_array_header_2_0}

# np.savez writes one member per array: a data file holds a few. The table of contents is
# bounded too, before zipfile parses it into one object per entry (names up to ~1 KB).
MAX_MEMBERS = 1000
_MAX_DIRECTORY = MAX_MEMBERS * 1024

_FIX = "save it again with np.save or np.savez"

# What reading a damaged file or zip member raises, beyond numpy's header errors.
_STREAM_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


@contextmanager
def _damage(where: str) -> Iterator[None]:
    """Turn what a damaged file raises while it is read into a one-line RcertError."""
    try:
        yield
    except RcertError:
        raise
    except _STREAM_ERRORS as exc:
        raise RcertError(f"cannot read {where} ({first_line(exc)}): {_FIX}") from None


@dataclass(frozen=True)
class Header:
    """What an array's header declares, and the header's own length in bytes."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    length: int

    @property
    def nbytes(self) -> int:
        """The bytes of data the header declares (Python ints: no overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(stream: IO[bytes], where: str) -> Header:
    """The header at the start of ``stream`` (an open .npy file or .npz member), read
    from at most ``_HEADER_BYTES``; ``where`` names the array in the one-line error."""
    head = io.BytesIO(stream.read(_HEADER_BYTES))
    try:
        version = np.lib.format.read_magic(head)
        if version not in _HEADER_READERS:
            raise RcertError(f"{where} is in .npy format version {version[0]}.{version[1]}, "
                             f"which rcert does not read; {_FIX}")
        shape, fortran, dtype = _HEADER_READERS[version](head)
    except RcertError:
        raise
    # numpy parses the header with literal_eval and builds the dtype from it: a hostile
    # header can fail with almost any exception, all meaning "not a readable array".
    except Exception as exc:
        raise RcertError(f"{where} is not a readable .npy array ({first_line(exc)}); "
                         f"{_FIX}") from None
    if dtype.hasobject:
        raise RcertError(f"{where} holds Python objects (dtype {dtype}), which rcert never "
                         f"unpickles; save numeric arrays")
    if dtype.itemsize == 0:  # no bytes to check a shape against: any shape would pass
        raise RcertError(f"{where} declares items of 0 bytes (dtype {dtype}); {_FIX}")
    if any(d < 0 for d in shape):
        raise RcertError(f"{where} declares a negative dimension ({min(shape)}); the file is "
                         f"damaged")
    return Header(tuple(shape), dtype, fortran, head.tell())


def _read_data(stream: IO[bytes], header: Header, where: str) -> np.ndarray:
    """The data after ``header``, ``stream`` positioned there; its size is already checked."""
    raw = stream.read(header.nbytes)
    if len(raw) != header.nbytes:
        raise RcertError(f"{where} ends after {len(raw)} of its {header.nbytes} bytes of "
                         f"data; the file is truncated")
    flat = np.frombuffer(raw, dtype=header.dtype, count=math.prod(header.shape))
    return flat.reshape(header.shape, order="F" if header.fortran else "C")


def read_npy(handle: IO[bytes], path: str) -> np.ndarray:
    """The array of the open .npy file ``handle``, its declared size checked first."""
    where = f"data {path}"
    with _damage(where):
        header = read_header(handle, where)
        check_declared(header.nbytes, "data", path, actual=size_of(handle) - header.length)
        handle.seek(header.length)
        return _read_data(handle, header, where)


def _check_directory(handle: IO[bytes], path: str) -> None:
    # The end record ZipFile will trust (zip64 included), read the way ZipFile reads it, so
    # the bound holds for the table of contents it then parses.
    with _damage(f"data {path}"):
        end = zipfile._EndRecData(handle)
    if end is not None and end[zipfile._ECD_SIZE] > _MAX_DIRECTORY:
        raise RcertError(f"data {path} has a {end[zipfile._ECD_SIZE]}-byte table of "
                         f"contents, more than an .npz of {MAX_MEMBERS} arrays; {_FIX}")


class Npz:
    """The arrays of an open .npz: every member's declared sizes and header are checked
    when it is opened, a member's data only read by :meth:`read`."""

    def __init__(self, handle: IO[bytes], path: str) -> None:
        self.path = path
        _check_directory(handle, path)
        with _damage(f"data {path}"):
            self._zip = zipfile.ZipFile(handle)
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise RcertError(f"data {path} holds {len(infos)} members, more than the "
                             f"{MAX_MEMBERS} rcert reads from an .npz; {_FIX}")
        self._members = {info.filename.removesuffix(".npy"): info for info in infos}
        if len(self._members) != len(infos):
            raise RcertError(f"data {path} holds two arrays of the same name; {_FIX}")
        self._headers = {key: self._header(key) for key in self._members}

    @property
    def keys(self) -> list[str]:
        """The arrays' names, in the order they were saved."""
        return list(self._members)

    def _where(self, key: str) -> tuple[str, str]:
        what = f"array {key!r} in"
        return what, f"{what} {self.path}"

    def _header(self, key: str) -> Header:
        info, (what, where) = self._members[key], self._where(key)
        if info.flag_bits & 0x1:
            raise RcertError(f"{where} is encrypted; {_FIX}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise RcertError(f"{where} is compressed with zip method {info.compress_type}; "
                             f"rcert reads the stored or deflated arrays of np.savez")
        check_declared(info.file_size, what, self.path)
        with _damage(where), self._zip.open(info) as stream:
            header = read_header(stream, where)
        check_declared(header.nbytes, what, self.path, actual=info.file_size - header.length)
        return header

    def read(self, key: str) -> np.ndarray:
        """The array ``key``, decompressed no further than its checked, declared size."""
        header, (_, where) = self._headers[key], self._where(key)
        with _damage(where), self._zip.open(self._members[key]) as stream:
            stream.seek(header.length)
            return _read_data(stream, header, where)
