"""Writing figures: deterministic PNG and SVG bytes, saved atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from rcert.errors import RcertError
from rcert.files import STDOUT, write_output

#: SVG metadata: no date (reproducible output) and none of matplotlib's URLs.
_SVG_METADATA = {"Date": None, "Creator": None, "Type": None, "Format": None}


#: The DOCTYPE matplotlib writes names a remote DTD; SVG needs none, so it is dropped.
_SVG_DOCTYPE = (b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
                b'  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n')


_FORMATS = {".png": "png", ".svg": "svg"}


def render(fig: Figure, fmt: str) -> bytes:
    """A figure as ``"png"`` (150 dpi) or ``"svg"`` bytes, deterministic (see :func:`save`)."""
    buffer = io.BytesIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rcert"}):
        if fmt == "png":
            fig.savefig(buffer, format="png", dpi=150)
        else:
            fig.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    data = buffer.getvalue()
    return data if fmt == "png" else data.replace(_SVG_DOCTYPE, b"", 1)


def figure_format(path: str | os.PathLike[str]) -> str:
    """The format a figure saved at ``path`` takes: ``"png"`` or ``"svg"`` by its suffix, and
    PNG for :data:`rcert.files.STDOUT`; an RcertError for another suffix."""
    if str(path) == STDOUT:
        return "png"
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RcertError(f"cannot save {path}: unknown suffix {path.suffix or '(none)'!r}; "
                         f"use .png or .svg")
    return fmt


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write a figure as PNG (150 dpi) or SVG, chosen by the suffix of ``path``
    (:func:`figure_format`); ``-`` writes PNG to stdout.

    A file is written atomically (:func:`rcert.files.write_output`). SVG keeps text as
    text (no embedded fonts), carries no date, and references nothing remote; the same
    figure gives the same bytes, in SVG and in PNG.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure of this module (any figure works).
    path : str or path-like
        Where to write; the suffix ``.png`` or ``.svg`` picks the format; ``-`` is stdout,
        refused while stdout is a terminal.

    Raises
    ------
    RcertError
        For another suffix, or when the file cannot be written.
    """
    write_output(path, render(fig, figure_format(path)))
