"""What every library loader does once it knows the library's conventions.

:func:`build_checked` builds an architecture whose sizes come from the file on the meta
device and checks the weights against it before any memory is allocated; :func:`finish`
puts the model in eval mode, wraps it (:func:`rcert.models.adapters.wrap`) and attaches
``input_shape``, ``data_range`` and ``meta``, letting the user's :class:`ModelSource`
settings override the library's.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rcert.errors import RcertError, first_line
from rcert.models.adapters import wrap
from rcert.models.statedict import load_weights
from rcert.source import ModelSource


def build_checked(build: Callable[[], nn.Module], state: Mapping[str, Tensor],
                  path: str | os.PathLike[str],
                  sizes_from: str | os.PathLike[str] | None = None) -> nn.Module:
    """``build()`` on the CPU holding ``state``, whose names and shapes must match exactly.

    The module is first built on the meta device, so that sizes read from a hostile file
    (a huge latent size, a huge input) cannot exhaust memory before they have been checked
    against the tensors the file actually holds. Errors name ``path`` (the weights) and
    ``sizes_from`` (the file the sizes come from, if not ``path``).

    Raises
    ------
    RcertError
        The sizes describe no valid module, or ``state`` does not fit it (missing or
        unexpected keys, different shapes; see :func:`rcert.models.statedict.load_weights`).
    """
    try:
        with torch.device("meta"):
            module = build()
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        raise RcertError(f"{sizes_from or path} describes an invalid model ({first_line(exc)}); "
                         "check that the file is complete and was written by the library") from None
    with warnings.catch_warnings():
        # Copying into meta tensors is a no-op that torch warns about; only the names and
        # shapes are checked here.
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        load_weights(module, state, path)
    module = module.to_empty(device="cpu")
    module.load_state_dict(dict(state))
    return module


def finish(
    module: nn.Module,
    source: ModelSource,
    *,
    library: str,
    sigma: str,
    encode: Callable[[nn.Module, Tensor], Any],
    decode: Callable[[nn.Module, Tensor], Any],
    input_shape: tuple[int, ...] | None,
    data_range: tuple[float, float] | None,
    **extra: Any,
) -> nn.Module:
    """``module`` in eval mode behind :func:`rcert.models.adapters.wrap`, with its metadata.

    Parameters
    ----------
    module
        The library's model, weights loaded, on the CPU.
    source
        Where the model came from; its ``sigma``, ``input_shape`` and ``data_range``, when
        given, override the library's.
    library
        The library's name (:data:`rcert.source.LIBRARIES`), recorded in ``meta`` as both
        ``library`` and ``format`` (the library wrote the file, whatever its container).
    sigma, encode, decode
        The library's convention for the encoder's second output and how to call the
        encoder and decoder (see :func:`rcert.models.adapters.wrap`).
    input_shape, data_range
        The library's defaults; None when the library does not fix them.
    **extra
        Library-specific ``meta`` entries (JSON-compatible), e.g. ``config``.

    Returns
    -------
    torch.nn.Module
        The wrapped model, with ``input_shape``, ``data_range`` (either may be None) and
        ``meta`` attributes.
    """
    sigma = source.sigma or sigma
    input_shape = source.input_shape or input_shape
    data_range = source.data_range or data_range
    wrapped = wrap(module.eval(), sigma=sigma, encode=encode, decode=decode,
                   input_shape=input_shape, data_range=data_range)
    for name, value in (("input_shape", input_shape), ("data_range", data_range)):
        if value is None:
            # Stated as unknown rather than left out, so that the loading checks name it.
            setattr(wrapped, name, None)
    wrapped.meta = {
        "format": library,
        "library": library,
        "sigma": sigma,
        "data_range": None if data_range is None else list(data_range),
        "input_shape": None if input_shape is None else list(input_shape),
        **extra,
    }
    return wrapped.eval()
