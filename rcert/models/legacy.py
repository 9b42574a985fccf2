"""Reader of rcert's first checkpoint format (format version 1), so that ``.rcert`` files load.

rcert no longer writes this format: :func:`rcert.models.checkpoint.save` writes safetensors,
and ``rcert convert`` rewrites a legacy file as one. The legacy file is a fixed binary frame
around a JSON header and raw little-endian tensor bytes::

    b"RCERTCKP"                      8 bytes, magic
    format version                   uint32, little-endian (1)
    header length n                  uint64, little-endian
    header                           n bytes of UTF-8 JSON
    payload                          the tensors' raw bytes, back to back

The header holds what a safetensors checkpoint's ``rcert`` metadata holds plus ``tensors``:
per tensor, ``dtype``, ``shape``, ``offset`` and ``nbytes`` into the payload; its ``sha256``
is the SHA-256 of the whole payload. Reading unpickles and executes nothing.

What both formats share lives here, in the lower of the two modules: the stored dtypes
(:data:`DTYPES`) and the header schema (:func:`check_header`).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from rcert.errors import RcertError
from rcert.reading import parse_json

MAGIC = b"RCERTCKP"
FORMAT_VERSION = 1
FRAME = struct.Struct("<8sIQ")  # magic, format version, header length

#: The dtypes rcert checkpoints store, by the name both formats use: the torch dtype and an
#: explicit little-endian numpy dtype, so bytes mean the same on every machine.
DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float16": (torch.float16, np.dtype("<f2")),
    "float32": (torch.float32, np.dtype("<f4")),
    "float64": (torch.float64, np.dtype("<f8")),
    "int32": (torch.int32, np.dtype("<i4")),
    "int64": (torch.int64, np.dtype("<i8")),
    "uint8": (torch.uint8, np.dtype("u1")),
    "bool": (torch.bool, np.dtype("?")),
}

FORMAT_NAME = "rcert-checkpoint"
#: The header schema both formats share: each key and the JSON types its value may take.
HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,), "format_version": (int,), "rcert_version": (str,), "model": (dict,),
    "data": (str, type(None)), "metrics": (dict,), "recommended_r": (int, float, type(None)),
    "extra": (dict,), "sha256": (str,),
}

#: A tensor's entry in the legacy table: dtype name, shape, offset and size in the payload.
Entry = tuple[str, list[int], int, int]
#: What :func:`read` returns: the checked header, the tensor table and the payload.
Read = tuple[dict[str, Any], dict[str, Entry], bytes]


def check_header(header: Any, path: Path, version: int) -> dict[str, Any]:
    """``header`` if it is an rcert header of format ``version``, else RcertError."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise RcertError(f"{path} has a header that is not an rcert checkpoint header; re-save it")
    for key, types in HEADER_TYPES.items():
        value = header.get(key)
        if key not in header or not isinstance(value, types) or isinstance(value, bool):
            raise RcertError(f"{path} has a corrupt header (bad or missing {key!r}); re-save it")
    if header["format_version"] != version:
        raise RcertError(f"{path} has a corrupt header (format_version disagrees); re-save it")
    return header


def parse_header(text: str, path: Path, version: int) -> dict[str, Any]:
    """The header of format ``version`` in JSON ``text``, checked (:func:`check_header`).

    It is parsed by :func:`rcert.reading.parse_json`: bounded in depth, and strict (JSON's
    non-standard ``NaN`` and ``Infinity`` are refused), as both formats write it.
    """
    header = parse_json(text, f"the JSON header of {path}", "re-save the checkpoint")
    return check_header(header, path, version)


def read(f: BinaryIO, path: Path, *, payload: bool) -> Read:
    """The checked header of the legacy file ``f`` (read from its start) and, if ``payload``,
    its checked tensor table and payload (else an empty table and ``b""``).

    Raises
    ------
    RcertError
        Truncated frame, header or payload; unknown frame version; a header that is not
        UTF-8 JSON or not an rcert header; a bad tensor table; a SHA-256 mismatch.
    OSError
        The file cannot be read.
    """
    head = f.read(FRAME.size)
    if len(head) < FRAME.size:
        raise RcertError(f"{path} is truncated (it ends inside the frame); re-save it")
    _, version, header_len = FRAME.unpack(head)
    if version != FORMAT_VERSION:
        raise RcertError(
            f"{path} uses legacy checkpoint format version {version}, but this rcert reads only "
            f"version {FORMAT_VERSION} of that frame; upgrade rcert"
        )
    raw_header = f.read(min(header_len, os.fstat(f.fileno()).st_size))
    if len(raw_header) != header_len:
        raise RcertError(f"{path} is truncated (it ends inside the header); re-save it")
    body = f.read() if payload else b""
    try:
        text = raw_header.decode("utf-8")
    except UnicodeDecodeError:
        raise RcertError(f"{path} has a corrupt JSON header (not UTF-8); re-save the "
                         "checkpoint") from None
    header = parse_header(text, path, FORMAT_VERSION)
    if not payload:
        return header, {}, b""
    table = tensor_table(header, path, len(body))
    if hashlib.sha256(body).hexdigest() != header["sha256"]:
        raise RcertError(f"{path} is corrupt (tensor data fails its SHA-256 check); re-save it")
    return header, table, body


def tensor_table(header: dict[str, Any], path: Path, payload_size: int) -> dict[str, Entry]:
    """Check every tensor entry of ``header`` against a payload of ``payload_size`` bytes.

    Raises
    ------
    RcertError
        A missing or malformed table, an unsupported dtype, a size that disagrees with the
        shape, or a payload that is shorter or longer than the table says.
    """
    if not isinstance(header.get("tensors"), dict):
        raise RcertError(f"{path} has a corrupt header (bad or missing 'tensors'); re-save it")
    table = {}
    end = 0
    for name, entry in header["tensors"].items():
        bad = RcertError(f"{path} has a corrupt entry for tensor {name!r}; re-save it")
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
            raise bad
        dtype, shape = entry["dtype"], entry.get("shape")
        offset, nbytes = entry.get("offset"), entry.get("nbytes")
        if dtype not in DTYPES:
            raise RcertError(
                f"{path} stores tensor {name!r} as unsupported dtype {dtype!r} "
                f"(supported: {', '.join(DTYPES)}); re-save it with this rcert"
            )
        ints = [offset, nbytes, *shape] if isinstance(shape, list) else None
        if ints is None or any(type(v) is not int or v < 0 for v in ints):
            raise bad
        if nbytes != math.prod(shape) * DTYPES[dtype][1].itemsize:
            raise bad
        table[name] = (dtype, shape, offset, nbytes)
        end = max(end, offset + nbytes)
    if payload_size < end:
        raise RcertError(f"{path} is truncated (it ends inside the tensor data); re-save it")
    if payload_size > end:
        raise RcertError(f"{path} has unexpected bytes after the tensor data; re-save it")
    return table


def tensors(table: dict[str, Entry], payload: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a checked ``table``, copied out of ``payload``."""
    state = {}
    for name, (dtype, shape, offset, nbytes) in table.items():
        np_dtype = DTYPES[dtype][1]
        array = np.frombuffer(payload, np_dtype, count=nbytes // np_dtype.itemsize, offset=offset)
        state[name] = torch.from_numpy(array.reshape(shape).copy())
    return state
