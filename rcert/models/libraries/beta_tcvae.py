"""rtqichen/beta-tcvae checkpoints, read by rcert's own copies of its networks.

Checked against the repository at 1a3577d (2019-04-22):

* ``vae_quant.py``: ``VAE`` holds ``encoder`` and ``decoder`` (``MLPEncoder``/``MLPDecoder``,
  or ``ConvEncoder``/``ConvDecoder`` with ``--conv``) and a ``prior_params`` buffer of shape
  ``(z_dim, 2)``; its distributions have no tensors of their own, except the ``-dist flow``
  prior (``prior_dist.scale``, ``.weight``, ``.bias``). ``MLPEncoder`` keeps an unused
  ``conv_z`` convolution, whose weights are in every MLP checkpoint. Inputs are 64x64
  grayscale images in [0, 1] (dSprites, and the 3D faces divided by 255 in
  ``lib/datasets.py``).
* ``VAE.encode`` views the encoder's output as ``(batch, z_dim, 2)``: ``[..., 0]`` is the mean
  and ``[..., 1]`` the log standard deviation (``lib/dist.py`` ``Normal``: ``mu_logsigma``,
  sample ``= eps * exp(logsigma) + mu``). The decoder returns Bernoulli logits
  (``lib/dist.py`` ``Bernoulli`` takes the sigmoid of ``presigm_ps``), so rcert's decoder
  mean is their sigmoid.
* ``lib/utils.py`` ``save_checkpoint`` writes ``checkpt-0000.pth`` =
  ``{'state_dict': vae.state_dict(), 'args': argparse.Namespace}``; the repository's own
  loaders (``elbo_decomposition.py``, ``metric_helpers/loader.py``) read ``args.latent_dim``,
  ``args.dist`` and ``args.conv`` (False when absent, for old checkpoints).

``-dist normal`` and ``-dist flow`` have a Gaussian encoder (the flow only changes the prior,
which certificates never use, so its tensors are set aside); ``-dist laplace`` is refused.
"""

from __future__ import annotations

import argparse
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.models.libraries.common import build_checked, finish
from rcert.models.statedict import find_state_dict, read_torch_file
from rcert.source import ModelSource

#: ``-dist`` values whose encoder is a Gaussian (the flow changes the prior only).
GAUSSIAN_DISTS = ("normal", "flow")
_SIDE = 64
#: (in, out, kernel, stride, padding) of ``ConvEncoder.conv1..conv5`` and of
#: ``ConvDecoder.conv2..conv5`` (``conv1`` takes the latent, ``conv_final`` gives the image).
_CONV_ENCODER = ((1, 32, 4, 2, 1), (32, 32, 4, 2, 1), (32, 64, 4, 2, 1), (64, 64, 4, 2, 1),
                 (64, 512, 4, 1, 0))
_CONV_DECODER = ((512, 64, 4, 1, 0), (64, 64, 4, 2, 1), (64, 32, 4, 2, 1), (32, 32, 4, 2, 1))


class _MLPEncoder(nn.Module):
    def __init__(self, output_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(_SIDE * _SIDE, 1200)
        self.fc2 = nn.Linear(1200, 1200)
        self.fc3 = nn.Linear(1200, output_dim)
        # Unused by forward, as in the repository, but saved in its checkpoints.
        self.conv_z = nn.Conv2d(64, output_dim, 4, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.fc1(x.reshape(x.shape[0], _SIDE * _SIDE)))
        return self.fc3(torch.relu(self.fc2(h)))


class _MLPDecoder(nn.Module):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, 1200), nn.Tanh(), nn.Linear(1200, 1200),
                                 nn.Tanh(), nn.Linear(1200, 1200), nn.Tanh(),
                                 nn.Linear(1200, _SIDE * _SIDE))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], -1))


class _ConvEncoder(nn.Module):
    def __init__(self, output_dim: int) -> None:
        super().__init__()
        for i, (c_in, c_out, k, s, p) in enumerate(_CONV_ENCODER, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, k, s, p))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c_out))
        self.conv_z = nn.Conv2d(512, output_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], 1, _SIDE, _SIDE)
        for i in range(1, len(_CONV_ENCODER) + 1):
            h = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(h)))
        return self.conv_z(h).reshape(x.shape[0], -1)


class _ConvDecoder(nn.Module):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        layers = ((input_dim, 512, 1, 1, 0), *_CONV_DECODER)
        for i, (c_in, c_out, k, s, p) in enumerate(layers, start=1):
            setattr(self, f"conv{i}", nn.ConvTranspose2d(c_in, c_out, k, s, p))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c_out))
        self.conv_final = nn.ConvTranspose2d(32, 1, 4, 2, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = z.reshape(z.shape[0], z.shape[1], 1, 1)
        for i in range(1, len(_CONV_DECODER) + 2):
            h = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(h)))
        return self.conv_final(h)


class BetaTCVAE(nn.Module):
    """The encoder and decoder of the repository's ``VAE`` (see the module docstring), with
    its ``prior_params`` buffer so that a checkpoint's state dict matches exactly."""

    def __init__(self, latent_dim: int, conv: bool) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = (_ConvEncoder if conv else _MLPEncoder)(2 * latent_dim)
        self.decoder = (_ConvDecoder if conv else _MLPDecoder)(latent_dim)
        self.register_buffer("prior_params", torch.zeros(latent_dim, 2))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log sigma)``: the encoder's output viewed as ``(batch, z_dim, 2)`` pairs."""
        params = self.encoder(x).reshape(x.shape[0], self.latent_dim, 2)
        return params[..., 0], params[..., 1]

    def decode(self, z: Tensor) -> Tensor:
        """The Bernoulli means: the sigmoid of the decoder's logits, ``(batch, 1, 64, 64)``."""
        return torch.sigmoid(self.decoder(z).reshape(z.shape[0], 1, _SIDE, _SIDE))


def detect(path: Path, obj: Any | None) -> bool:
    """Whether ``obj`` is ``{'state_dict': ..., 'args': Namespace(latent_dim=...)}``."""
    return (isinstance(obj, Mapping) and "state_dict" in obj
            and isinstance(obj.get("args"), argparse.Namespace)
            and hasattr(obj["args"], "latent_dim"))


def _settings(args: Any, where: str) -> tuple[int, bool, str]:
    """``(latent_dim, conv, dist)`` from ``vae_quant.py``'s ``args``; ``where`` names them."""
    if not isinstance(args, argparse.Namespace):
        raise RcertError(f"{where} has no args (an argparse.Namespace), which vae_quant.py "
                         "always saves; pass the checkpt-0000.pth that beta-tcvae wrote")
    latent_dim = getattr(args, "latent_dim", None)
    if not isinstance(latent_dim, numbers.Integral) or isinstance(latent_dim, bool) \
            or latent_dim < 1:
        raise RcertError(f"args.latent_dim={latent_dim!r} in {where} is not a positive "
                         "integer; pass a checkpoint written by beta-tcvae's vae_quant.py")
    conv = getattr(args, "conv", False)  # the repository's loaders' default for old files
    dist = getattr(args, "dist", None)
    if not isinstance(conv, bool):
        raise RcertError(f"args.conv={conv!r} in {where} is not true or false; pass a "
                         "checkpoint written by beta-tcvae's vae_quant.py")
    if dist == "laplace":
        raise RcertError(f"{where} was trained with -dist laplace: its encoder is a Laplace "
                         "distribution, not a Gaussian, so rcert's bounds do not apply; "
                         "certify a model trained with -dist normal")
    if dist not in GAUSSIAN_DISTS:
        raise RcertError(f"args.dist={dist!r} in {where} is not one of vae_quant.py's "
                         "normal, laplace or flow; pass a checkpoint beta-tcvae wrote")
    return int(latent_dim), conv, dist


def build(args: argparse.Namespace) -> BetaTCVAE:
    """The untrained :class:`BetaTCVAE` that ``vae_quant.py``'s ``args`` describe, whose
    ``state_dict()`` has the keys and shapes of the repository's checkpoints (``-dist flow``
    aside, whose prior tensors rcert does not keep).

    Raises
    ------
    RcertError
        ``args`` lack a positive ``latent_dim``, or describe a non-Gaussian encoder.
    """
    latent_dim, conv, _ = _settings(args, "the args")
    return BetaTCVAE(latent_dim, conv)


def _plain(args: argparse.Namespace) -> dict[str, Any]:
    """The training arguments that are plain JSON values, for ``meta``."""
    return {k: v for k, v in sorted(vars(args).items())
            if v is None or isinstance(v, (str, bool, int, float))}


def load(source: ModelSource, obj: Any | None) -> nn.Module:
    """The beta-TCVAE model in the ``checkpt-*.pth`` at ``source.path``.

    Returns
    -------
    torch.nn.Module
        rcert's :class:`BetaTCVAE` wrapped with ``sigma="logsigma"``, decoding to
        probabilities, in eval mode; ``input_shape`` (1, 64, 64), ``data_range`` (0, 1);
        ``meta`` adds ``architecture`` (``"conv"`` or ``"mlp"``), ``latent_dim``, ``dist``
        and ``args`` (the plain training arguments).

    Raises
    ------
    RcertError
        No ``args``, a non-Gaussian encoder (``-dist laplace``), or weights that do not fit
        the architecture ``args`` describe (the differing keys or shapes are named).
    """
    path = Path(source.path)
    if obj is None:
        obj = read_torch_file(path)
    args = obj.get("args") if isinstance(obj, Mapping) else None
    latent_dim, conv, dist = _settings(args, str(path))
    state = find_state_dict(obj, path)
    if dist == "flow":
        state = {k: v for k, v in state.items() if not k.startswith("prior_dist.")}
    module = build_checked(lambda: BetaTCVAE(latent_dim, conv), state, path)
    return finish(
        module, source, library="beta-tcvae", sigma="logsigma", encode=BetaTCVAE.encode,
        decode=BetaTCVAE.decode, input_shape=(1, _SIDE, _SIDE), data_range=(0.0, 1.0),
        architecture="conv" if conv else "mlp", latent_dim=latent_dim, dist=dist,
        args=_plain(args),
    )
