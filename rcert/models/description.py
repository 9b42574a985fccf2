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

import os
from pathlib import Path
from typing import Any

from rcert.errors import RcertError, first_line
from rcert.models.architectures import build_model
from rcert.models.nets import VAE
from rcert.reading import parse_json, parse_toml, read_text

_HINT = "check the path given to --arch"
_FORMAT = "write the architecture as a JSON object or TOML table, e.g. arch = \"mlp\""


def _parse(path: Path, text: str) -> Any:
    """JSON or TOML by suffix; either, JSON first, for any other suffix."""
    where = f"architecture description {path}"
    suffix = path.suffix.lower()
    if suffix in (".json", ".toml"):
        parse = parse_json if suffix == ".json" else parse_toml
        return parse(text, where, _FORMAT)
    for parse in (parse_json, parse_toml):
        try:
            return parse(text, where)
        except RcertError:
            continue
    raise RcertError(f"{where} is not valid JSON or TOML; {_FORMAT}")


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
        Missing or not a regular file, over the document size limit
        (:class:`~rcert.reading.FileLimits`), not UTF-8, not JSON/TOML, not a table, or no
        ``arch``.
    """
    path = Path(path)
    table = _parse(path, read_text(path, "architecture description", _HINT))
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
    # build_model sizes the model on the meta device before allocating it, so a mistyped
    # width is refused without exhausting memory.
    return _build(path, read_description(path))

