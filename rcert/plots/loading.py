"""Reading result documents for plotting, and turning them into drawable models."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rcert.errors import RcertError
from rcert.plots.style import COLORS, Model
from rcert.reading import read_json
from rcert.results import schema
from rcert.results.schema import REPORT_KIND

Results = dict[str, Any] | Sequence[dict[str, Any]]

#: The command that makes each kind of result.
_MAKE = {"margin": "rcert margin --format json", "attack": "rcert attack --format json",
         "curve": "rcert curve --format json",
         "targeted": "rcert attack --kind kl --format json",
         "posteriors": "rcert measure --format json",
         "latent": "rcert latent-attack --format json"}


_MAKE_ONE = "write one with rcert margin, attack or curve --format json"


def _is_report(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == REPORT_KIND


def load_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a result document written by ``rcert margin|attack|curve --format json``.

    A report's ``results.json`` holds several results: read it with :func:`load_results`.

    Parameters
    ----------
    path : str or path-like
        The JSON file.

    Returns
    -------
    dict
        The result, with the strings ``"inf"``, ``"-inf"`` and ``"nan"`` in ``inputs`` and
        ``summary`` turned back into floats.

    Raises
    ------
    RcertError
        If the file is missing or unreadable, is not strict JSON, is a report, or is not an
        rcert result of a known schema version and kind.
    """
    path = Path(path)
    doc = read_json(path, "result", _MAKE_ONE)
    if _is_report(doc):
        raise RcertError(f"{path} is a report (rcert report), which holds one result per "
                         f"model; read it with rcert.plots.load_results")
    return schema.check_result(doc, str(path), _MAKE_ONE)


def load_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the results in a result document or in a report's ``results.json``.

    Parameters
    ----------
    path : str or path-like
        A JSON file of ``rcert margin|attack|curve --format json``, or the ``results.json``
        of a report folder (``rcert report`` or ``rcert check``).

    Returns
    -------
    list of dict
        ``[result]`` for a single result (as :func:`load_result` reads it); for a report,
        one result per model in the report's order, each with ``"name"`` set to its model
        key, which the plots use as the model's name (see :func:`label`).

    Raises
    ------
    RcertError
        As :func:`load_result`, and for a report of an unknown schema version or whose
        ``models`` is not a non-empty object of results.
    """
    path = Path(path)
    make = f"{_MAKE_ONE}, or use a report's results.json"
    doc = read_json(path, "result", make)
    if not _is_report(doc):
        return [schema.check_result(doc, str(path), make)]
    models = schema.check_report(doc, str(path), "write it again with rcert report")["models"]
    return [{**res, "name": name} for name, res in models.items()]


def frame(result: dict[str, Any]) -> pd.DataFrame:
    """The inputs of a result as a DataFrame, one row per input (per input and radius or budget).

    Parameters
    ----------
    result : dict
        A result of :func:`rcert.results.schema.result` or :func:`load_result`.

    Returns
    -------
    pandas.DataFrame
        Float columns, with the strings ``"inf"``, ``"-inf"`` and ``"nan"`` turned into
        floats; integer and boolean columns (``index``, ``k``, ``abstain``, ...) keep their
        type.

    Raises
    ------
    RcertError
        If ``inputs`` is not a list of rows or a column holds something that is not a number.
    """
    inputs = result.get("inputs") if isinstance(result, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(row, dict) for row in inputs):
        raise RcertError("the result has no inputs list; load it with rcert.plots.load_result "
                         "or make it with rcert.results.schema.result(df, kind=...)")
    try:
        return schema.inputs_frame(inputs)
    except ValueError as exc:
        raise RcertError(f"{exc}; rewrite the result with rcert") from None


def label(result: dict[str, Any]) -> str:
    """A short model name: the ``"name"`` a report gave the result (see :func:`load_results`),
    else the checkpoint's file stem (``models/vae-digits.safetensors`` gives ``vae-digits``), else
    ``"model"``."""
    name = result.get("name") if isinstance(result, dict) else None
    if isinstance(name, str) and name:
        return name
    model = result.get("model") if isinstance(result, dict) else None
    path = model.get("path") if isinstance(model, dict) else None
    if not isinstance(path, str) or not path:
        return "model"
    return Path(path).stem or "model"


#: Columns every result of a kind has, which any plot of that kind may read (the certified
#: fraction never counts an abstention as certified).
_ALWAYS = {"margin": ("abstain",)}


#: The largest finite magnitude a figure places: beyond about 1e154, matplotlib's and
#: seaborn's own arithmetic (variances, tick spacing) overflows.
_LARGEST = 1e100


def _check_drawable(df: pd.DataFrame, name: str) -> None:
    """Refuse a finite number too large to draw in any numeric column of ``df``, which would
    otherwise fail deep inside matplotlib."""
    numbers = df.select_dtypes("number")
    values = numbers.to_numpy(np.float64)
    too_large = np.isfinite(values) & (np.abs(values) > _LARGEST)
    if too_large.any():
        row, col = np.argwhere(too_large)[0]
        raise RcertError(f"{name}: column {numbers.columns[col]} holds "
                         f"{values[row, col]:.3g}, too large to draw (figures place finite "
                         f"values within ±{_LARGEST:g}); check that the result is not damaged")


def _a(word: str) -> str:
    """``word`` with its indefinite article: "a margin", "an attack"."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def models_to_draw(results: Results, plot: str, kind: str, needed: Sequence[str],
                   hint: str | None = None) -> list[Model]:
    """Check the results for one plot and give them names, frames and colours."""
    if isinstance(results, dict):
        results = [results]
    if not isinstance(results, Sequence) or isinstance(results, str) or not results:
        raise RcertError(f"{plot} takes a result dict or a non-empty list of them; read one "
                         f"with rcert.plots.loading.load_result(path)")
    for res in results:
        if not isinstance(res, dict) or "kind" not in res:
            raise RcertError(f"{plot} takes result dicts with a kind; make one with "
                             f"rcert.results.schema.result(df, kind=...) or rcert.plots.load_result"
                             )
    names = [label(res) for res in results]
    names = [f"{name} ({names[:i].count(name) + 1})" if names.count(name) > 1 else name
             for i, name in enumerate(names)]
    models = []
    for i, (res, name) in enumerate(zip(results, names, strict=True)):
        if res["kind"] != kind:
            raise RcertError(f"{plot} needs {_a(kind)} result, but {name} is "
                             f"{_a(str(res['kind']))} result; make one with {_MAKE[kind]}")
        df = frame(res)
        if df.empty:
            raise RcertError(f"{name} has no inputs; run {_MAKE[kind]} on at least one input")
        _check_drawable(df, name)
        missing = [col for col in (*needed, *_ALWAYS.get(kind, ())) if col not in df.columns]
        if missing:
            raise RcertError(f"{name} lacks {', '.join(missing)}, which {plot} needs; "
                             f"{hint or 'make it with ' + _MAKE[kind]}")
        models.append(Model(name, df, res.get("config") or {}, COLORS[i % len(COLORS)]))
    return models
