"""Targets of Lu & Chen's targeted latent attack (spec section 2.2, Eq 5).

The paper suggests "images with all black/white pixels, with pixels randomly sampled from a
prior distribution, or with the reversed color of the original reconstruction" and uses
black alone; the toolkit adds another input of the data (the classic Tabacof-style target).
Every target is one image per attacked input, shaped like the model's outputs; the random
ones are keyed by the input's index, so an input's target does not depend on its batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from rcert.engine import noise
from rcert.errors import RcertError
from rcert.settings import LATENT_TARGETS
from rcert.source import parse_range
from rcert.values import check_seed

#: Noise stream of the prior targets' pixels, and the seed mix of :func:`other_inputs`.
STREAM_LATENT_TARGET = 11


def latent_target(kind: str, *, clean: Tensor, data_range: tuple[float, float], seed: int,
                  index: Tensor, other: Tensor | None = None) -> Tensor:
    """The targets ``x_t`` of the targeted attack (Lu & Chen Eq 5), ``(B, *shape)``.

    Parameters
    ----------
    kind
        ``black`` (the data range's low value everywhere, the paper's target), ``white``
        (its high value), ``prior`` (pixels i.i.d. uniform in the data range), ``inverted``
        (``low + high - clean``, the clean reconstruction with its values reversed) or
        ``other`` (``other``, another input per input).
    clean
        ``(B, *shape)`` clean reconstructions ``g(z0)``: the targets' shape, and the image
        ``inverted`` reverses.
    data_range
        ``(low, high)`` of the images.
    seed, index
        Key the prior targets: input ``index[i]``'s pixels are a pure function of
        ``(seed, index[i])`` (:mod:`rcert.engine.noise`, :data:`STREAM_LATENT_TARGET`).
    other
        ``(B, *shape)`` the other images, already matched to the inputs (see
        :func:`other_inputs`); needed by ``other`` alone.
    """
    low, high = parse_range(data_range)
    clean = clean.detach()
    if kind == "black":
        return torch.full_like(clean, low)
    if kind == "white":
        return torch.full_like(clean, high)
    if kind == "prior":
        numel = math.prod(clean.shape[1:])
        draws = noise.gaussian(seed, index.to(clean.device), 1, numel,
                               stream=STREAM_LATENT_TARGET, dtype=torch.float64)
        # Phi maps the standard normal draws to uniforms on (0, 1).
        pixels = low + (high - low) * torch.special.ndtr(draws)
        return pixels.reshape(clean.shape).to(clean.dtype)
    if kind == "inverted":
        return (low + high) - clean
    if kind == "other":
        if other is None:
            raise RcertError("the other target needs the other inputs' images, one per input; "
                             "pass other= (positions from other_inputs)")
        if tuple(other.shape) != tuple(clean.shape):
            raise RcertError(f"a target of shape {tuple(other.shape)} does not match the "
                             f"model's outputs {tuple(clean.shape)}; pass one image per input "
                             f"of the reconstructions' shape")
        return other.detach().to(clean)
    raise RcertError(f"unknown latent target {kind!r}; choose one of: "
                     f"{', '.join(LATENT_TARGETS)}")


def other_inputs(n_inputs: int, *, seed: int, labels: np.ndarray | None = None,
                 different_label: bool = False) -> np.ndarray:
    """Per input position ``i``, the position of another input (never ``i``), uniform among
    the others, or among those of another label with ``different_label``: ``(n_inputs,)``
    int64, seeded by ``numpy.random.default_rng([seed, STREAM_LATENT_TARGET])``.

    Uniform choice among the candidates without a loop: the inputs are sorted by label
    (stably), input ``i`` draws ``k`` uniform below its number of candidates, and ``k`` is
    mapped past ``i``'s own block of the sorted order (its own label, or ``i`` alone).
    """
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int | np.integer) \
            or n_inputs < 2:
        raise RcertError(f"an other-input target needs at least 2 inputs, got {n_inputs!r}; "
                         f"attack more inputs")
    if different_label and labels is None:
        raise RcertError("different_label needs the inputs' labels; use data with labels")
    if labels is not None and len(labels) != n_inputs:
        raise RcertError(f"labels must give one label per input ({n_inputs}), got "
                         f"{len(labels)}")
    rng = np.random.default_rng([check_seed(seed), STREAM_LATENT_TARGET])
    if different_label:
        order = np.argsort(labels, kind="stable")
        ordered = np.asarray(labels)[order]
        first = np.searchsorted(ordered, labels, side="left")
        own = np.searchsorted(ordered, labels, side="right") - first
    else:
        order = np.arange(n_inputs)
        first = np.arange(n_inputs)
        own = np.ones(n_inputs, dtype=np.int64)
    candidates = n_inputs - own
    if (candidates == 0).any():
        lone = int(np.flatnonzero(candidates == 0)[0])
        raise RcertError(f"input {lone} has no other input of another label: the inputs hold "
                         f"one label only; drop different_label or attack more labels")
    k = rng.integers(0, candidates)
    return order[np.where(k < first, k, k + own)].astype(np.int64)
