"""PyTorch-VAE (AntixK/PyTorch-VAE) checkpoints, read by rcert's own ``VanillaVAE``.

Checked against the repository at a6896b9 (2021-12-22, pytorch-lightning 1.5.6):

* ``models/vanilla_vae.py``: encoder blocks ``Conv2d(3x3, stride 2, padding 1)``,
  ``BatchNorm2d``, ``LeakyReLU`` over ``hidden_dims`` (default 32, 64, 128, 256, 512);
  ``fc_mu``/``fc_var`` ``Linear(hidden_dims[-1] * 4, latent_dim)``, so the encoder ends at
  2x2 and inputs are ``2 ** (len(hidden_dims) + 1)`` pixels wide (64 by default);
  ``decoder_input``, ``ConvTranspose2d(3x3, stride 2, output_padding 1)`` blocks over the
  reversed widths, and ``final_layer`` (transposed conv, batch norm, LeakyReLU,
  ``Conv2d(..., out_channels=3)``, ``Tanh``). ``encode`` returns ``[mu, log_var]``, a
  log-variance (``reparameterize`` takes ``std = exp(0.5 * logvar)``). Its ``decode``
  reshapes to ``(-1, 512, 2, 2)``, so the repository only trains models whose last width is
  512; rcert reshapes to the last width, the same map for those.
* ``experiment.py``: ``VAEXperiment`` (a LightningModule) holds the VAE as ``self.model``,
  so a ``.ckpt``'s keys start with ``model.``; it never calls ``save_hyperparameters``, so
  its checkpoints carry no sizes, and rcert reads them off the weights' shapes.
* Data: ``dataset.py`` (Dec 2021, with Lightning 1.5.6) feeds CelebA through ``ToTensor()``
  alone, so inputs lie in [0, 1] although the decoder's ``Tanh`` outputs [-1, 1]; the 2020
  code (Lightning 0.6/0.7, ``experiment.py``) mapped them to [-1, 1] with ``2 * X - 1``. The
  data range therefore follows the checkpoint's ``pytorch-lightning_version``: (0, 1) from
  1.5 on, (-1, 1) before, unknown for a bare state dict.

Other models of the repository whose modules and ``encode``/``decode`` are VanillaVAE's
(:data:`SAME_LAYOUT`) load too; any other is refused with the ``--factory`` way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.models.libraries.common import build_checked, finish
from rcert.models.statedict import find_state_dict, read_torch_file
from rcert.source import ModelSource

#: Classes of the repository that build exactly VanillaVAE's modules and share its
#: ``encode`` and ``decode`` (IWAE and MIWAE decode several samples at once, the same map).
SAME_LAYOUT = ("VanillaVAE", "VAE", "GaussianVAE", "BetaVAE", "DIPVAE", "InfoVAE",
               "LogCoshVAE", "MSSIMVAE", "IWAE", "MIWAE")
#: State-dict keys that mark a PyTorch-VAE model (with ``final_layer.*``).
MARKERS = ("fc_mu.weight", "fc_var.weight", "decoder_input.weight")
_OTHER = ("rcert re-implements PyTorch-VAE's VanillaVAE only (and the models sharing its layout: "
          f"{', '.join(SAME_LAYOUT[3:])}); for another model of the repository run rcert from "
          "a PyTorch-VAE checkout with --factory models:<Class> --factory-arg in_channels=3 "
          "--factory-arg latent_dim=<d> --sigma logvar")


class VanillaVAE(nn.Module):
    """PyTorch-VAE's ``VanillaVAE`` with the repository's module names (see the module
    docstring); ``out_channels`` is 3 in the repository, whatever ``in_channels``."""

    def __init__(self, in_channels: int, latent_dim: int, hidden_dims: Sequence[int],
                 out_channels: int = 3) -> None:
        super().__init__()
        self.hidden_dims = tuple(hidden_dims)
        widths = (in_channels, *self.hidden_dims)
        self.encoder = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1),
                          nn.BatchNorm2d(b), nn.LeakyReLU())
            for a, b in pairwise(widths)))
        flat = self.hidden_dims[-1] * 4
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_var = nn.Linear(flat, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, flat)
        back = self.hidden_dims[::-1]
        self.decoder = nn.Sequential(*(
            nn.Sequential(nn.ConvTranspose2d(a, b, kernel_size=3, stride=2, padding=1,
                                             output_padding=1),
                          nn.BatchNorm2d(b), nn.LeakyReLU())
            for a, b in pairwise(back)))
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(back[-1], back[-1], kernel_size=3, stride=2, padding=1,
                               output_padding=1),
            nn.BatchNorm2d(back[-1]), nn.LeakyReLU(),
            nn.Conv2d(back[-1], out_channels, kernel_size=3, padding=1), nn.Tanh())

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)``, as the repository's ``encode``."""
        h = torch.flatten(self.encoder(x), start_dim=1)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z: Tensor) -> Tensor:
        """The ``Tanh`` output in [-1, 1]."""
        h = self.decoder_input(z).reshape(z.shape[0], self.hidden_dims[-1], 2, 2)
        return self.final_layer(self.decoder(h))


def detect(path: Path, obj: Any | None) -> bool:
    """Whether ``obj`` holds a state dict with VanillaVAE-style ``fc_mu``, ``fc_var``,
    ``decoder_input`` and ``final_layer`` tensors (prefixes such as ``model.`` stripped)."""
    if not isinstance(obj, Mapping):
        return False
    try:
        state = find_state_dict(obj, path)
    except RcertError:
        return False
    return all(k in state for k in MARKERS) and any(k.startswith("final_layer.") for k in state)


def _sizes(state: Mapping[str, Tensor], path: Path) -> dict[str, Any]:
    """``VanillaVAE``'s arguments, read off the shapes of its weights."""
    blocks = []
    while f"encoder.{len(blocks)}.0.weight" in state:
        blocks.append(state[f"encoder.{len(blocks)}.0.weight"])
    final = state.get("final_layer.3.weight")
    if (not blocks or final is None or state["fc_mu.weight"].dim() != 2
            or any(w.dim() != 4 for w in [*blocks, final])):
        raise RcertError(f"{path} lacks VanillaVAE's encoder.<i>.0 and final_layer.3 "
                         f"convolutions; {_OTHER}")
    return {"in_channels": int(blocks[0].shape[1]),
            "latent_dim": int(state["fc_mu.weight"].shape[0]),
            "hidden_dims": [int(w.shape[0]) for w in blocks],
            "out_channels": int(final.shape[0])}


def _differs(value: Any, size: Any) -> bool:
    """Whether a saved hyper-parameter differs from the size read off the weights; one whose
    comparison has no truth value (a tensor of several numbers) differs."""
    try:
        return bool(value != size)
    except (RuntimeError, TypeError, ValueError):
        return True


def _model_name(obj: Any, sizes: dict[str, Any], path: Path) -> str:
    """The class named by hyper-parameters a fork may have saved, checked against the weights.

    A table (the hyper-parameters or one nested in them, e.g. ``model_params``) that has
    ``latent_dim`` describes the model; its sizes must agree with the weights' shapes."""
    hparams = obj.get("hyper_parameters") if isinstance(obj, Mapping) else None
    tables = [] if not isinstance(hparams, Mapping) else [
        hparams, *(v for v in hparams.values() if isinstance(v, Mapping))]
    name = "VanillaVAE"
    for table in (t for t in tables if "latent_dim" in t):
        given = table.get("name", name)
        if given not in SAME_LAYOUT:
            raise RcertError(f"{path} is a PyTorch-VAE {given}, not a VanillaVAE; {_OTHER}")
        name = given
        for key in ("in_channels", "latent_dim", "hidden_dims"):
            value = table.get(key)
            if isinstance(value, Sequence) and not isinstance(value, str):
                value = list(value)  # hidden_dims may have been saved as a tuple
            if value is not None and _differs(value, sizes[key]):
                raise RcertError(f"{path} has hyper-parameter {key}={value!r} but weights "
                                 f"for {key}={sizes[key]!r}; the checkpoint is inconsistent: "
                                 "save it again from the trained model")
    return name


def _check_keys(state: Mapping[str, Tensor], sizes: dict[str, Any], path: Path) -> None:
    with torch.device("meta"):
        expected = set(VanillaVAE(**sizes).state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise RcertError(f"{path} is not a PyTorch-VAE VanillaVAE (unexpected keys "
                         f"{', '.join(unexpected[:3]) or 'none'}; missing keys "
                         f"{', '.join(missing[:3]) or 'none'}); {_OTHER}")


def _data_range(obj: Any) -> tuple[tuple[float, float] | None, str | None]:
    """The data range the repository's code of that Lightning era trained on, and the
    version (see the module docstring)."""
    version = obj.get("pytorch-lightning_version") if isinstance(obj, Mapping) else None
    found = re.match(r"(\d+)\.(\d+)", version) if isinstance(version, str) else None
    if found is None:
        return None, None
    era = (int(found.group(1)), int(found.group(2)))
    return ((0.0, 1.0) if era >= (1, 5) else (-1.0, 1.0)), version


def load(source: ModelSource, obj: Any | None) -> nn.Module:
    """The VanillaVAE in the Lightning ``.ckpt`` or state dict at ``source.path``.

    Returns
    -------
    torch.nn.Module
        rcert's :class:`VanillaVAE` wrapped with ``sigma="logvar"``, in eval mode (batch
        norm uses its running statistics); ``input_shape`` is ``(in_channels, H, H)`` with
        ``H = 2 ** (len(hidden_dims) + 1)``; ``data_range`` as the module docstring says;
        ``meta`` adds ``model``, ``architecture`` (the sizes) and ``lightning_version``.

    Raises
    ------
    RcertError
        The file holds no VanillaVAE state dict (another model of the repository: use
        ``--factory``), or its hyper-parameters disagree with its weights.
    """
    path = Path(source.path)
    if obj is None:
        obj = read_torch_file(path)
    state = find_state_dict(obj, path)
    absent = [k for k in MARKERS if k not in state]
    if absent:
        raise RcertError(f"{path} is no PyTorch-VAE checkpoint (no {', '.join(absent)}); "
                         "check the file or drop --library pytorch-vae")
    sizes = _sizes(state, path)
    name = _model_name(obj, sizes, path)
    _check_keys(state, sizes, path)
    module = build_checked(lambda: VanillaVAE(**sizes), state, path)
    data_range, version = _data_range(obj)
    side = 2 ** (len(sizes["hidden_dims"]) + 1)
    return finish(
        module, source, library="pytorch-vae", sigma="logvar", encode=VanillaVAE.encode,
        decode=VanillaVAE.decode, input_shape=(sizes["in_channels"], side, side),
        data_range=data_range, model=name, architecture=sizes, lightning_version=version,
    )
