"""rcert architecture descriptions: the hyper-parameters of an rcert VAE in a JSON or TOML file.

A description holds the keys of :meth:`rcert.models.nets.VAE.config` (the hyper-parameters
of ``rcert train``) at its top level, e.g. in TOML::

    arch = "mlp"
    input_shape = [1, 28, 28]
    latent_dim = 10
    hidden = [256, 256]

It names an architecture for the weights of a plain ``torch.save`` state dict (``--arch``).
Reading it never runs code: JSON and TOML hold data only.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import torch

from rcert.errors import RcertError, first_line
from rcert.models.nets import VAE, build_model

#: Descriptions are a few lines; anything larger is not one.
MAX_BYTES = 1 << 20
#: More parameters than this is a typo in a width, not a VAE rcert can certify.
MAX_PARAMETERS = 1 << 30


def _parse(path: Path, text: str) -> Any:
    """JSON or TOML by suffix; either, JSON first, for any other suffix."""
    parsers = {"JSON": json.loads, "TOML": tomllib.loads}
    names = {".json": ("JSON",), ".toml": ("TOML",)}.get(path.suffix.lower(), tuple(parsers))
    for name in names:
        try:
            return parsers[name](text)
        except (ValueError, RecursionError):
            continue
    raise RcertError(f"{path} is not valid {' or '.join(names)}; write the architecture as "
                     "a JSON object or TOML table, e.g. arch = \"mlp\"")


def read_description(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The hyper-parameters in the architecture description at ``path``.

    Parameters
    ----------
    path
        A JSON (``.json``) or TOML (``.toml``) file; other suffixes are tried as both.

    Returns
    -------
    dict
        The top-level table, with ``arch`` among its keys.

    Raises
    ------
    RcertError
        Not a readable file, over 1 MB, not UTF-8, not JSON/TOML, not a table, or no ``arch``.
    """
    path = Path(path)
    if not path.is_file():
        raise RcertError(f"architecture description {path} is not a readable file; check "
                         "the path given to --arch")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RcertError(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
    if len(raw) > MAX_BYTES:
        raise RcertError(f"{path} is over 1 MB, too large for an architecture description; "
                         "pass the small JSON/TOML file of hyper-parameters")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RcertError(f"{path} is not UTF-8 text; pass a JSON or TOML architecture "
                         "description") from None
    table = _parse(path, text)
    if not isinstance(table, dict):
        raise RcertError(f"{path} holds a JSON {type(table).__name__}, not an object; write "
                         "the hyper-parameters as {\"arch\": \"mlp\", ...}")
    if "arch" not in table:
        raise RcertError(f"{path} names no architecture; add arch = \"mlp\" or \"conv\"")
    return table


def _build(path: Path, hparams: dict[str, Any]) -> VAE:
    try:
        return build_model(**hparams)
    except RcertError as exc:
        raise RcertError(f"{path} describes an invalid model: {exc}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        raise RcertError(f"{path} describes an invalid model ({first_line(exc)}); check its "
                         "values against rcert train's options") from None


def build_from_description(path: str | os.PathLike[str]) -> VAE:
    """A freshly initialised rcert VAE built from the description at ``path``.

    Raises
    ------
    RcertError
        A bad file (see :func:`read_description`), unknown or missing hyper-parameters
        (listed), bad values, or a model too large to build.
    """
    path = Path(path)
    hparams = read_description(path)
    # Sized on the meta device first: a mistyped width must not exhaust memory.
    with torch.device("meta"):
        size = sum(p.numel() for p in _build(path, hparams).parameters())
    if size > MAX_PARAMETERS:
        raise RcertError(f"{path} describes a model with {size:.3g} parameters (more than "
                         f"{MAX_PARAMETERS:.3g}); check its widths and latent_dim")
    return _build(path, hparams)

