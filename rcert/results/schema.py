"""The result document: one dict ``{schema_version, kind, config, model, summary, inputs}``
that every renderer takes, and its JSON-safe encoding of non-finite numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rcert.errors import RcertError, with_hint
from rcert.settings import CertifyConfig, default
from rcert.statistics.ddcurve import parse_limits
from rcert.statistics.latent_summary import summarize_latent, summarize_latent_margin
from rcert.statistics.summary import (
    summarize,
    summarize_attack,
    summarize_curve,
    summarize_posteriors,
    summarize_targeted,
)

SCHEMA_VERSION = 1
#: The report folder's ``results.json`` (:mod:`rcert.runs.report`): its kind and version.
REPORT_KIND = "report"
REPORT_SCHEMA_VERSION = 1


KINDS = ("margin", "attack", "curve", "targeted", "posteriors", "downstream", "latent",
         "latent-margin")


def result(df: pd.DataFrame, *, kind: str = "margin", model: dict[str, Any] | None = None,
           config: dict[str, Any] | None = None,
           warnings: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Bundle a DataFrame into the result dict every renderer takes.

    ``kind`` says what made ``df``: ``"margin"`` (:func:`rcert.certify`), ``"attack"``
    (:func:`rcert.attack`), ``"curve"`` (:func:`rcert.curve`) or ``"targeted"``
    (:func:`rcert.targeted_attack`); it picks the summary.
    ``warnings`` (default: ``df.attrs["warnings"]``) are the reliability warnings of the run
    (:mod:`rcert.checks`); the document has a ``warnings`` list only when there are some.
    """
    cfg = dict(df.attrs.get("config", {}))
    cfg.update(config or {})
    if kind == "margin":
        summary = summarize(df)
    elif kind == "attack":
        summary = summarize_attack(df)
    elif kind == "targeted":
        summary = summarize_targeted(df)
    elif kind == "posteriors":
        summary = summarize_posteriors(df)
    elif kind == "latent":
        summary = df.attrs.get("summary") or summarize_latent(
            df, parse_limits(cfg.get("fidelity", {}).get("limits", ())))[0]
    elif kind == "latent-margin":
        summary = summarize_latent_margin(df)
    elif kind == "downstream":
        summary = {"n_attacked": int(df["n_attacked"].max()),
                   "classifiers": df.set_index("classifier").drop(columns="n_attacked")
                   .to_dict(orient="index")}
    else:
        summary = summarize_curve(df, cfg.get("m", default(CertifyConfig, "m")))
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind, "config": cfg,
           "model": model or {}, "summary": summary}
    warned = df.attrs.get("warnings", []) if warnings is None else warnings
    if warned:
        doc["warnings"] = list(warned)
    if df.attrs.get("sections"):
        doc["sections"] = df.attrs["sections"]
    doc["inputs"] = df.to_dict(orient="records")
    return doc


def plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to "inf"/"-inf"/"nan"."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


#: How :func:`plain` spells non-finite numbers.
NONFINITE = ("inf", "-inf", "nan")


def restore(value: Any) -> Any:
    """The inverse of :func:`plain` for numbers: ``"inf"``, ``"-inf"``, ``"nan"`` to floats,
    throughout nested dicts and lists."""
    if isinstance(value, dict):
        return {k: restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore(v) for v in value]
    return float(value) if isinstance(value, str) and value in NONFINITE else value


def _as_floats(values: pd.Series, col: str) -> pd.Series:
    """An object column (numbers mixed with None or bools, say) as float64; ValueError when a
    value is no number. Text is refused even when it reads as one (``"0.5"``): rcert writes
    numbers as JSON numbers, and only :data:`NONFINITE` as text."""
    if not any(isinstance(v, str) for v in values):
        try:
            return values.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            pass
    raise ValueError(f"column {col} holds values that are not numbers")


#: The per-row columns that hold words, not numbers: a targeted attack's kind and its
#: optimiser's status (:mod:`rcert.attacks.targeted`), a downstream table's classifier.
TEXT_COLUMNS = ("kind", "status", "classifier")


def inputs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-input rows read back from JSON as a DataFrame: non-finite strings become floats,
    and a column of mixed numbers becomes float64; int and bool columns keep their type, and
    :data:`TEXT_COLUMNS` their words. Raises ValueError for a column holding anything else
    (text elsewhere, lists, objects)."""
    df = pd.DataFrame(restore(rows))
    for col in df.columns:
        kind = df[col].dtype
        if col in TEXT_COLUMNS and df[col].map(lambda v: isinstance(v, str)).all():
            continue
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
            df[col] = _as_floats(df[col], col)
    return df


# --- Reading documents back -------------------------------------------------------------------
# A result or report read from a file is checked here, field by field, before anything uses it:
# a damaged document is one line naming the file and the field, never a traceback later on.



def _place(where: str, keys: tuple[str, ...]) -> str:
    """``where`` and the dotted path of ``keys`` inside it, as a message names a field."""
    return f"{where}: {'.'.join(keys)}" if keys else where


def _shown(value: Any) -> str:
    """``value`` for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mistyped(where: str, keys: tuple[str, ...], want: str, value: Any,
             hint: str = "") -> RcertError:
    """The error for field ``keys`` of document ``where`` holding ``value`` instead of ``want``
    (``"a number"``, ``"an object"``, ...)."""
    return RcertError(f"{_place(where, keys)} must be {want}, got {_shown(value)}{with_hint(hint)}")


def lookup(doc: Any, keys: tuple[str, ...], where: str, hint: str = "") -> Any:
    """The value at ``keys`` in the nested JSON objects of ``doc``; an RcertError naming the
    first step that is missing or not an object."""
    value = doc
    for i, key in enumerate(keys):
        if not isinstance(value, dict):
            raise mistyped(where, keys[:i], "an object", value, hint)
        if key not in value:
            raise RcertError(f"{_place(where, keys[:i + 1])} is missing{with_hint(hint)}")
        value = value[key]
    return value


def number(value: Any, where: str, keys: tuple[str, ...], hint: str = "") -> float:
    """``value`` as a float: a JSON number, or one of :data:`NONFINITE` as :func:`plain` writes
    non-finite numbers; else an RcertError naming field ``keys`` of ``where``."""
    if isinstance(value, str) and value in NONFINITE:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise mistyped(where, keys, "a number", value, hint)
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        raise mistyped(where, keys, "a number", value, hint) from None


def check_result(doc: Any, where: str, hint: str = "",
                 at: tuple[str, ...] = ()) -> dict[str, Any]:
    """``doc``, read back from JSON, if it is a result of this schema version (:func:`result`),
    with ``inputs`` and ``summary`` restored (:func:`restore`); else a one-line RcertError.

    ``where`` names the document (``"r.json"``), ``at`` the result's place in it (``("models",
    "vae")`` in a report), ``hint`` says how to get a good one. The fields rcert reads back are
    type-checked: ``inputs`` a list of objects, ``config``, ``model`` and ``summary`` objects,
    ``config.m`` a number in (0, 1).
    """
    place = _place(where, at)
    if not isinstance(doc, dict) or not {"schema_version", "kind", "inputs"} <= doc.keys():
        raise RcertError(f"{place} is not an rcert result (a JSON object with schema_version, "
                         f"kind and inputs){with_hint(hint)}")
    version = doc["schema_version"]
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise RcertError(f"{place} has result schema version {_shown(version)}, but this rcert "
                         f"reads version {SCHEMA_VERSION}; use the rcert that wrote it")
    if doc["kind"] not in KINDS:
        raise RcertError(f"{place} has unknown kind {_shown(doc['kind'])}; expected one of "
                         f"{', '.join(KINDS)}")
    rows = doc["inputs"]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise mistyped(where, (*at, "inputs"), "a list of objects, one per input", rows, hint)
    for key in ("config", "model", "summary"):
        if not isinstance(doc.get(key, {}), dict):
            raise mistyped(where, (*at, key), "an object", doc[key], hint)
    if "m" in doc.get("config", {}):
        m = number(doc["config"]["m"], where, (*at, "config", "m"), hint)
        if not 0 < m < 1:
            raise mistyped(where, (*at, "config", "m"), "a number in (0, 1)", m, hint)
    return {**doc, "inputs": restore(rows), "summary": restore(doc.get("summary", {}))}


def check_report(doc: Any, where: str, hint: str = "") -> dict[str, Any]:
    """``doc``, read back from JSON, if it is a report's ``results.json`` of this schema
    version (:mod:`rcert.runs.report`) whose ``models`` is a non-empty object of results,
    each checked by :func:`check_result` (and returned restored); else a one-line RcertError
    naming ``where`` and the field, ending with ``hint``."""
    if not isinstance(doc, dict):
        raise RcertError(f"{where} is not an rcert report (a JSON object with kind "
                         f"{REPORT_KIND!r}), it holds {_shown(doc)}{with_hint(hint)}")
    if doc.get("kind") != REPORT_KIND:
        raise RcertError(f"{where} has kind {_shown(doc.get('kind'))}, not {REPORT_KIND!r}: "
                         f"it is not a report's results.json{with_hint(hint)}")
    version = doc.get("schema_version")
    if isinstance(version, bool) or version != REPORT_SCHEMA_VERSION:
        raise RcertError(f"{where} has report schema version {_shown(version)}, but this rcert "
                         f"reads version {REPORT_SCHEMA_VERSION}{with_hint(hint)}")
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise RcertError(f"{where} is a report without models (an object of results by model "
                         f"name){with_hint(hint)}")
    return {**doc, "models": {name: check_result(res, where, hint, ("models", name))
                              for name, res in models.items()}}
