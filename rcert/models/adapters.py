"""Adapt a foreign VAE to the engine's interface: ``encode(x) -> (mu, sigma)``, ``decode(z)``.

Libraries disagree on what the encoder's second output is: a standard deviation, a variance,
a log-variance (pythae ``log_covariance``, PyTorch-VAE ``log_var``, disentanglement_lib
``logvar``) or a log standard deviation (rtqichen/beta-tcvae). The bounds divide by
``sigma`` [C Sec 3], so a wrong conversion silently biases every certificate; :func:`wrap`
makes the convention explicit and converts to the standard deviation.

Without ``encode``/``decode`` methods, the ``encoder``/``decoder`` submodules are called;
their outputs may be pairs or carry named fields (pythae ``embedding``/``log_covariance``,
``mu``/``log_var``). Recipes::

    wrap(pytorch_vae_model, sigma="logvar")                      # encode -> [mu, log_var]
    wrap(pythae_model, sigma="logvar")                           # encoder -> ModelOutput
    wrap(model, sigma="var", encode=lambda m, x: m.q(x)[:2])     # anything else
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.source import parse_range
from rcert.validate import int_tuple

# Each maps the encoder's second output to the standard deviation sigma.
SIGMA_CONVERSIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigma": lambda s: s,
    "var": torch.sqrt,  # sigma = sqrt(var)
    "logvar": lambda lv: torch.exp(0.5 * lv),  # sigma = exp(log(sigma^2) / 2)
    "logsigma": torch.exp,  # sigma = exp(log sigma)
}


def _field(out: Any, name: str) -> Any:
    """``out.name`` or ``out[name]``, whichever exists (pythae ModelOutput allows both)."""
    if hasattr(out, name):
        return getattr(out, name)
    if isinstance(out, Mapping):
        return out.get(name)
    return None


#: Named encoder outputs whose second field is a log-variance: pythae's ModelOutput,
#: PyTorch-VAE-style dicts and disentanglement_lib-style objects.
LOGVAR_FIELDS = (("embedding", "log_covariance"), ("mu", "log_var"), ("mu", "logvar"))


def _named_pair(out: Any, sigma_kind: str) -> Any:
    """``(mu, logvar)`` from an output with named fields; ``out`` itself when it has none."""
    for mean, second in LOGVAR_FIELDS:
        mu, logvar = _field(out, mean), _field(out, second)
        if mu is not None and logvar is not None:
            if sigma_kind != "logvar":
                raise RcertError(
                    f"the encoder returns {mean} and {second} (a log-variance) but wrap was "
                    f"given sigma={sigma_kind!r}; pass sigma='logvar'"
                )
            return mu, logvar
    return out


def _default_call(module: nn.Module, role: str, arg: Tensor) -> Any:
    """``module.encode(x)``, or ``module.encoder(x)`` for modules with only a submodule."""
    method = getattr(module, role, None)
    return method(arg) if callable(method) else getattr(module, f"{role}r")(arg)


class Wrapped(nn.Module):
    """A foreign VAE seen through the engine's interface; made by :func:`wrap`.

    The wrapped model is the submodule ``module``, so ``.eval()``, ``.to()`` and
    ``.parameters()`` reach it.
    """

    def __init__(
        self,
        module: nn.Module,
        sigma: str,
        encode: Callable[[nn.Module, Tensor], Any] | None,
        decode: Callable[[nn.Module, Tensor], Any] | None,
    ) -> None:
        super().__init__()
        self.module = module
        self.sigma_kind = sigma
        self._encode_fn = encode
        self._decode_fn = decode

    def extra_repr(self) -> str:
        return f"sigma={self.sigma_kind!r}"

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, sigma)``, with ``sigma`` the standard deviation converted per ``sigma_kind``."""
        if self._encode_fn:
            out = self._encode_fn(self.module, x)
        else:
            out = _default_call(self.module, "encode", x)
        out = _named_pair(out, self.sigma_kind)
        if isinstance(out, (str, bytes)) or not isinstance(out, Sequence) or len(out) != 2:
            raise RcertError(
                f"the encoder returned {type(out).__name__}, not a (mu, {self.sigma_kind}) pair; "
                "pass encode=lambda module, x: (mu, second) to wrap"
            )
        mu, second = out
        if not isinstance(mu, Tensor) or not isinstance(second, Tensor):
            raise RcertError(
                "the encoder's outputs are not tensors; pass encode= to wrap to return tensors"
            )
        if mu.shape != second.shape or mu.dim() != 2:
            raise RcertError(
                f"the encoder returned mu {tuple(mu.shape)} and {self.sigma_kind} "
                f"{tuple(second.shape)}; both must be (batch, d_z): pass encode= to reshape"
            )
        return mu, SIGMA_CONVERSIONS[self.sigma_kind](second)

    def decode(self, z: Tensor) -> Tensor:
        """The decoder mean ``g(z)`` (a pythae ``reconstruction`` field is unpacked)."""
        if self._decode_fn:
            out = self._decode_fn(self.module, z)
        else:
            out = _default_call(self.module, "decode", z)
        reconstruction = _field(out, "reconstruction")
        if not isinstance(out, Tensor) and reconstruction is not None:
            out = reconstruction
        if not isinstance(out, Tensor):
            raise RcertError(
                f"the decoder returned {type(out).__name__}, not a tensor; "
                "pass decode=lambda module, z: g(z) to wrap"
            )
        return out


def _check_callable(fn: Any, role: str, module: nn.Module) -> None:
    arg = "x" if role == "encode" else "z"
    example = f"{role}=lambda m, {arg}: m.{role}r({arg})"
    if fn is None:
        if not callable(getattr(module, role, None)) and not callable(
            getattr(module, f"{role}r", None)
        ):
            raise RcertError(
                f"{type(module).__name__} has no {role}() method and no {role}r submodule; "
                f"pass e.g. {example} to wrap"
            )
        return
    if not callable(fn):
        raise RcertError(f"{role}= must be a function of (module, {arg}), e.g. {example}")
    try:
        inspect.signature(fn).bind(module, None)
    except TypeError:
        raise RcertError(
            f"{role}= must take two arguments (module, {arg}), e.g. {example}"
        ) from None
    except ValueError:
        return  # builtins without a signature: trust the caller


def wrap(
    module: nn.Module,
    *,
    sigma: str = "sigma",
    encode: Callable[[nn.Module, Tensor], Any] | None = None,
    decode: Callable[[nn.Module, Tensor], Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    data_range: tuple[float, float] | None = None,
) -> nn.Module:
    """Give any VAE the engine's ``encode(x) -> (mu, sigma)`` and ``decode(z)`` interface.

    Parameters
    ----------
    module
        The VAE; held as the submodule ``module`` of the result.
    sigma
        What the encoder's second output is: ``"sigma"`` (standard deviation), ``"var"``
        (``sigma = sqrt(var)``), ``"logvar"`` (``sigma = exp(logvar / 2)``) or ``"logsigma"``
        (``sigma = exp(logsigma)``); the engine always receives the standard deviation.
    encode
        Called as ``encode(module, x)``; must return ``(mu, second)`` or an object or mapping
        with ``embedding`` and ``log_covariance`` (pythae), or ``mu`` and ``log_var`` or
        ``logvar`` (these name a log-variance: they need ``sigma="logvar"``). Default:
        ``module.encode(x)``, else ``module.encoder(x)``.
    decode
        Called as ``decode(module, z)``; must return the decoder mean ``g(z)`` (probabilities,
        not logits, for a Bernoulli decoder) or an object with ``reconstruction``.
        Default: ``module.decode(z)``, else ``module.decoder(z)``.
    input_shape, data_range
        Attached as attributes when given; the engine validates inputs against them.

    Returns
    -------
    torch.nn.Module
        A :class:`Wrapped` module.
    """
    if not isinstance(module, nn.Module):
        raise RcertError(f"wrap needs a torch.nn.Module, got {type(module).__name__}")
    if sigma not in SIGMA_CONVERSIONS:
        raise RcertError(
            f"unknown sigma kind {sigma!r}; choose one of: {', '.join(SIGMA_CONVERSIONS)}"
        )
    _check_callable(encode, "encode", module)
    _check_callable(decode, "decode", module)
    wrapped = Wrapped(module, sigma, encode, decode)
    if input_shape is not None:
        wrapped.input_shape = int_tuple(input_shape, "input_shape", allow_empty=False)
    if data_range is not None:
        wrapped.data_range = parse_range(data_range)
    return wrapped
