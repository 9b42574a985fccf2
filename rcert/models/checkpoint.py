"""Safe, self-describing checkpoints for rcert architectures: safetensors files.

A checkpoint is a standard safetensors file (any safetensors tool opens it) whose metadata
holds one key, ``rcert``: a JSON header with the architecture (``model.config()``), the
training metadata and ``sha256``, a digest of the tensors that does not depend on the file's
layout. The SHA-256 is fed, for each tensor in order of name (sorted by code point), the
name in UTF-8, a NUL byte, the dtype name (``float32``, ...), a NUL byte, the shape as
decimal integers joined by ``,`` (empty for a scalar), a NUL byte, then the tensor's bytes
in C order, little-endian.

Loading never unpickles or executes anything. Legacy checkpoints (the ``RCERTCKP`` frame
of format version 1, :mod:`rcert.models.legacy`) still load; :func:`convert` rewrites one
as safetensors. Nothing time- or machine-dependent is written, so the same model and
metadata always give the same bytes. See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from rcert.errors import RcertError, first_line
from rcert.files import STDOUT, check_output, write_output
from rcert.models import legacy
from rcert.models.architectures import build_model
from rcert.models.legacy import DTYPES, FORMAT_NAME
from rcert.models.nets import VAE
from rcert.models.statedict import open_model_file, refuse_nonfinite
from rcert.reading import open_regular
from rcert.settings import positive_float

FORMAT_VERSION = 2
#: The one safetensors metadata key rcert writes: one key keeps the bytes deterministic.
METADATA_KEY = "rcert"
#: safetensors' own cap on its JSON header; a longer one is refused before it is read.
MAX_HEADER_BYTES = 100_000_000
_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}
#: safetensors' codes of the dtypes rcert stores (float16 ... bool, in the order of DTYPES).
_SAFETENSORS_DTYPES = ("F16", "F32", "F64", "I32", "I64", "U8", "BOOL")
#: What a reader knows before reading tensors: header, name -> (dtype, shape), tensor reader.
_Parts = tuple[dict[str, Any], dict[str, tuple[str, list[int]]], Callable[[], dict[str, Any]]]


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


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """The hex SHA-256 of ``tensors`` as the module docstring defines it (dtypes in DTYPES)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        dtype = _DTYPE_NAMES[tensor.dtype]
        shape = ",".join(str(n) for n in tensor.shape)
        digest.update(f"{name}\0{dtype}\0{shape}\0".encode())
        digest.update(tensor.numpy().astype(DTYPES[dtype][1], copy=False).tobytes())
    return digest.hexdigest()


def _write(model: VAE, path: str | os.PathLike[str], fields: dict[str, Any]) -> None:
    """Write ``model``'s tensors and a header of ``fields`` to ``path`` as safetensors."""
    tensors = {}
    for name, tensor in model.state_dict().items():
        if tensor.dtype not in _DTYPE_NAMES:
            raise RcertError(
                f"tensor {name!r} has dtype {tensor.dtype}, which checkpoints do not store; "
                f"convert the model first, e.g. model.float() (supported: {', '.join(DTYPES)})")
        tensors[name] = tensor.detach().cpu().contiguous()
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": model.config(),
              **fields, "sha256": tensor_digest(tensors)}
    try:
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_json_value)
    except (TypeError, ValueError) as exc:
        raise RcertError(
            f"checkpoint metadata is not plain JSON ({exc}); pass metrics/extra as dicts of "
            "finite numbers, strings, lists and dicts") from None
    write_output(path, safetensors.torch.save(tensors, {METADATA_KEY: text}))


def save(model: VAE, path: str | os.PathLike[str], *, data: str | None = None,
         metrics: dict[str, Any] | None = None, recommended_r: float | None = None,
         extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` and its metadata to ``path`` as one self-describing safetensors file.

    Parameters
    ----------
    model
        An rcert architecture (built by :func:`rcert.models.architectures.build_model`).
    path
        Destination, by convention ``*.safetensors``; replaced atomically.
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
        ``model`` is not an rcert architecture, a dtype is not stored, the metadata is not
        JSON, or the file cannot be written.
    """
    if not isinstance(model, VAE):
        raise RcertError(
            f"only rcert architectures can be saved, got {type(model).__name__}; build the "
            "model with rcert.build_model, or pass a wrapped foreign model to the engine directly")
    if data is not None and not isinstance(data, str):
        raise RcertError(f"data must be a string describing the training data, got {data!r}")
    for name, value in (("metrics", metrics), ("extra", extra)):
        if value is not None and not isinstance(value, Mapping):
            raise RcertError(f"{name} must be a dict, got {type(value).__name__}")
    if recommended_r is not None:
        recommended_r = positive_float(recommended_r, "recommended_r")
    _write(model, path, {"rcert_version": _rcert_version(), "data": data,
                         "metrics": dict(metrics or {}), "recommended_r": recommended_r,
                         "extra": dict(extra or {})})


def _classify(head: bytes, size: int) -> str:
    """What a file of ``size`` bytes whose first (up to 16) bytes are ``head`` looks like."""
    magic = legacy.MAGIC
    if size == 0:
        return "empty"
    if head.startswith(magic) or (size < len(magic) and magic.startswith(head)):
        return "legacy"
    header_len = int.from_bytes(head[:8], "little")
    # A safetensors header is a JSON object right after its length.
    brace = head[8:9] == b"{"
    if brace and header_len <= min(size - 8, MAX_HEADER_BYTES):
        return "safetensors"
    # Pickle protocol >= 2 starts with PROTO (0x80) and the protocol number; torch.save since
    # 1.6 writes a zip archive whose members are pickles.
    if head[:2] in (b"\x80\2", b"\x80\3", b"\x80\4", b"\x80\5") or head[:4] == b"PK\3\4":
        return "pickle"
    if size <= 8:
        return "short"
    if not brace:
        return "foreign"
    return "huge" if header_len > MAX_HEADER_BYTES else "cut"


def _sniff(path: Path) -> str:
    """``"legacy"`` or ``"safetensors"``; RcertError naming the file for anything else."""
    try:
        with open_model_file(path, "checkpoint") as f:
            size, head = os.fstat(f.fileno()).st_size, f.read(16)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    kind = _classify(head, size)
    messages = {
        "empty": f"{path} is empty; re-save the checkpoint with rcert.save",
        "pickle": f"{path} is a torch.save file (a pickle), not an rcert checkpoint, and rcert "
                  "never unpickles code; rcert margin --model FILE loads torch.save files with "
                  "--arch, --factory or --library (see docs/models.md)",
        "short": f"{path} is truncated (only {size} bytes); re-save it",
        "huge": f"{path} is not an rcert checkpoint: its safetensors header length "
                f"{int.from_bytes(head[:8], 'little')} is over the 100 MB limit; re-save it",
        "cut": f"{path} is truncated (it ends inside the safetensors header); re-save it",
        "foreign": f"{path} is not an rcert checkpoint (unknown file type); save models with "
                   "rcert.save",
    }
    if kind in messages:
        raise RcertError(messages[kind])
    return kind


def _unreadable(path: Path, exc: OSError) -> RcertError:
    return RcertError(f"cannot read checkpoint {path}: {exc.strerror or exc}; check the path")


def _invalid(path: Path, exc: Exception) -> RcertError:
    # safetensors checks that the header's offsets cover the file exactly, so a file cut
    # inside its tensor data, or with bytes appended, ends here too.
    return RcertError(f"{path} is truncated or corrupt (safetensors: {first_line(exc)}); "
                      "re-save it")


def _safetensors_parts(path: Path) -> _Parts:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata()
            slices = {name: f.get_slice(name) for name in f.keys()}
            specs = {name: (s.get_dtype(), s.get_shape()) for name, s in slices.items()}
    except SafetensorError as exc:
        raise _invalid(path, exc) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if not metadata or METADATA_KEY not in metadata:
        raise RcertError(
            f"{path} is a safetensors file without rcert metadata: weights without an "
            "architecture; load it as you would a torch.save state dict, with --arch or "
            "--factory (see docs/models.md)")
    header = legacy.parse_header(metadata[METADATA_KEY], path, FORMAT_VERSION)
    for name, (dtype, _) in specs.items():
        if dtype not in _SAFETENSORS_DTYPES:
            raise RcertError(
                f"{path} stores tensor {name!r} as unsupported dtype {dtype!r} "
                f"(supported: {', '.join(_SAFETENSORS_DTYPES)}); re-save it with this rcert")

    def read_tensors() -> dict[str, Any]:
        try:
            state = safetensors.torch.load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise _invalid(path, exc) from None
        if tensor_digest(state) != header["sha256"]:
            raise RcertError(f"{path} is corrupt (tensors fail their SHA-256 check); re-save it")
        return state

    return header, specs, read_tensors


def _parts(path: Path, *, tensors: bool) -> _Parts:
    if _sniff(path) == "safetensors":
        return _safetensors_parts(path)
    try:
        with open_model_file(path, "checkpoint") as f:
            header, table, body = legacy.read(f, path, payload=tensors)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    specs = {name: (dtype, shape) for name, (dtype, shape, _, _) in table.items()}
    # The tensor table is the legacy layout's, not metadata: the header drops it.
    header = {k: v for k, v in header.items() if k != "tensors"}
    return header, specs, lambda: legacy.tensors(table, body)


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a checkpoint of either format, without reading the tensors.

    Its keys are those of ``model.meta`` after :func:`load`.

    Raises
    ------
    RcertError
        Missing, foreign, pickled, truncated or malformed file.
    """
    return _parts(Path(path), tensors=False)[0]


def is_native(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an rcert checkpoint, judged from its first bytes and header only.

    True for a legacy ``RCERTCKP`` file and for a safetensors file whose metadata has the
    ``rcert`` key; False for anything else (other safetensors files, ``torch.save`` files,
    folders, unreadable paths). Never raises: :func:`load` says what is wrong with a file.
    """
    try:
        with open_regular(path, "checkpoint") as f:
            size, head = os.fstat(f.fileno()).st_size, f.read(16)
            if head.startswith(legacy.MAGIC):
                return True
            if _classify(head, size) != "safetensors":
                return False
            f.seek(8)
            table = json.loads(f.read(int.from_bytes(head[:8], "little")).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # RcertError included: not a regular file
        return False
    metadata = table.get("__metadata__") if isinstance(table, dict) else None
    return isinstance(metadata, dict) and METADATA_KEY in metadata


def _skeleton(header: dict[str, Any], specs: dict[str, tuple[str, list[int]]],
              path: Path) -> VAE:
    """The header's architecture on the meta device, checked against the stored tensors."""
    try:
        # The meta device allocates nothing, so a hostile header cannot exhaust memory before
        # its shapes have been checked against the (size-bounded) tensors.
        with torch.device("meta"):
            model = build_model(**header["model"])
    except RcertError as exc:
        raise RcertError(f"{path} describes an invalid model: {exc}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError):
        raise RcertError(f"{path} has a corrupt model description; re-save it") from None
    expected = {name: list(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(specs))
    unexpected = sorted(set(specs) - set(expected))
    if missing or unexpected:
        raise RcertError(
            f"{path} does not match its architecture (missing tensors {missing}, unexpected "
            f"{unexpected}); re-save it from the model")
    for name, (_, shape) in specs.items():
        if list(shape) != expected[name]:
            raise RcertError(
                f"{path} does not match its architecture: tensor {name!r} has shape "
                f"{list(shape)}, expected {expected[name]}; re-save it from the model")
    return model


def to_device(move: Callable[[str | torch.device], torch.nn.Module],
              path: str | os.PathLike[str], device: str | torch.device) -> torch.nn.Module:
    """``move(device)``: a model loaded from ``path`` put on ``device``; an unknown or
    unavailable device is an RcertError naming both."""
    try:
        return move(device)
    # Unavailable backends fail with AssertionError (CUDA) or NotImplementedError (others).
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError) as exc:
        raise RcertError(f"cannot load {path} onto device {device!r}: {first_line(exc)}; pick "
                         "an available device, e.g. cpu") from None


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> VAE:
    """Rebuild the model saved at ``path`` (either format), in eval() mode, on ``device``.

    The architecture is rebuilt from the header with :func:`rcert.models.architectures.build_model`
    and checked against the stored tensors' names and shapes before they are read; their
    SHA-256 is checked too. Nothing is unpickled. The header (minus a legacy file's tensor
    table) is attached as ``model.meta``.

    Raises
    ------
    RcertError
        Missing, unreadable, pickled, foreign, truncated or corrupt file, safetensors without
        rcert metadata, unsupported dtype, tensors that do not fit the architecture, SHA-256
        mismatch, bad device.
    """
    path = Path(path)
    header, specs, read_tensors = _parts(path, tensors=True)
    model = _skeleton(header, specs, path)
    state = read_tensors()
    refuse_nonfinite(state, "checkpoint", path)
    float_dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(float_dtypes) == 1:
        model = model.to(float_dtypes.pop())
    model = to_device(lambda where: model.to_empty(device=where), path, device)
    model.load_state_dict(state)
    model.eval()
    model.meta = header
    return model


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rewrite the checkpoint ``src`` (legacy or safetensors) atomically as safetensors ``dst``
    (``-``: to stdout, unless it is a terminal).

    The tensors and the metadata, ``rcert_version`` included, are kept; ``format_version``
    and the definition of ``sha256`` are the current ones.

    Raises
    ------
    RcertError
        ``src`` does not load (see :func:`load`), ``dst`` is ``src``, or ``dst`` cannot be
        written.
    """
    if str(dst) != STDOUT:
        src, dst = Path(src), Path(dst)
        if dst.exists() and src.exists() and os.path.samefile(src, dst):
            raise RcertError(f"cannot convert {src} onto itself; give a new file as DST, e.g. "
                             f"{src.with_suffix('.safetensors')}")
    check_output(dst, binary=True)  # before the work: a terminal, a device, a folder
    model = load(src)
    keep = ("rcert_version", "data", "metrics", "recommended_r", "extra")
    _write(model, dst, {key: model.meta[key] for key in keep})


def describe(model: VAE, path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a report says about a loaded checkpoint: its path and the header's metadata."""
    meta = getattr(model, "meta", {})
    return {"path": str(path), "architecture": meta.get("model"), "data": meta.get("data"),
            "recommended_r": meta.get("recommended_r"), "metrics": meta.get("metrics", {}),
            "rcert_version": meta.get("rcert_version")}


def model_card(path: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """A JSON-able model card for the checkpoint at ``path``, with the whole file's SHA-256.

    The card repeats the header's metadata (see :func:`describe`) and adds ``fields``,
    e.g. the command that regenerates the checkpoint.
    """
    header = read_header(path)
    with open_regular(path, "checkpoint") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"name": Path(path).stem, "checkpoint": Path(path).name, "sha256": digest,
            "architecture": header["model"], "data": header["data"],
            "recommended_r": header["recommended_r"], "metrics": header["metrics"],
            **{"training": {}, **header["extra"]},
            "rcert_version": header["rcert_version"], **fields}
