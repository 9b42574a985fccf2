"""The result document: one dict ``{schema_version, kind, config, model, summary, inputs}``
that every renderer takes, and its JSON-safe encoding of non-finite numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rcert.settings import CertifyConfig, default
from rcert.statistics.summary import summarize, summarize_attack, summarize_curve

SCHEMA_VERSION = 1
#: The report folder's ``results.json`` (:mod:`rcert.runs.report`): its kind and version.
REPORT_KIND = "report"
REPORT_SCHEMA_VERSION = 1


KINDS = ("margin", "attack", "curve")


def result(df: pd.DataFrame, *, kind: str = "margin", model: dict[str, Any] | None = None,
           config: dict[str, Any] | None = None,
           warnings: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Bundle a DataFrame into the result dict every renderer takes.

    ``kind`` says what made ``df``: ``"margin"`` (:func:`rcert.certify`), ``"attack"``
    (:func:`rcert.attack`) or ``"curve"`` (:func:`rcert.curve`); it picks the summary.
    ``warnings`` (default: ``df.attrs["warnings"]``) are the reliability warnings of the run
    (:mod:`rcert.checks`); the document has a ``warnings`` list only when there are some.
    """
    cfg = dict(df.attrs.get("config", {}))
    cfg.update(config or {})
    if kind == "margin":
        summary = summarize(df)
    elif kind == "attack":
        summary = summarize_attack(df)
    else:
        summary = summarize_curve(df, cfg.get("m", default(CertifyConfig, "m")))
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind, "config": cfg,
           "model": model or {}, "summary": summary}
    warned = df.attrs.get("warnings", []) if warnings is None else warnings
    if warned:
        doc["warnings"] = list(warned)
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


def inputs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-input rows read back from JSON as a DataFrame: non-finite strings become floats,
    and a column left as text (e.g. all ``"inf"``) becomes float64; int and bool columns
    keep their type. Raises ValueError for a column holding other text."""
    df = pd.DataFrame(restore(rows))
    for col in df.columns:
        kind = df[col].dtype
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
            try:
                df[col] = df[col].astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"column {col} holds values that are not numbers") from None
    return df
