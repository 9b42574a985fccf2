"""Models and checkpoints the cases read, made by the test with torch (never by rcert's own
writers, so that a broken reader cannot hide a broken writer): hostile pickles, an untrained
digits-sized MLP saved every way rcert reads (safetensors, legacy RCERTCKP, torch.save state
dicts with an arch.json), damaged copies of them, and the foreign layouts (pythae folders,
PyTorch-VAE's Lightning checkpoints, beta-TCVAE's ``args``)."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import legacy_header, write_legacy

from .core import MARKER
from .make_files import npy_bytes, template, write, writes

# ------------------------------------------------------------------ hostile pickles


class Payload:
    """Pickles to ``os.system("touch t/PWNED")``: proof that unpickling ran code."""

    def __init__(self, t: Path) -> None:
        self.command = f"touch {t / MARKER}"

    def __reduce__(self):
        return (os.system, (self.command,))


def hostile_pickle(t: Path, protocol: int = 2) -> bytes:
    """A plain pickle of a :class:`Payload` for the folder ``t``."""
    return pickle.dumps(Payload(t), protocol=protocol)


def torch_bytes(obj: Any, *, zipped: bool = True) -> bytes:
    """The bytes ``torch.save`` writes of ``obj`` (zip format unless ``zipped`` is False)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


def evil_torch(name: str = "evil.pt"):
    """A setup that writes a ``torch.save`` of ``{"w": Payload(t)}`` to ``t/name``."""
    return writes(name, lambda t: torch_bytes({"w": Payload(t)}))


def object_array(t: Path) -> np.ndarray:
    """An object array that holds a :class:`Payload` for ``t``: ``np.save`` pickles it."""
    return np.array([Payload(t), 1], dtype=object)


def object_npy(name: str = "x.npy"):
    """A setup that writes an ``.npy`` of :func:`object_array` to ``t/name``."""
    return writes(name, lambda t: npy_bytes(object_array(t), allow_pickle=True))


# ------------------------------------------------------------------ rcert's own formats


def tiny_vae(*, nan: bool = False, inf: bool = False):
    """An untrained 8x8 MLP (latent 4, one hidden layer of 16), like the digits model."""
    import rcert

    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    if nan or inf:
        with torch.no_grad():
            next(iter(model.parameters())).view(-1)[0] = float("nan") if nan else float("inf")
    return model


ARCH = {"arch": "mlp", "input_shape": [1, 8, 8], "latent_dim": 4, "hidden": [16]}


def arch_json(name: str = "arch.json", **changes):
    """A setup that writes :data:`ARCH` (with ``changes``) as ``t/name``."""
    return writes(name, json.dumps({**ARCH, **changes}))


def state_dict(name: str = "sd.pt", *, nan: bool = False, inf: bool = False):
    """A torch.save state dict of :func:`tiny_vae`, and its description as arch.json."""
    def run(t: Path) -> None:
        write(t, name, torch_bytes(tiny_vae(nan=nan, inf=inf).state_dict()))
        arch_json()(t)
    return run


def save_model(t: Path, name: str, *, model=None, **meta) -> Path:
    """``rcert.save`` of ``model`` (default: :func:`tiny_vae`) as ``t/name``."""
    import rcert

    meta = {"data": "digits:train", "recommended_r": 0.75, **meta}
    rcert.save(model if model is not None else tiny_vae(), t / name, **meta)
    return t / name


def dae_checkpoint(name: str = "dae.safetensors"):
    """A setup that saves an untrained 8x8 deterministic autoencoder (``sigma_mode="none"``,
    Lu & Chen's DAE) as ``t/name``, with no recommended r, as ``rcert train`` records it."""
    import rcert

    def run(t: Path) -> None:
        model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,),
                                  sigma_mode="none")
        save_model(t, name, model=model, recommended_r=None)
    return run


def st_save(tensors: dict, metadata: dict | None = None) -> bytes:
    """The bytes ``safetensors.torch.save`` makes of ``tensors`` and ``metadata``."""
    import safetensors.torch

    return safetensors.torch.save(tensors, metadata)


def safetensors_header(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file: 8-byte little-endian header length, the header, the data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def rcert_safetensors(name: str, *, edit: Callable[[dict], None] | None = None,
                      nan: bool = False, inf: bool = False, text: str | None = None):
    """An rcert safetensors checkpoint written without rcert.save, so that its header can say
    anything: ``edit`` changes the header dict (json.dumps writes NaN as NaN), ``text``
    replaces the header altogether."""
    def run(t: Path) -> None:
        import safetensors.torch

        from rcert.models.checkpoint import tensor_digest

        model = tiny_vae(nan=nan, inf=inf)
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        header = {"format": "rcert-checkpoint", "format_version": 2,
                  "rcert_version": "0.3.0", "model": model.config(), "data": "digits:train",
                  "metrics": {}, "recommended_r": 0.75, "extra": {},
                  "sha256": tensor_digest(tensors)}
        if edit is not None:
            edit(header)
        body = text if text is not None else json.dumps(header, sort_keys=True)
        write(t, name, safetensors.torch.save(tensors, {"rcert": body}))
    return run


def legacy(name: str, *, edit: Callable[[dict], None] | None = None, nan: bool = False):
    """A legacy RCERTCKP checkpoint (conftest's writer), its header changed by ``edit``."""
    def run(t: Path) -> None:
        model = tiny_vae(nan=nan)
        header = legacy_header(model, {"data": "digits:train", "metrics": {},
                                       "recommended_r": 0.75, "extra": {}})
        if edit is not None:
            edit(header)
        write_legacy(t / name, dict(model.state_dict()), header)
    return run


def truncated(name: str, fraction: float, build: Callable[[Path], Any]):
    """A setup that runs ``build`` and then keeps the first ``fraction`` of ``t/name``."""
    def run(t: Path) -> None:
        build(t)
        path = t / name
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return run


def flipped(name: str, build: Callable[[Path], Any], at: int = -10):
    """A setup that runs ``build`` and then flips every bit of byte ``at`` of ``t/name``."""
    def run(t: Path) -> None:
        build(t)
        path = t / name
        data = bytearray(path.read_bytes())
        data[at] ^= 0xFF
        path.write_bytes(bytes(data))
    return run


# ------------------------------------------------------------------ foreign layouts


def _build_pythae(folder: Path) -> None:
    import pythae.models as models

    config = models.VAEConfig(input_dim=(1, 8, 8), latent_dim=3)
    models.VAE(config).save(str(folder / "model"))


def pythae_folder(name: str = "pyf", edit: Callable[[Path], None] | None = None):
    """A pythae VAE folder (saved by pythae itself), changed by ``edit(folder)``."""
    def run(t: Path) -> None:
        model = template("pythae", _build_pythae) / "model"
        shutil.copytree(model, t / name)
        if edit is not None:
            edit(t / name)
    return run


def edit_json(file: str, **changes):
    """An edit of a folder that updates the JSON object in ``folder/file`` with ``changes``."""
    def run(folder: Path) -> None:
        path = folder / file
        doc = json.loads(path.read_text())
        doc.update(changes)
        path.write_text(json.dumps(doc))
    return run


def vanilla_state(in_channels: int = 3, latent: int = 5, hidden=(4, 8, 16)) -> dict:
    """PyTorch-VAE's VanillaVAE state dict (models/vanilla_vae.py), key by key."""
    state: dict[str, torch.Tensor] = {}

    def layer(name, weight, bias):
        state[f"{name}.weight"] = 0.1 * torch.randn(*weight)
        state[f"{name}.bias"] = 0.1 * torch.randn(bias)

    def bn(name, n):
        state.update({f"{name}.weight": torch.ones(n), f"{name}.bias": torch.zeros(n),
                      f"{name}.running_mean": torch.zeros(n),
                      f"{name}.running_var": torch.ones(n),
                      f"{name}.num_batches_tracked": torch.tensor(7)})

    widths = [in_channels, *hidden]
    for i in range(len(hidden)):
        layer(f"encoder.{i}.0", (widths[i + 1], widths[i], 3, 3), widths[i + 1])
        bn(f"encoder.{i}.1", widths[i + 1])
    flat = hidden[-1] * 4
    layer("fc_mu", (latent, flat), latent)
    layer("fc_var", (latent, flat), latent)
    layer("decoder_input", (flat, latent), flat)
    back = list(hidden)[::-1]
    for i in range(len(hidden) - 1):
        layer(f"decoder.{i}.0", (back[i], back[i + 1], 3, 3), back[i + 1])
        bn(f"decoder.{i}.1", back[i + 1])
    layer("final_layer.0", (back[-1], back[-1], 3, 3), back[-1])
    bn("final_layer.1", back[-1])
    layer("final_layer.3", (3, back[-1], 3, 3), 3)
    return state


def lightning(state: dict, **extra) -> dict:
    """What PyTorch-VAE's Lightning checkpoint holds: the VAE is its ``self.model``."""
    return {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 3,
            "global_step": 120, "pytorch-lightning_version": "1.5.6", **extra}


def btc_args(**changes) -> argparse.Namespace:
    """beta-TCVAE's training ``args`` (an argparse Namespace), with ``changes``."""
    return argparse.Namespace(**{"latent_dim": 4, "conv": True, "dist": "normal", "beta": 6.0,
                                 "tcvae": True, "dataset": "shapes", **changes})
