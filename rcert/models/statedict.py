"""Weights from ``torch.save`` and plain safetensors files, read without running code from them.

Every weights file goes through :func:`read_weights`: a regular file within the size limit
(:func:`open_model_file`); a safetensors file is read as the tensors it holds, a
``torch.save`` file by ``torch.load`` with ``weights_only=True``, whose unpickler builds
tensors and plain containers only and refuses any other global. The one extra global
allowed is ``argparse.Namespace`` (the ``args`` of beta-TCVAE checkpoints), and only within
the call that reads the file. :func:`find_state_dict` digs the state dict out of the usual
wrappers and :func:`load_weights` copies it into a module, naming missing and unexpected
keys; :func:`refuse_nonfinite` refuses weights that hold NaN or an infinity.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from rcert.errors import RcertError, first_line
from rcert.reading import check_declared, open_regular, size_of

#: Keys under which training loops nest the model's state dict, tried in order.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "vae")
#: Prefixes wrappers add to every key: Lightning's ``self.model``, DataParallel's ``module``.
PREFIXES = ("model.", "module.")
#: Globals a weights-only read may build besides tensors and plain containers: beta-TCVAE's
#: ``args``, and Lightning's ``AttributeDict`` hyper-parameters read as plain dicts (the
#: weights-only unpickler sets items on exact dicts only, so nothing else can ride on them).
SAFE_GLOBALS = (
    argparse.Namespace,
    (dict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (dict, "lightning_fabric.utilities.data.AttributeDict"),
    (dict, "lightning.fabric.utilities.data.AttributeDict"),
)


def _refusal(path: Path, exc: Exception) -> RcertError:
    # torch names the refused global: "Unsupported global: GLOBAL x.y ..." or "unsupported
    # GLOBAL x.y whose module x is blocked".
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    # Without a named global the unpickler met an opcode it refuses: pickled objects, or
    # bytes that are no pickle at all.
    what = (f"a pickled {found.group(1)}" if found
            else "something other than tensors and plain containers (or is corrupt)")
    return RcertError(
        f"{path} holds {what}; rcert reads torch.save files with weights_only=True and never "
        "unpickles code. Save the weights alone (torch.save(model.state_dict(), path)) or, for "
        "a whole pickled module, load it yourself in Python if you trust it and use rcert.wrap")


def open_model_file(path: str | os.PathLike[str], what: str = "model") -> IO[bytes]:
    """``path`` opened for binary reading if it is a regular file (a folder, FIFO or device is
    refused by its type, without blocking: :func:`rcert.reading.open_regular`) of at most
    ``file_mb`` of :class:`~rcert.reading.FileLimits`; ``what`` names it in messages."""
    handle = open_regular(path, what, f"check the {what} path")
    try:
        check_declared(size_of(handle), what, path)
    except RcertError:
        handle.close()
        raise
    return handle


def _container(f: IO[bytes], path: Path) -> str:
    """``"torch.save"`` (a zip or a pickle) or ``"safetensors"``, from the first bytes of the
    open file ``f``, which is left at its start; anything else is refused before torch sees
    it (torch's own errors for those do not say what the file is)."""
    try:
        head = f.read(9)
        f.seek(0)
    except OSError as exc:
        raise RcertError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise RcertError(f"{path} is empty; pass a complete model file")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch.save"
    if head[8:9] == b"{":  # a safetensors header follows its 8-byte length
        return "safetensors"
    raise RcertError(
        f"{path} is not a model file rcert can read (not an rcert checkpoint, torch.save, "
        "Lightning .ckpt or safetensors file); pass one of those or a pythae folder")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, by name: plain weights (safetensors holds nothing
    else, and checks its header against the file's size before reading)."""
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as exc:
        raise RcertError(f"{path} is a damaged safetensors file (safetensors: "
                         f"{first_line(exc)}); check that it is complete") from None


def _load_weights_only(f: IO[bytes], path: Path) -> Any:
    """``torch.load`` of the open file ``f`` with ``weights_only=True``; a refused or broken
    file is a one-line RcertError."""
    try:
        # torch warns about pickle protocols it reads anyway; the refusal below is the news.
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(f, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, KeyError, IndexError, OverflowError, MemoryError):
        raise RcertError(f"{path} is not a readable torch.save file (truncated, corrupt or "
                         "another format); check that it is a complete torch.save "
                         "checkpoint") from None
    except OSError as exc:
        raise RcertError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_weights(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """What a weights file holds, and its container: ``"torch.save"`` (read with
    ``weights_only=True`` on the CPU) or ``"safetensors"`` (a dict of tensors by name).

    Raises
    ------
    RcertError
        The file is missing, not a regular file, too large, unreadable, of another format,
        damaged, or holds anything a weights-only read refuses (a pickled module, a
        ``__reduce__`` payload).
    """
    path = Path(path)
    # torch reads the handle opened and checked here: the file checked is the file read.
    with open_model_file(path) as f:
        container = _container(f, path)
        if container == "safetensors":
            return _load_safetensors(path), container
        return _load_weights_only(f, path), container


def read_torch_file(path: str | os.PathLike[str]) -> Any:
    """What a ``torch.save`` (or plain safetensors) file holds: :func:`read_weights`."""
    return read_weights(path)[0]


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def find_state_dict(obj: Any, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model's state dict inside what a ``torch.save`` file held.

    Recognised: a bare state dict; one nested under :data:`NESTED_KEYS` (``state_dict``,
    ``model_state_dict``, ...), up to four levels deep; keys all prefixed by ``model.``
    (Lightning) or ``module.`` (DataParallel), which are stripped.
    """
    seen = 0
    while not _is_state_dict(obj) and isinstance(obj, Mapping) and seen < 4:
        key = next((k for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj, seen = obj[key], seen + 1
    if not _is_state_dict(obj):
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise RcertError(
            f"{path} holds no state dict (found {keys}); rcert looks for tensors by name, "
            f"possibly under one of {', '.join(NESTED_KEYS)}")
    return _strip_prefixes(dict(obj))


def _restore_prefix(state: Mapping[str, torch.Tensor],
                    expected: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    # find_state_dict strips a wrapper's prefix, which a module whose parameters all live in
    # a submodule named model or module (an rcert Wrapped, say) needs back.
    for prefix in PREFIXES:
        if set(expected) != set(state) and {prefix + k for k in state} == set(expected):
            return {prefix + k: v for k, v in state.items()}
    return state


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor],
                 path: str | os.PathLike[str]) -> None:
    """Copy ``state`` into ``module`` exactly: the same names and shapes, else an error that
    names the missing and unexpected keys (at most five of each) and shape mismatches.

    Names match up to a ``model.``/``module.`` prefix that the module has on every key."""
    expected = module.state_dict()
    state = _restore_prefix(state, expected)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RcertError(
            f"{path} does not fit the architecture: missing keys {_few(missing)}, unexpected "
            f"keys {_few(unexpected)}; check the architecture's settings (latent size, widths) "
            "or the library")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
             for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise RcertError(f"{path} does not fit the architecture: shapes differ for "
                         f"{_few(wrong)}; check the architecture's settings")
    module.load_state_dict(dict(state))


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:5]) or "none"
    return shown + (f" (and {len(items) - 5} more)" if len(items) > 5 else "")


def refuse_nonfinite(tensors: Mapping[str, torch.Tensor], what: str,
                     path: str | os.PathLike[str]) -> None:
    """An RcertError naming the first tensor of ``tensors`` (a model's weights and buffers,
    read from the file ``path``) that holds NaN or an infinity.

    Such a model computes nothing meaningful: left alone, every certificate on it abstains and
    the run would pass for a finished one.
    """
    for name, tensor in tensors.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and \
                not bool(torch.isfinite(tensor).all()):
            found = "NaN" if bool(torch.isnan(tensor).any()) else "an infinite value"
            raise RcertError(f"{what} {path}: tensor {name} holds {found}; the checkpoint is "
                             "damaged or training diverged")
