"""Checks on user input that turn bad values into one-line :class:`RcertError` messages, and
:func:`borrow`, which hands a user's model back as it came."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import torch
from torch import nn

from rcert.errors import RcertError
from rcert.settings import check_seed, positive_int

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Values this far outside the model's data range still count as inside (float rounding).
_RANGE_TOLERANCE = 1e-6


def as_data(model: nn.Module, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return ``x`` as a float tensor after checking it suits ``model``.

    Checks: at least one input, finite values, the model's ``input_shape`` when it
    declares one (channel count included), and the model's ``data_range`` when it
    declares one.
    """
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.number):
            raise RcertError(f"data must be numeric, got an array of dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise RcertError(f"data must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise RcertError(f"data must hold at least one input along its first axis, got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise RcertError(f"data contain NaN or Inf ({int(bad.sum())} inputs, the first at "
                         f"position {first}); clean or drop those inputs")
    shape = getattr(model, "input_shape", None)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise RcertError(f"data have input shape {tuple(x.shape[1:])} but the model expects "
                         f"{tuple(shape)}; pass data of the kind the model was trained on")
    data_range = getattr(model, "data_range", None)
    if data_range is not None:
        lo, hi = data_range
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - _RANGE_TOLERANCE or xmax > hi + _RANGE_TOLERANCE:
            raise RcertError(f"data values span [{xmin:g}, {xmax:g}] but the model's data range "
                             f"is [{lo:g}, {hi:g}]; rescale the data (e.g. divide 0-255 images "
                             f"by 255)")
    return x


def _first_failing(ok: torch.Tensor) -> int | None:
    """The first row of ``ok`` (one row per input) with a False entry, or None."""
    bad = ~ok.reshape(ok.shape[0], -1).all(dim=1)
    return int(bad.nonzero()[0]) if bad.any() else None


def check_finite(values: torch.Tensor, index: torch.Tensor, part: str) -> None:
    """Stop on any non-finite value in ``values`` (one row per input, ids in ``index``):
    the one rule for what a model returns, so that a NaN never becomes a silent abstention.

    ``part`` names what returned it, e.g. "the decoder's output"."""
    first = _first_failing(torch.isfinite(values))
    if first is not None:
        raise RcertError(
            f"{part} is not finite (NaN or inf) for input {int(index[first])}; the model's "
            f"weights or this input hold non-finite values or overflow: check the model with "
            f"rcert inspect and the data")


def check_sigma(sigma: torch.Tensor, index: torch.Tensor) -> None:
    """The encoder's ``sigma`` must be a strictly positive, finite standard deviation."""
    first = _first_failing(torch.isfinite(sigma) & (sigma > 0))
    if first is not None:
        value = float(sigma[first].min())
        raise RcertError(
            f"the encoder returned sigma <= 0 or non-finite (min {value:g}) for input "
            f"{int(index[first])}; sigma must be a standard deviation: wrap a model whose "
            f"encoder returns a log-variance with rcert.wrap(model, sigma='logvar') (or "
            f"'var', 'logsigma'; --sigma on the command line)")


def int_tuple(value: Any, name: str, *, allow_empty: bool) -> tuple[int, ...]:
    """A sequence of positive ints as a tuple, else an RcertError naming ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise RcertError(f"{name} must be a list of positive integers, got {value!r}")
    if not value and not allow_empty:
        raise RcertError(f"{name} must not be empty")
    return tuple(positive_int(v, f"every entry of {name}") for v in value)


def prepare(model: nn.Module, x: torch.Tensor | np.ndarray, *, index: np.ndarray | None,
            seed: int, device: str | torch.device | None
            ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Check and place what every engine entry point takes.

    The model goes to ``eval()`` mode and to ``device`` (default: its own device); the
    data are checked (:func:`as_data`) and cast to the model's dtype; ``index`` (default
    ``0 .. N-1``) must hold one non-negative id per input; ``seed`` must be a
    non-negative integer. Returns the model, the data and the ids as a tensor.
    """
    check_seed(seed)
    model.eval()
    param = next(iter(model.parameters()), None)
    dev = torch.device(device) if device is not None else (
        param.device if param is not None else torch.device("cpu"))
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    model.to(dev)
    x = as_data(model, x).to(device=dev, dtype=dtype)
    n_inputs = x.shape[0]
    index_t = torch.as_tensor(
        np.arange(n_inputs) if index is None else np.array(index), dtype=torch.int64
    )
    if index_t.shape != (n_inputs,) or bool((index_t < 0).any()):
        raise RcertError(f"index must hold one non-negative id per input ({n_inputs}), got "
                         f"shape {tuple(index_t.shape)}")
    return model, x, index_t.to(dev)


@contextmanager
def borrow(model: nn.Module) -> Iterator[nn.Module]:
    """Lend ``model`` to a block of work and hand it back as it came.

    Records every submodule's ``training`` flag, every parameter's ``requires_grad`` and the
    device the parameters and buffers share; restores all three when the block ends, also
    on an exception. The block may put the model in ``eval()`` mode and move it
    (:func:`prepare`): a user's model in training stays in training. A model spread over
    several devices is not moved back (rcert runs a model on one device).

    Parameters
    ----------
    model
        The user's model.

    Yields
    ------
    torch.nn.Module
        ``model`` itself.
    """
    if not isinstance(model, nn.Module):
        raise RcertError(f"the model must be a torch.nn.Module with encode() and decode(), got "
                         f"{type(model).__name__}; wrap a foreign VAE with rcert.wrap")
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    try:
        yield model
    finally:
        # Flag by flag: train(mode) would recurse and overwrite children set before.
        for module, mode in modes:
            module.training = mode
        for param, flag in flags:
            param.requires_grad_(flag)
        if len(devices) == 1:
            model.to(devices.pop())


def borrows_model(fn: Callable[Concatenate[nn.Module, _P], _R]
                  ) -> Callable[Concatenate[nn.Module, _P], _R]:
    """Decorate a public entry point whose first argument is the model: the call runs inside
    :func:`borrow`, so the user's model comes back in its own modes and on its own device."""

    @functools.wraps(fn)
    def lent(model: nn.Module, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with borrow(model):
            return fn(model, *args, **kwargs)

    return lent
