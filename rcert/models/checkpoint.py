"""Safe, self-describing checkpoints for rcert architectures.

Loading never unpickles or executes anything: the file is a fixed binary frame around a JSON
header and raw little-endian tensor bytes (the idea of safetensors)::

    b"RCERTCKP"                      8 bytes, magic
    format version                   uint32, little-endian (currently 1)
    header length n                  uint64, little-endian
    header                           n bytes of UTF-8 JSON
    payload                          the tensors' raw bytes, back to back

The header holds the architecture (``model.config()``), training metadata and, per tensor,
``dtype``, ``shape``, ``offset`` and ``nbytes`` into the payload, plus the payload's SHA-256.
Nothing time- or machine-dependent is written, so the same model and metadata always give
the same bytes. See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rcert.errors import RcertError
from rcert.files import atomic_write
from rcert.models.nets import VAE, build_model
from rcert.settings import positive_float

MAGIC = b"RCERTCKP"
FORMAT_VERSION = 1
FORMAT_NAME = "rcert-checkpoint"
_FRAME = struct.Struct("<8sIQ")  # magic, format version, header length

# torch dtype <-> header name <-> explicit little-endian numpy dtype.
DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float16": (torch.float16, np.dtype("<f2")),
    "float32": (torch.float32, np.dtype("<f4")),
    "float64": (torch.float64, np.dtype("<f8")),
    "int32": (torch.int32, np.dtype("<i4")),
    "int64": (torch.int64, np.dtype("<i8")),
    "uint8": (torch.uint8, np.dtype("u1")),
    "bool": (torch.bool, np.dtype("?")),
}
_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}

_HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "rcert_version": (str,),
    "model": (dict,),
    "data": (str, type(None)),
    "metrics": (dict,),
    "recommended_r": (int, float, type(None)),
    "extra": (dict,),
    "tensors": (dict,),
    "sha256": (str,),
}


def _rcert_version() -> str:
    # Read from the installed metadata, not rcert/__init__, so saving needs no package import.
    try:
        return importlib.metadata.version("rcert")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def _json_value(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy and 0-d torch scalars become Python numbers."""
    if isinstance(obj, (np.generic, torch.Tensor)) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _encode_header(header: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(
            header, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_value
        )
    except (TypeError, ValueError) as exc:
        raise RcertError(
            f"checkpoint metadata is not plain JSON ({exc}); pass metrics/extra as dicts of "
            "finite numbers, strings, lists and dicts"
        ) from None
    return text.encode("utf-8")


def _tensor_bytes(name: str, tensor: torch.Tensor) -> tuple[dict[str, Any], bytes]:
    dtype_name = _DTYPE_NAMES.get(tensor.dtype)
    if dtype_name is None:
        raise RcertError(
            f"tensor {name!r} has dtype {tensor.dtype}, which checkpoints do not store; "
            f"convert the model first, e.g. model.float() (supported: {', '.join(DTYPES)})"
        )
    array = tensor.detach().cpu().contiguous().numpy().astype(DTYPES[dtype_name][1], copy=False)
    data = array.tobytes()
    return {"dtype": dtype_name, "shape": list(tensor.shape), "nbytes": len(data)}, data


def save(
    model: VAE,
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    metrics: dict[str, Any] | None = None,
    recommended_r: float | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` and its metadata to ``path`` as one self-describing checkpoint.

    Parameters
    ----------
    model
        An rcert architecture (built by :func:`rcert.models.nets.build_model`).
    path
        Destination; replaced atomically, never left half-written.
    data
        Description of the training data (e.g. ``"mnist:train"``), stored verbatim.
    metrics
        Training results, e.g. the dict :func:`rcert.models.training.fit` returns.
    recommended_r
        The perturbation radius ``r`` the model is meant to be certified at, if any.
    extra
        Any further JSON metadata.

    Raises
    ------
    RcertError
        ``model`` is not an rcert architecture, the metadata is not JSON, or the file
        cannot be written.
    """
    if not isinstance(model, VAE):
        raise RcertError(
            f"only rcert architectures can be saved, got {type(model).__name__}; build the "
            "model with rcert.build_model, or pass a wrapped foreign model to the engine directly"
        )
    if data is not None and not isinstance(data, str):
        raise RcertError(f"data must be a string describing the training data, got {data!r}")
    for name, value in (("metrics", metrics), ("extra", extra)):
        if value is not None and not isinstance(value, Mapping):
            raise RcertError(f"{name} must be a dict, got {type(value).__name__}")
    if recommended_r is not None:
        recommended_r = positive_float(recommended_r, "recommended_r")

    entries: dict[str, Any] = {}
    payload: list[bytes] = []
    offset = 0
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        entry, raw = _tensor_bytes(name, tensor)
        entries[name] = {**entry, "offset": offset}
        payload.append(raw)
        digest.update(raw)
        offset += len(raw)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "rcert_version": _rcert_version(),
        "model": model.config(),
        "data": data,
        "metrics": dict(metrics or {}),
        "recommended_r": recommended_r,
        "extra": dict(extra or {}),
        "tensors": entries,
        "sha256": digest.hexdigest(),
    }
    header_bytes = _encode_header(header)
    frame = _FRAME.pack(MAGIC, FORMAT_VERSION, len(header_bytes))
    atomic_write(path, b"".join([frame, header_bytes, *payload]))


def _foreign_file_error(path: Path, head: bytes) -> RcertError:
    # Pickle protocol >= 2 starts with PROTO (0x80) and the protocol number; torch.save since
    # 1.6 writes a zip archive whose members are pickles.
    if (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04"):
        return RcertError(
            f"{path} is a pickle/torch.save file; rcert never unpickles checkpoints because that "
            "can execute code. If you trust it, load it yourself in Python and pass the model "
            "through rcert.wrap, or copy its weights into rcert.build_model(...) and save that "
            "with rcert.save"
        )
    if not head:
        return RcertError(f"{path} is empty; re-save the checkpoint with rcert.save")
    if MAGIC.startswith(head):
        return RcertError(f"{path} is truncated (it ends inside the frame); re-save it")
    return RcertError(
        f"{path} is not an rcert checkpoint (unknown file type); save models with rcert.save"
    )


def _check_header(header: Any, path: Path, version: int) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise RcertError(f"{path} has a header that is not an rcert checkpoint header; re-save it")
    for key, types in _HEADER_TYPES.items():
        value = header.get(key)
        if key not in header or not isinstance(value, types) or isinstance(value, bool):
            raise RcertError(f"{path} has a corrupt header (bad or missing {key!r}); re-save it")
    if header["format_version"] != version:
        raise RcertError(f"{path} has a corrupt header (format_version disagrees); re-save it")
    return header


def _read(path: str | os.PathLike[str], *, payload: bool) -> tuple[dict[str, Any], bytes]:
    """Parse the frame and header of ``path``; also read the payload when asked."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_FRAME.size)
            if not head.startswith(MAGIC):
                raise _foreign_file_error(path, head)
            if len(head) < _FRAME.size:
                raise RcertError(f"{path} is truncated (it ends inside the frame); re-save it")
            _, version, header_len = _FRAME.unpack(head)
            if version != FORMAT_VERSION:
                raise RcertError(
                    f"{path} uses checkpoint format version {version}, but this rcert reads "
                    f"only version {FORMAT_VERSION}; upgrade rcert"
                )
            raw_header = f.read(min(header_len, os.fstat(f.fileno()).st_size))
            if len(raw_header) != header_len:
                raise RcertError(f"{path} is truncated (it ends inside the header); re-save it")
            body = f.read() if payload else b""
    except OSError as exc:
        raise RcertError(
            f"cannot read checkpoint {path}: {exc.strerror or exc}; check the path"
        ) from None
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise RcertError(f"{path} has a corrupt JSON header; re-save the checkpoint") from None
    return _check_header(header, path, version), body


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a checkpoint, without reading or verifying the tensor payload.

    Raises
    ------
    RcertError
        Missing, foreign, pickled, truncated or malformed file.
    """
    return _read(path, payload=False)[0]


def _tensor_table(header: dict[str, Any], path: Path, payload_size: int) -> dict[str, Any]:
    """Check every tensor entry against the payload: name -> (dtype, shape, offset, nbytes)."""
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


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> VAE:
    """Rebuild the model saved at ``path``, in eval() mode, on ``device``.

    The architecture is rebuilt from the header with :func:`rcert.models.nets.build_model` and the
    weights are read as raw bytes after checking the payload's SHA-256; nothing is unpickled.
    The header minus its tensor table is attached as ``model.meta``.

    Raises
    ------
    RcertError
        Missing, unreadable, pickled, foreign, truncated or corrupt file, unknown format
        version, unsupported dtype, tensors that do not fit the architecture, bad device.
    """
    header, body = _read(path, payload=True)
    path = Path(path)
    table = _tensor_table(header, path, len(body))
    if hashlib.sha256(body).hexdigest() != header["sha256"]:
        raise RcertError(f"{path} is corrupt (tensor data fails its SHA-256 check); re-save it")
    try:
        # The meta device allocates nothing, so a hostile header cannot exhaust memory before
        # its shapes have been checked against the (size-bounded) payload.
        with torch.device("meta"):
            model = build_model(**header["model"])
    except RcertError as exc:
        raise RcertError(f"{path} describes an invalid model: {exc}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError):
        raise RcertError(f"{path} has a corrupt model description; re-save it") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(table))
    unexpected = sorted(set(table) - set(expected))
    if missing or unexpected:
        raise RcertError(
            f"{path} does not match its architecture (missing tensors {missing}, unexpected "
            f"{unexpected}); re-save it from the model"
        )
    for name, (_, shape, _, _) in table.items():
        if tuple(shape) != expected[name]:
            raise RcertError(
                f"{path} does not match its architecture: tensor {name!r} has shape {shape}, "
                f"expected {list(expected[name])}; re-save it from the model"
            )
    state = {}
    for name, (dtype, shape, offset, nbytes) in table.items():
        np_dtype = DTYPES[dtype][1]
        array = np.frombuffer(body, np_dtype, count=nbytes // np_dtype.itemsize, offset=offset)
        state[name] = torch.from_numpy(array.reshape(shape).copy())
    float_dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(float_dtypes) == 1:
        model = model.to(float_dtypes.pop())
    try:
        model = model.to_empty(device=device)
    # Unavailable backends fail with AssertionError (CUDA) or NotImplementedError (others).
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise RcertError(
            f"cannot load {path} onto device {device!r}: {reason}; pick an available device"
        ) from None
    model.load_state_dict(state)
    model.eval()
    model.meta = {k: v for k, v in header.items() if k != "tensors"}
    return model


def describe(model: VAE, path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a report says about a loaded checkpoint: its path and the header's metadata."""
    meta = getattr(model, "meta", {})
    return {
        "path": str(path),
        "architecture": meta.get("model"),
        "data": meta.get("data"),
        "recommended_r": meta.get("recommended_r"),
        "metrics": meta.get("metrics", {}),
        "rcert_version": meta.get("rcert_version"),
    }


def model_card(path: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """A JSON-able model card for the checkpoint at ``path``, with its SHA-256.

    The card repeats the header's metadata (see :func:`describe`) and adds ``fields``,
    e.g. the command that regenerates the checkpoint.
    """
    header = read_header(path)
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {
        "name": Path(path).stem,
        "checkpoint": Path(path).name,
        "sha256": digest,
        "architecture": header["model"],
        "data": header["data"],
        "recommended_r": header["recommended_r"],
        "metrics": header["metrics"],
        "training": header["extra"].get("training", {}),
        "rcert_version": header["rcert_version"],
        **fields,
    }
