"""The building blocks of rcert's architectures: activations, MLP stacks, and the
convolutional encoder and decoder that mirror each other exactly (:mod:`rcert.models.nets`,
:mod:`rcert.models.hierarchical`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import nn

from rcert.errors import RcertError


class LeakyReLU(nn.LeakyReLU):
    """LeakyReLU with slope 0.2 (Lu & Chen's networks; the slope is the spec's default, the
    paper states none)."""

    def __init__(self) -> None:
        super().__init__(0.2)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "leaky_relu": LeakyReLU,
}


def mlp_stack(widths: Sequence[int], activation: type[nn.Module], *,
              last_activation: bool) -> nn.Sequential:
    """Linear layers through ``widths`` with ``activation`` between them (and after the last
    with ``last_activation``)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def conv_encoder(input_shape: Sequence[int], channels: Sequence[int], activation: str,
                 dense: int | None = None) -> tuple[nn.Sequential, int, list[tuple[int, int]]]:
    """Kernel-4 stride-2 padding-1 convolutions, one per entry of ``channels``, flattened,
    then a dense layer of width ``dense`` if given (Chen et al. 2018's 512, which their
    4x4 valid convolution on the 4x4 map is).

    Returns the stack, its output width and the side of every level (input first).
    """
    if len(input_shape) != 3:
        raise RcertError(
            f"the conv architecture needs input_shape (C, H, W), got {list(input_shape)}"
            "; use arch 'mlp' for other shapes"
        )
    c_in, height, width = input_shape
    sides = [(height, width)]
    for _ in channels:
        sides.append((sides[-1][0] // 2, sides[-1][1] // 2))
    if min(sides[-1]) < 1:
        raise RcertError(
            f"input {height}x{width} is too small for {len(channels)} stride-2 "
            "convolutions; use fewer channels entries"
        )
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for c_prev, c_next in zip((c_in, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv2d(c_prev, c_next, 4, stride=2, padding=1), act()]
    flat = channels[-1] * sides[-1][0] * sides[-1][1]
    layers.append(nn.Flatten(1))
    if dense is not None:
        layers += [nn.Linear(flat, dense), act()]
    return nn.Sequential(*layers), flat if dense is None else dense, sides


def conv_decoder(n_in: int, c_in: int, channels: Sequence[int], sides: list[tuple[int, int]],
                 activation: str, dense: int | None = None) -> nn.Sequential:
    """A linear layer from ``n_in`` codes (through a dense layer of width ``dense`` if given)
    to the smallest map, then transposed convolutions mirroring :func:`conv_encoder`; each
    restores the exact side it mirrors through ``output_padding`` (0 or 1), so the output
    shape equals the encoder's input shape."""
    act = ACTIVATIONS[activation]
    first: list[nn.Module] = [] if dense is None else [nn.Linear(n_in, dense), act()]
    layers: list[nn.Module] = [
        *first,
        nn.Linear(n_in if dense is None else dense, channels[-1] * sides[-1][0] * sides[-1][1]),
        act(),
        nn.Unflatten(1, (channels[-1], *sides[-1])),
    ]
    c_out = (c_in, *channels[:-1])
    for level in reversed(range(len(channels))):
        (h_big, w_big), (h_small, w_small) = sides[level], sides[level + 1]
        layers.append(nn.ConvTranspose2d(
            channels[level], c_out[level], 4, stride=2, padding=1,
            output_padding=(h_big - 2 * h_small, w_big - 2 * w_small)))
        if level > 0:
            layers.append(act())
    return nn.Sequential(*layers)


def mlp_parts(input_shape: Sequence[int], hidden: Sequence[int], activation: str,
              latent_dim: int, decoder_in: int, sigma_head: bool
              ) -> tuple[dict[str, nn.Module], int]:
    """The fully connected VAE's modules, in registration order: a shared ``trunk`` over the
    flattened input, a ``mu_head`` and (``sigma_head``) a ``sigma_head`` of ``latent_dim``
    outputs, and a ``decoder`` from ``decoder_in`` codes through the reversed widths. Also
    the trunk's output width."""
    act = ACTIVATIONS[activation]
    n_in = math.prod(input_shape)
    width = hidden[-1] if hidden else n_in
    parts: dict[str, nn.Module] = {"trunk": mlp_stack([n_in, *hidden], act,
                                                      last_activation=True),
                                   "mu_head": nn.Linear(width, latent_dim)}
    if sigma_head:
        parts["sigma_head"] = nn.Linear(width, latent_dim)
    parts["decoder"] = mlp_stack([decoder_in, *reversed(hidden), n_in], act,
                                 last_activation=False)
    return parts, width
