"""pythae (clementchadebec/benchmark_VAE) model folders, read without unpickling anything.

``BaseAE.save(folder)`` (pythae 0.1.2, ``pythae/models/base/base_model.py``) writes

* ``model_config.json``: the config class's ``name`` (``"VAEConfig"``, ...) and its fields,
  among them ``input_dim``, ``latent_dim`` and ``uses_default_encoder``/``_decoder``;
* ``model.pt``: ``torch.save({"model_state_dict": model.state_dict()})``;
* ``environment.json``: the Python version;
* ``encoder.pkl``/``decoder.pkl`` (and ``discriminator.pkl`` for Adversarial_AE and VAEGAN)
  when the user gave their own network: cloudpickle files, whose unpickling runs code from
  the folder.

rcert rebuilds the config with pythae's own config class from the JSON (read as plain data),
the model with pythae's default networks, and copies the weights from ``model.pt`` read
with ``weights_only=True`` (pythae's own ``load_from_folder`` unpickles ``model.pt`` in
full). Pickled networks are refused unless the user passes ``trust_pickles``; then they are
read with pythae's own ``_load_custom_<part>_from_folder``.

Conventions: the encoder returns ``ModelOutput(embedding=mu, log_covariance=log sigma^2)``
(a log-variance: ``VAE.forward`` takes ``std = exp(0.5 * log_var)``), the decoder
``ModelOutput(reconstruction=g(z))``; the default decoder ends in a sigmoid, so its models
take data in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from rcert.errors import RcertError
from rcert.models.factory import failure, type_phrase
from rcert.models.libraries.common import build_checked, finish
from rcert.models.statedict import find_state_dict, load_weights, read_torch_file
from rcert.reading import check_regular, read_json
from rcert.source import ModelSource, parse_shape

#: pythae models whose posterior is the encoder's Gaussian ``N(embedding,
#: exp(log_covariance))`` and whose decoder maps that latent: rcert's bounds hold as stated.
GAUSSIAN = ("VAE", "BetaVAE", "BetaTCVAE", "DisentangledBetaVAE", "FactorVAE", "INFOVAE_MMD",
            "IWAE", "CIWAE", "MIWAE", "PIWAE", "MSSSIM_VAE", "VAMP", "Adversarial_AE",
            "VAEGAN")
_DETERMINISTIC = ("has a deterministic encoder (no log_covariance): rcert does not read those "
                  "from pythae folders yet; load it with pythae in Python and give rcert a "
                  "model whose traits say encoder='deterministic'")
_FLOW = ("moves the encoder's Gaussian through a flow, so its posterior is not N(mu, sigma^2) "
         "and rcert's bounds do not apply; certify a Gaussian-posterior pythae model "
         f"({', '.join(GAUSSIAN[:3])}, ...)")
#: Why rcert refuses the other pythae models.
REFUSED = {
    **dict.fromkeys(("AE", "RAE_L2", "RAE_GP", "WAE_MMD", "VQVAE"), _DETERMINISTIC),
    **dict.fromkeys(("HVAE", "RHVAE", "VAE_IAF", "VAE_LinNF"), _FLOW),
    "SVAE": ("has a von Mises-Fisher posterior on the sphere, not a Gaussian, so rcert's "
             "bounds do not apply; certify a Gaussian-posterior pythae model"),
    "PoincareVAE": ("has a wrapped normal posterior on the Poincare ball, not a Euclidean "
                    "Gaussian, so rcert's bounds do not apply; certify a Gaussian-posterior "
                    "pythae model"),
}
_RESAVE = "re-save the model with pythae's model.save(folder)"


def detect(path: Path, obj: Any | None) -> bool:
    """Whether ``path`` is a pythae model folder, or the ``model.pt`` inside one."""
    path = Path(path)
    if path.is_dir():
        return (path / "model_config.json").is_file() and (path / "model.pt").is_file()
    return (path.name == "model.pt" and (path.parent / "model_config.json").is_file()
            and isinstance(obj, Mapping) and "model_state_dict" in obj)


def _pythae_models() -> ModuleType:
    try:
        import pythae.models as models
    except ImportError:
        raise RcertError("reading pythae folders needs pythae: pip install rcert[pythae]") from None
    return models


def _read_config(path: Path) -> dict[str, Any]:
    """``model_config.json`` as plain JSON (:func:`rcert.reading.read_json`: a regular file,
    bounded in size and depth)."""
    raw = read_json(path, "pythae model config", _RESAVE)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RcertError(f"{path} is not a pythae model config (a JSON object with a \"name\" "
                         f"such as \"VAEConfig\"); {_RESAVE}")
    return raw


def _classes(models: ModuleType, name: str, path: Path) -> tuple[type, type]:
    """pythae's config class called ``name`` and its model class, public ones only."""
    model_name = name.removesuffix("Config").removesuffix("_")
    if model_name in REFUSED:
        raise RcertError(f"{path.parent} holds a pythae {model_name}, which "
                         f"{REFUSED[model_name]}")
    public = set(getattr(models, "__all__", ()))
    if (model_name not in GAUSSIAN or model_name == name or name not in public
            or model_name not in public):
        raise RcertError(f"{path} names {name!r}, not a pythae model rcert reads; rcert reads "
                         f"pythae's {', '.join(GAUSSIAN)}")
    return getattr(models, name), getattr(models, model_name)


def _config(config_cls: type, raw: dict[str, Any], path: Path) -> Any:
    """The config built by pythae's own class (its pydantic checks included)."""
    fields = {k: v for k, v in raw.items() if k != "name"}
    try:
        config = config_cls.from_dict(fields)
    # pydantic's ValidationError is a ValueError; from_dict re-raises TypeError too. Unknown
    # fields are ignored, as pythae's own loader ignores them.
    except (TypeError, ValueError) as exc:
        reason = "; ".join(line.strip() for line in str(exc).splitlines()[:3])[:300]
        raise RcertError(f"{path} is not a valid {config_cls.__name__} ({reason}); "
                         f"{_RESAVE}") from None
    try:
        parse_shape(config.input_dim)
    except RcertError:
        raise RcertError(f"{path} has input_dim {list(config.input_dim)}, not positive "
                         f"integers; {_RESAVE}") from None
    return config


def _pickled_parts(raw: dict[str, Any], config: Any, folder: Path,
                   trust: bool) -> list[str]:
    """The networks stored as ``<part>.pkl``; refused unless the user trusts the folder."""
    parts = sorted(key.removeprefix("uses_default_") for key in raw
                   if key.startswith("uses_default_") and getattr(config, key, True) is False)
    if parts and not trust:
        raise RcertError(f"{folder / (parts[0] + '.pkl')} is a pickled network: unpickling "
                         "runs code from the folder; pass --trust-pickles only if you trust it")
    return parts


def _unpickle(model_cls: type, part: str, folder: Path) -> nn.Module:
    """A trusted ``<part>.pkl`` read by pythae's own reader (its version checks included)."""
    file = folder / f"{part}.pkl"
    reader = getattr(model_cls, f"_load_custom_{part}_from_folder", None)
    if reader is None or not file.exists():
        raise RcertError(f"{file} is missing or unknown to pythae {model_cls.__name__}, yet "
                         f"model_config.json says uses_default_{part} is false; {_RESAVE}")
    # pythae's reader opens the pickle and environment.json with open(), which blocks on a FIFO.
    for needed in (file, folder / "environment.json"):
        if needed.exists():
            check_regular(needed, "pythae file", _RESAVE)
    try:
        net = reader(str(folder))
    # Unpickling runs the folder's code, which can fail in any way; the user asked for it.
    except Exception as exc:
        raise RcertError(f"cannot unpickle {file} ({failure(exc)}); use the Python, pythae "
                         "and package versions that saved it") from None
    if not isinstance(net, nn.Module):
        raise RcertError(f"{file} unpickles to {type_phrase(net)}, not a network; {_RESAVE}")
    return net


def _weights(path: Path, folder: Path, obj: Any | None) -> tuple[dict[str, torch.Tensor], Path]:
    file = path if path.is_file() else folder / "model.pt"
    if obj is None:
        obj = read_torch_file(file)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model_state_dict"), Mapping):
        raise RcertError(f"{file} holds no model_state_dict, which pythae's model.pt always "
                         f"has; {_RESAVE}")
    return find_state_dict(obj["model_state_dict"], file), file


def _build(model_cls: type, config: Any, nets: dict[str, nn.Module],
           state: dict[str, torch.Tensor], file: Path) -> nn.Module:
    if not nets:
        if config.input_dim is None:
            raise RcertError(f"{file.parent / 'model_config.json'} has no input_dim, which "
                             f"pythae's default networks need; {_RESAVE}")
        return build_checked(lambda: model_cls(config), state, file,
                             sizes_from=file.parent / "model_config.json")
    # Unpickled networks are already allocated (and trusted): build on the CPU directly.
    try:
        module = model_cls(config, **nets)
    except Exception as exc:  # pythae checks the unpickled classes in its own ways
        raise RcertError(f"pythae cannot build a {model_cls.__name__} from the networks in "
                         f"{file.parent} ({failure(exc)}); {_RESAVE}") from None
    load_weights(module, state, file)
    return module


def _encode(model: nn.Module, x: torch.Tensor) -> Any:
    return model.encoder(x)  # ModelOutput(embedding, log_covariance), unpacked by wrap


def _decode(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return model.decoder(z)["reconstruction"]


def load(source: ModelSource, obj: Any | None) -> nn.Module:
    """The pythae model in folder ``source.path`` (or whose ``model.pt`` it names).

    Returns
    -------
    torch.nn.Module
        The pythae model wrapped with ``sigma="logvar"``; ``input_shape`` is the config's
        ``input_dim``, ``data_range`` (0, 1) with pythae's default (sigmoid) decoder and
        None with a custom one; ``meta`` adds ``config`` (the JSON), ``model`` (the class)
        and ``unpickled`` (the networks read from pickles).

    Raises
    ------
    RcertError
        pythae is not installed; the config, weights or pickles are missing or invalid; the
        model is not a Gaussian-posterior VAE; a pickled network without ``trust_pickles``.
    """
    path = Path(source.path)
    folder = path if path.is_dir() else path.parent
    config_path = folder / "model_config.json"
    if not config_path.exists():  # one that is no regular file is refused as it is read
        raise RcertError(f"{folder} has no model_config.json, so it is no pythae model folder; "
                         "pass the folder that pythae's model.save wrote")
    raw = _read_config(config_path)
    models = _pythae_models()
    config_cls, model_cls = _classes(models, raw["name"], config_path)
    config = _config(config_cls, raw, config_path)
    parts = _pickled_parts(raw, config, folder, source.trust_pickles)
    state, file = _weights(path, folder, obj)
    nets = {part: _unpickle(model_cls, part, folder) for part in parts}
    module = _build(model_cls, config, nets, state, file)
    return finish(
        module, source, library="pythae", sigma="logvar", encode=_encode, decode=_decode,
        input_shape=parse_shape(config.input_dim),
        data_range=(0.0, 1.0) if config.uses_default_decoder else None,
        config=raw, model=model_cls.__name__, unpickled=parts,
    )
