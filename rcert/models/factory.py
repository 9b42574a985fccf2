"""The user's own model factory, ``module:function`` (``--factory``): explicit, opt-in code.

The weights of a ``torch.save`` state dict say nothing about the architecture; a factory is
the user's own function that builds it, e.g. ``mypkg.models:build_vae``. It is imported from
the current working directory (the project folder) or the installed packages, never from
the model file, and is called with the keyword arguments the user gave (``--factory-arg``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from torch import nn

from rcert.errors import RcertError, first_line
from rcert.source import parse_factory


def failure(exc: BaseException) -> str:
    """How the user's code failed, for a one-line error: ``Type: first line of the message``,
    or the type alone when the message is empty."""
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if str(exc) and line else type(exc).__name__


def type_phrase(obj: Any) -> str:
    """``obj``'s type name with its indefinite article, for a message: "an int", "a Linear"."""
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _import(name: str) -> ModuleType:
    """Import ``name`` with the working directory importable for the import only."""
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    # Files written since the last import (a project just created) are otherwise unseen.
    importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            top = name.split(".")[0]
            raise RcertError(
                f"cannot import {name} for --factory: no module named {exc.name!r}; run rcert "
                f"from the project folder that contains {top}, or install it "
                "(pip install -e .)") from None
        raise RcertError(f"importing {name} for --factory failed: {failure(exc)}; install "
                         "what it needs") from None
    # The user's module may raise anything while importing; report it on one line.
    except Exception as exc:
        raise RcertError(f"importing {name} for --factory failed: {failure(exc)}; fix the "
                         "module") from None
    finally:
        sys.path[:] = saved


def _call_text(spec: str, kwargs: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{spec}({args[:200]})"


def call_factory(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """The module built by the user's factory ``spec`` (``module:function``) from ``kwargs``.

    Parameters
    ----------
    spec
        ``"package.module:function"``; the module is imported with the current working
        directory on ``sys.path`` (restored afterwards).
    kwargs
        Keyword arguments for the function.

    Returns
    -------
    torch.nn.Module
        What the function returned (not moved, not put in eval mode).

    Raises
    ------
    RcertError
        A malformed spec, the module not importable, the function missing or not callable,
        the call raising, or a result that is not a ``torch.nn.Module``.
    """
    name, attr = parse_factory(spec)
    module = _import(name)
    function = getattr(module, attr, None)
    if function is None:
        raise RcertError(f"{name} has no attribute {attr!r}; check the name after ':' in "
                         f"--factory {spec}")
    if not callable(function):
        raise RcertError(f"{spec} is {type_phrase(function)}, not a function; point "
                         "--factory at the function that builds the model")
    try:
        model = function(**kwargs)
    # The factory is the user's code: any failure is reported, on one line.
    except Exception as exc:
        raise RcertError(f"factory {_call_text(spec, kwargs)} failed: {failure(exc)}; fix "
                         "the factory or its arguments (--factory-arg KEY=VALUE)") from None
    if not isinstance(model, nn.Module):
        raise RcertError(f"factory {spec} returned {type_phrase(model)}, not a "
                         "torch.nn.Module; return the model itself")
    return model
