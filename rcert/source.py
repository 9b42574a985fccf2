"""Where a model comes from and how to read it: :class:`ModelSource`, the loading settings.

A model file is one of rcert's own checkpoints (safetensors, or the legacy ``.rcert``
frame), a ``torch.save`` file (a state dict, possibly nested in a training checkpoint or a
Lightning ``.ckpt``), or a library's folder or file (pythae, PyTorch-VAE, beta-TCVAE). The
weights of a ``torch.save`` file are read with ``torch.load(weights_only=True)`` only; the
architecture comes from an rcert architecture description (``arch``), the user's own
factory (``factory``, explicit and opt-in) or a library loader (``library``).

``ModelSource`` is the one source of these settings: the CLI options (``--library``,
``--arch``, ``--factory``, ...), the ``[[model]]`` tables of ``rcert check`` and the
``model`` block of a result derive from its fields. Like :mod:`rcert.settings`, this module
imports nothing heavy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rcert.errors import RcertError
from rcert.settings import field_help, set_field

#: Library conventions rcert can load without the user's code (:mod:`rcert.models.libraries`).
LIBRARIES = ("pythae", "pytorch-vae", "beta-tcvae")
#: What the encoder's second output is; rcert converts it to the standard deviation.
SIGMA_KINDS = ("sigma", "var", "logvar", "logsigma")




def parse_range(value: Any, name: str = "data_range") -> tuple[float, float] | None:
    """``(low, high)`` with finite ``low < high`` from a pair or a ``"low,high"`` string: the
    one rule for a model's data range (:class:`ModelSource`, :func:`rcert.wrap`)."""
    if value is None:
        return None
    pair = value
    if isinstance(value, str):
        try:
            pair = [float(v) for v in value.split(",")]
        except ValueError:
            pair = None
    ok = (isinstance(pair, Sequence) and len(pair) == 2
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair)
          and all(math.isfinite(v) for v in pair) and pair[0] < pair[1])
    if not ok:
        raise RcertError(f"{name} must be low,high with finite low < high, e.g. 0,1 or -1,1; "
                         f"got {value!r}")
    return float(pair[0]), float(pair[1])


def parse_shape(value: Any, name: str = "input_shape") -> tuple[int, ...] | None:
    """A shape from a list of positive ints or a ``"1,28,28"`` string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.split(",")]
        except ValueError:
            value = None
    ok = (isinstance(value, Sequence) and len(value) > 0
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                  for v in value))
    if not ok:
        raise RcertError(f"{name} must be positive integers such as 1,28,28")
    return tuple(int(v) for v in value)


def parse_factory(spec: Any) -> tuple[str, str]:
    """``(module, function)`` of a factory ``"package.module:function"``, each part a Python
    identifier: the one rule for ``--factory`` (:class:`ModelSource`,
    :func:`rcert.models.factory.call_factory`)."""
    module, sep, function = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not function.isidentifier() or not all(
            part.isidentifier() for part in module.split(".")):
        raise RcertError(f"factory must be module:function, e.g. mypkg.models:build_vae, got "
                         f"{spec!r}")
    return module, function


def parse_factory_args(value: Any) -> dict[str, Any]:
    """Keyword arguments for a factory: a mapping, or ``KEY=VALUE`` strings whose values are
    read as JSON when they parse (``latent_dim=10``, ``hidden=[32,64]``), else as text."""
    import json

    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = []
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep or not key.isidentifier():
                raise RcertError(f"factory arguments are KEY=VALUE, e.g. latent_dim=10; "
                                 f"got {item!r}")
            try:
                items.append((key, json.loads(text)))
            except ValueError:  # not JSON (or an integer too long to convert): the text
                items.append((key, text))
            except RecursionError:
                raise RcertError(f"factory argument {key} nests too deep to read; pass a "
                                 "flatter value") from None
    else:
        raise RcertError(f"factory_args must be a table of keyword arguments, got {value!r}")
    for key, _ in items:
        if not isinstance(key, str) or not key.isidentifier():
            raise RcertError(f"factory argument names must be identifiers, got {key!r}")
    return dict(items)


@dataclass(frozen=True)
class ModelSource:
    """A model file and how to read it (see the module docstring).

    Only ``path`` is required: rcert's own checkpoints, pythae folders and beta-TCVAE
    checkpoints describe themselves. A plain ``torch.save`` state dict needs ``arch`` or
    ``factory``; ``sigma``, ``data_range`` and ``input_shape`` override what a loader
    infers (a library sets them from the model, so a user rarely gives them).
    """

    path: str = field(metadata=field_help("Model file or folder: an rcert checkpoint, a torch.save "
                                     "file, a Lightning .ckpt, a pythae folder."))
    library: str | None = field(default=None, metadata=field_help(
        "Read the model with this library's conventions [default: detected from the file].",
        choices=LIBRARIES))
    arch: str | None = field(default=None, metadata=field_help(
        "rcert architecture description (JSON or TOML) for a plain state dict."))
    factory: str | None = field(default=None, metadata=field_help(
        "Your own Python function module:function that builds the module (runs your code, "
        "never code from the file)."))
    factory_args: dict[str, Any] = field(default_factory=dict, metadata=field_help(
        "Keyword argument KEY=VALUE for the factory (repeatable)."))
    sigma: str | None = field(default=None, metadata=field_help(
        "What the encoder's second output is: sigma, var, logvar or logsigma "
        "[default: the library's convention].", choices=SIGMA_KINDS))
    data_range: tuple[float, float] | None = field(default=None, metadata=field_help(
        "Valid input range low,high, e.g. 0,1 or -1,1 [default: the library's]."))
    input_shape: tuple[int, ...] | None = field(default=None, metadata=field_help(
        "Shape of one input, e.g. 1,28,28 [default: the model's]."))
    trust_pickles: bool = field(default=False, metadata=field_help(
        "Unpickle a pythae folder's encoder.pkl/decoder.pkl (this runs code from the folder: "
        "only for folders you trust)."))

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise RcertError(f"model path must be a non-empty string, got {self.path!r}")
        if self.library is not None and self.library not in LIBRARIES:
            raise RcertError(f"unknown library {self.library!r}; choose one of: "
                             f"{', '.join(LIBRARIES)}")
        if self.sigma is not None and self.sigma not in SIGMA_KINDS:
            raise RcertError(f"unknown sigma convention {self.sigma!r}; choose one of: "
                             f"{', '.join(SIGMA_KINDS)}")
        for name in ("arch", "factory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise RcertError(f"{name} must be a non-empty string, got {value!r}")
        if self.factory is not None:
            parse_factory(self.factory)
        chosen = [n for n in ("library", "arch", "factory") if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise RcertError(f"give at most one of library, arch and factory, got "
                             f"{' and '.join(chosen)}")
        set_field(self, "factory_args", parse_factory_args(self.factory_args))
        if self.factory_args and self.factory is None:
            raise RcertError("factory arguments were given without a factory; pass "
                             "--factory module:function")
        set_field(self, "data_range", parse_range(self.data_range))
        set_field(self, "input_shape", parse_shape(self.input_shape))
        if not isinstance(self.trust_pickles, bool):
            raise RcertError(f"trust_pickles must be true or false, got {self.trust_pickles!r}")
