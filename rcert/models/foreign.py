"""One entry point for every model file rcert reads: :func:`load_model` and :func:`describe`.

The dispatch, in order:

1. a folder is a pythae model folder (it has ``model_config.json``);
2. an rcert checkpoint (:func:`rcert.models.checkpoint.is_native`) describes itself;
3. any other file is read as ``torch.save`` with ``weights_only=True``, or as plain
   safetensors weights (:func:`rcert.models.statedict.read_weights`), and its architecture
   comes from the library given (``library``), an rcert architecture description
   (``arch``), the user's factory (``factory``), or else the first library whose ``detect``
   recognises the file.

Nothing in a file is ever executed. Every model but an rcert checkpoint is *foreign*: its
``meta`` says how it was read (format, library, sigma convention, factory) and the SHA-256
of its weights file, so a result names exactly what was certified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from rcert.errors import RcertError
from rcert.models import checkpoint
from rcert.models.adapters import Wrapped, wrap
from rcert.models.description import build_from_description
from rcert.models.factory import call_factory
from rcert.models.libraries import loader
from rcert.models.nets import VAE
from rcert.models.statedict import find_state_dict, load_weights, read_weights, refuse_nonfinite
from rcert.reading import check_regular, open_regular
from rcert.settings import option_name
from rcert.source import LIBRARIES, SIGMA_KINDS, ModelSource

#: What ``meta["format"]`` may say: the file's container or the library that wrote it.
FORMATS = ("rcert", "torch.save", "lightning", "safetensors", *LIBRARIES)
#: The ModelSource fields that say how to read a file.
READING = ("library", "arch", "factory", "sigma", "data_range", "input_shape")
_READABLE = ("rcert reads rcert checkpoints, torch.save and Lightning .ckpt files (with "
             "--arch, --factory or --library) and pythae model folders")
_HOW = ("--arch FILE (an rcert architecture), --factory module:function (your code), or "
        f"--library {'|'.join(LIBRARIES)}")


def _given(source: ModelSource, *names: str) -> list[str]:
    """The command-line options among ``names`` that ``source`` sets."""
    return [option_name(name) for name in names if getattr(source, name) is not None]


def _sha256(path: Path) -> str:
    with open_regular(path, "model") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _is_lightning(obj: Any) -> bool:
    """Whether a torch.save object is a Lightning checkpoint (version key, or ``model.``
    keys under ``state_dict``, which is how a LightningModule's ``self.model`` saves)."""
    if not isinstance(obj, Mapping):
        return False
    state = obj.get("state_dict")
    return "pytorch-lightning_version" in obj or (
        isinstance(state, Mapping) and len(state) > 0
        and all(isinstance(k, str) and k.startswith("model.") for k in state))


def _load_native(source: ModelSource, path: Path, device: str) -> nn.Module:
    given = _given(source, *READING)
    if given:
        raise RcertError(f"{path} is an rcert checkpoint: it describes itself; drop "
                         f"{' '.join(given)}")
    model = checkpoint.load(path, device=device)
    # The header's own "rcert-checkpoint" names the file layout; "rcert" is this vocabulary.
    model.meta.update(format="rcert", foreign=False)
    return model


def _load_folder(source: ModelSource, path: Path) -> tuple[nn.Module, dict[str, Any]]:
    # exists(), not is_file(): a model_config.json that is a FIFO, say, is refused by its type
    # when it is read, not called missing.
    if not (path / "model_config.json").exists():
        raise RcertError(f"{path} is a folder without model_config.json, so not a pythae "
                         f"model folder; {_READABLE}: pass one of those")
    wrong = _given(source, "arch", "factory") or (
        [f"--library {source.library}"] if source.library not in (None, "pythae") else [])
    if wrong:
        raise RcertError(f"{path} is a pythae model folder, read with the pythae conventions; "
                         f"drop {' '.join(wrong)} (or pass the folder's model.pt file instead)")
    return _from_library(source, "pythae", None)


def _from_library(source: ModelSource, name: str, obj: Any) -> tuple[nn.Module, dict[str, Any]]:
    model = loader(name).load(source, obj)
    meta = {"format": name, "library": name, "sigma": getattr(model, "sigma_kind", None),
            **getattr(model, "meta", {})}
    return model, meta


def _refuse_sigma(source: ModelSource, path: Path, what: str) -> None:
    if source.sigma is not None:
        raise RcertError(f"{path} is read as {what}, whose encoder outputs the standard "
                         f"deviation itself; drop --sigma {source.sigma}")


def _agree(source: ModelSource, model: VAE, path: Path) -> None:
    """An rcert VAE knows its input shape and range: a ``data_range``/``input_shape`` given
    with one must be its own."""
    for name in ("data_range", "input_shape"):
        given, own, flag = getattr(source, name), tuple(getattr(model, name)), option_name(name)
        if given is not None and tuple(given) != own:
            raise RcertError(
                f"{flag} {','.join(map(str, given))} disagrees with the rcert VAE read from "
                f"{path} ({','.join(map(str, own))}); drop {flag} or fix the architecture")


def _from_arch(source: ModelSource, path: Path, obj: Any) -> tuple[nn.Module, dict[str, Any]]:
    _refuse_sigma(source, path, "an rcert architecture")
    model = build_from_description(source.arch)
    load_weights(model, find_state_dict(obj, path), path)
    _agree(source, model, path)
    return model, {"library": None, "sigma": "sigma", "arch": source.arch,
                   "architecture": model.config()}


def _sigma_kind(source: ModelSource, module: nn.Module, path: Path) -> str:
    """The convention of a factory's module: declared by it, or stated by the user."""
    declared = getattr(module, "sigma_kind", None)
    if declared is None:
        if source.sigma is None:
            raise RcertError(
                f"{path} is read with --factory {source.factory}, whose "
                f"{type(module).__name__} does not declare sigma_kind: say what the "
                f"encoder's second output is: --sigma {'|'.join(SIGMA_KINDS)}")
        return source.sigma
    if declared not in SIGMA_KINDS:
        raise RcertError(f"the factory's {type(module).__name__} has sigma_kind "
                         f"{declared!r}, not one of {', '.join(SIGMA_KINDS)}; fix the factory")
    if source.sigma not in (None, declared):
        raise RcertError(f"the factory's {type(module).__name__} declares sigma_kind "
                         f"{declared!r} but --sigma {source.sigma} was given; drop --sigma")
    return declared


def _from_factory(source: ModelSource, path: Path,
                  obj: Any) -> tuple[nn.Module, dict[str, Any]]:
    module = call_factory(source.factory, source.factory_args)
    load_weights(module, find_state_dict(obj, path), path)
    if isinstance(module, VAE):
        _refuse_sigma(source, path, "an rcert VAE")
        _agree(source, module, path)
        model, sigma = module, "sigma"
    else:
        sigma = _sigma_kind(source, module, path)
        model = module if isinstance(module, Wrapped) else wrap(module, sigma=sigma)
    return model, {"library": None, "sigma": sigma, "factory": source.factory,
                   "factory_args": dict(source.factory_args)}


#: What a file of each container holding a state dict is, in words.
_HOLDING = {"torch.save": "a torch.save state dict", "lightning": "a Lightning checkpoint",
            "safetensors": "a safetensors file of weights"}


def _unreadable(path: Path, obj: Any, container: str) -> RcertError:
    state = find_state_dict(obj, path)
    keys = ", ".join(list(state)[:3])
    tensors = f"{len(state)} tensor" + ("s" if len(state) != 1 else "")
    return RcertError(f"{path} is {_HOLDING[container]} with {tensors} (e.g. keys {keys}); "
                      f"say how to build the model: {_HOW}")


def _load_file(source: ModelSource, path: Path) -> tuple[nn.Module, dict[str, Any]]:
    obj, container = read_weights(path)
    if container == "torch.save" and _is_lightning(obj):
        container = "lightning"
    if source.library is not None:
        return _from_library(source, source.library, obj)
    if source.arch is not None:
        model, meta = _from_arch(source, path, obj)
    elif source.factory is not None:
        model, meta = _from_factory(source, path, obj)
    else:
        name = next((n for n in LIBRARIES if loader(n).detect(path, obj)), None)
        if name is None:
            raise _unreadable(path, obj, container)
        return _from_library(source, name, obj)
    return model, {"format": container, **meta}


def _listed(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


def load_model(source: ModelSource, *, device: str = "cpu") -> nn.Module:
    """The model ``source`` names, on ``device``, in eval mode, with ``meta`` attached.

    Parameters
    ----------
    source
        The model path and how to read it (see :class:`rcert.source.ModelSource`).
    device
        A torch device string, e.g. ``"cpu"`` or ``"cuda:0"``.

    Returns
    -------
    torch.nn.Module
        An rcert VAE (``meta`` from its checkpoint, with ``format="rcert"`` and
        ``foreign=False``) or a foreign model with ``encode -> (mu, sigma)`` and
        ``decode``, whose ``meta`` holds ``format`` (one of :data:`FORMATS`), ``library``,
        ``sigma``, ``data_range``, ``input_shape``, ``sha256`` (of the file; of
        ``model.pt`` for a folder), ``foreign=True``, and ``factory``/``factory_args`` or
        ``arch``/``architecture`` when used.

    Raises
    ------
    RcertError
        A missing path, an unreadable or hostile file, options that do not apply, weights
        that do not fit the architecture, a failing factory, or a bad device.
    """
    path = Path(source.path)
    if path.is_dir():
        model, meta = _load_folder(source, path)
        weights = path / "model.pt"
    elif checkpoint.is_native(check_regular(path, "model", "check the model path")):
        return _load_native(source, path, device)
    else:
        model, meta = _load_file(source, path)
        weights = path
    # rcert checkpoints are checked as they load; a foreign model's weights are checked here,
    # named as in the file (without the wrapper's own prefix).
    refuse_nonfinite((model.module if isinstance(model, Wrapped) else model).state_dict(),
                     "model", path)
    for name in ("data_range", "input_shape"):
        if getattr(source, name) is not None:
            setattr(model, name, getattr(source, name))
    model = checkpoint.to_device(model.to, path, device).eval()
    model.meta = {**meta, "data_range": _listed(getattr(model, "data_range", None)),
                  "input_shape": _listed(getattr(model, "input_shape", None)),
                  "sha256": _sha256(weights), "foreign": True}
    return model


def describe(model: nn.Module, source: ModelSource) -> dict[str, Any]:
    """What a result's ``model`` block says: the path and how the model was read.

    For an rcert checkpoint, :func:`rcert.models.checkpoint.describe` plus ``format`` and
    ``foreign``; for a foreign model, the path and its ``meta`` (see :func:`load_model`).
    """
    meta = getattr(model, "meta", None) or {}
    if not meta.get("foreign"):
        return {**checkpoint.describe(model, source.path), "format": "rcert", "foreign": False}
    return {"path": source.path, **meta}
