"""Dataset-wide figures (SPEC section 7) and the renderings of a result: table, CSV, JSON.

A *result* is a plain dict ``{"config": ..., "model": ..., "summary": ..., "inputs": [...]}``
made by :func:`result`; every renderer takes it, so the CLI, files and later reports print
the same numbers.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd

#: Margins in input space, where a certified fraction at radius ``e`` makes sense.
INPUT_MARGINS = ("bound", "bound_certified", "bound_spectral", "bound_whitened")
#: Every margin column, input space then latent space.
MARGINS = (*INPUT_MARGINS, "latent_margin")
#: Per-input quantities whose distributions explain the margins [C Fig 9].
DIAGNOSTICS = ("sigma_min", "sigma_mean", "jacobian_fro", "jacobian_spec", "jacobian_whitened",
               "p_hat", "p_lower", "r_min", "r_min_upper")
#: Columns shown by the terminal table; CSV and JSON carry every column.
TABLE_COLUMNS = ("index", "sigma_min", "jacobian_fro", "p_hat", "p_lower", "r_min", "bound",
                 "bound_certified", "bound_whitened", "latent_margin", "abstain",
                 "margin_empirical", "violation", "tightness")

SCHEMA_VERSION = 1


def _quantiles(v: np.ndarray, probs: tuple[float, ...]) -> list[float]:
    """Linear-interpolation quantiles that stay right when ``v`` holds ``inf``.

    ``np.quantile`` computes ``inf - inf`` and ``0 * inf`` there and returns NaN; between
    two equal order statistics, or at an exact rank, no interpolation is needed.
    """
    v = np.sort(v)
    out = []
    for q in probs:
        pos = q * (len(v) - 1)
        lo, hi = int(np.floor(pos)), int(np.ceil(pos))
        frac = pos - lo
        if frac == 0 or v[lo] == v[hi]:
            out.append(float(v[lo]))
        else:
            out.append(float(v[lo] + frac * (v[hi] - v[lo])))
    return out


def describe(values: pd.Series | np.ndarray) -> dict[str, float]:
    """Mean, spread and quantiles of one column, over its defined (non-NaN) entries.

    ``inf`` entries count (a mean may be inf); ``count`` says how many entries were used,
    and every figure is NaN when none was.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"count": 0, **dict.fromkeys(
            ("mean", "std", "min", "q05", "q25", "median", "q75", "q95", "max"), math.nan)}
    q = _quantiles(v, (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0))
    std = float(np.std(v)) if np.isfinite(v).all() else math.nan
    return {"count": int(v.size), "mean": float(np.mean(v)), "std": std, "min": q[0],
            "q05": q[1], "q25": q[2], "median": q[3], "q75": q[4], "q95": q[5], "max": q[6]}


def certified_fraction(df: pd.DataFrame, radii: np.ndarray | None = None,
                       n_radii: int = 41,
                       columns: tuple[str, ...] = ("bound_certified", "bound_spectral",
                                                   "bound_whitened")) -> pd.DataFrame:
    """Share of inputs whose certified margin is at least ``e``, for each radius ``e``.

    One column per certified input-space margin in ``columns`` (default all three);
    ``radii`` defaults to ``n_radii`` points from 0 to the largest finite
    ``bound_whitened`` (SPEC section 7).
    """
    if radii is None:
        finite = df["bound_whitened"].to_numpy()
        finite = finite[np.isfinite(finite)]
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        radii = np.linspace(0.0, top, n_radii)
    radii = np.asarray(radii, dtype=np.float64)
    table = {"radius": radii}
    for col in columns:
        values = df[col].to_numpy()[None, :]
        table[col] = np.mean((values >= radii[:, None]) & (values > 0), axis=1)
    return pd.DataFrame(table)


def summarize(df: pd.DataFrame, radii: np.ndarray | None = None) -> dict[str, Any]:
    """Dataset-wide figures that need no attack (SPEC section 7).

    Parameters
    ----------
    df
        The DataFrame of :func:`rcert.certify`.
    radii
        Radii for the certified-fraction curve (default: see :func:`certified_fraction`).

    Returns
    -------
    dict
        ``n_inputs``, ``n_certified`` (``p_lower > m``), ``n_abstained``,
        ``certified_share``; ``mean_margin`` (the dataset-wide margin [C Sec 3.2.2], the
        mean of each margin column); ``margins`` and ``diagnostics`` (mean, std, min,
        q05, q25, median, q75, q95, max per column); ``certified_fraction`` (the curve,
        as lists keyed by column).
    """
    n = len(df)
    abstained = int(df["abstain"].sum())
    curve = certified_fraction(df, radii)
    summary = {
        "n_inputs": n,
        "n_certified": n - abstained,
        "n_abstained": abstained,
        "certified_share": (n - abstained) / n if n else math.nan,
        "mean_margin": {col: float(df[col].mean()) for col in MARGINS},
        "margins": {col: describe(df[col]) for col in MARGINS},
        "diagnostics": {col: describe(df[col]) for col in DIAGNOSTICS},
        "certified_fraction": {col: curve[col].tolist() for col in curve.columns},
    }
    if "margin_empirical" in df.columns:
        summary["empirical"] = empirical_summary(df)
    return summary


def fit_line(bound: np.ndarray, found: np.ndarray) -> dict[str, float]:
    """Pearson correlation, slope and intercept of ``found`` against ``bound`` [C Fig 6].

    Over inputs where both are finite and the bound is positive (abstentions and
    unbounded margins say nothing about the fit); NaN with fewer than 3 such inputs.
    """
    keep = np.isfinite(bound) & np.isfinite(found) & (bound > 0)
    out = {"n": int(keep.sum()), "correlation": math.nan, "slope": math.nan,
           "intercept": math.nan}
    if keep.sum() >= 3 and np.ptp(bound[keep]) > 0:
        slope, intercept = np.polyfit(bound[keep], found[keep], 1)
        out.update(correlation=float(np.corrcoef(bound[keep], found[keep])[0, 1]),
                   slope=float(slope), intercept=float(intercept))
    return out


def empirical_summary(df: pd.DataFrame) -> dict[str, Any]:
    """The attack's side of the report (SPEC section 7): violations, fit, tightness.

    ``fit`` regresses ``margin_empirical`` on the published ``bound`` (the paper's
    Fig 6) and on ``bound_certified``.
    """
    found = df["margin_empirical"].to_numpy(dtype=np.float64)
    return {
        "n_violations": int(df["violation"].sum()),
        "violations": df.loc[df["violation"], "index"].astype(int).tolist(),
        "n_unbroken": int(np.isinf(found).sum()),
        "margin_empirical": describe(found),
        "tightness": describe(df["tightness"].to_numpy(dtype=np.float64)),
        "fit": {col: fit_line(df[col].to_numpy(dtype=np.float64), found)
                for col in ("bound", "bound_certified")},
    }


def summarize_attack(df: pd.DataFrame) -> dict[str, Any]:
    """Per budget ``L``: damage and log-likelihood degradation of the attack and of noise.

    ``attack_beats_noise`` is the share of inputs whose attack damage is at least the
    damage of Gaussian noise of the same norm [C Fig 4, Fig 9b].
    """
    per_budget = []
    for budget, group in df.groupby("L", sort=True):
        per_budget.append({
            "L": float(budget), "n_inputs": len(group),
            **{col: describe(group[col]) for col in (
                "damage", "loglik_degradation", "delta_norm", "noise_damage",
                "noise_loglik_degradation")},
            "attack_beats_noise": float(np.mean(group["damage"] >= group["noise_damage"])),
        })
    return {"n_inputs": int(df["index"].nunique()), "budgets": per_budget}


def summarize_curve(df: pd.DataFrame, m: float) -> dict[str, Any]:
    """Mean ``p(rho)`` per radius, and each input's crossing: its first radius with ``p <= m``."""
    mean_p = df.groupby("rho", sort=True)["p_hat"].mean()
    crossing = (df[~df["robust"]].groupby("index")["rho"].min()
                .reindex(df["index"].unique(), fill_value=math.inf))
    return {"n_inputs": int(df["index"].nunique()), "rho": mean_p.index.tolist(),
            "mean_p_hat": mean_p.tolist(), "crossing": describe(crossing.to_numpy())}


KINDS = ("margin", "attack", "curve")


def result(df: pd.DataFrame, *, kind: str = "margin", model: dict[str, Any] | None = None,
           config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bundle a DataFrame into the result dict every renderer takes.

    ``kind`` says what made ``df``: ``"margin"`` (:func:`rcert.certify`), ``"attack"``
    (:func:`rcert.attack`) or ``"curve"`` (:func:`rcert.curve`); it picks the summary.
    """
    cfg = dict(df.attrs.get("config", {}))
    cfg.update(config or {})
    if kind == "margin":
        summary = summarize(df)
    elif kind == "attack":
        summary = summarize_attack(df)
    else:
        summary = summarize_curve(df, cfg.get("m", 0.5))
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "config": cfg,
            "model": model or {}, "summary": summary,
            "inputs": df.to_dict(orient="records")}


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


def to_json(res: dict[str, Any]) -> str:
    """The result as strict JSON (non-finite numbers spelled ``"inf"``, ``"-inf"``, ``"nan"``)."""
    return json.dumps(plain(res), indent=2, allow_nan=False) + "\n"


def to_csv(res: dict[str, Any]) -> str:
    """One row per input, every column, full precision."""
    buffer = io.StringIO()
    pd.DataFrame(res["inputs"]).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


#: Columns shown by the terminal table, per kind; CSV and JSON carry every column.
SHOWN = {
    "margin": TABLE_COLUMNS,
    "attack": ("index", "L", "damage", "noise_damage", "loglik_degradation",
               "noise_loglik_degradation", "delta_norm"),
    "curve": ("index", "rho", "delta_norm", "p_hat", "p_lower", "p_upper", "robust"),
}


def to_table(res: dict[str, Any]) -> str:
    """A per-input table and a summary block for people at a terminal."""
    df = pd.DataFrame(res["inputs"])
    kind = res.get("kind", "margin")
    shown = df[[c for c in SHOWN[kind] if c in df.columns]]
    lines = [shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"), ""]
    lines += _heading(res)
    lines += {"margin": _margin_lines, "attack": _attack_lines,
              "curve": _curve_lines}[kind](res["summary"])
    return "\n".join(lines) + "\n"


def _heading(res: dict[str, Any]) -> list[str]:
    cfg, model = res["config"], res.get("model", {})
    head = f"model {model.get('path', '?')}" + (f" on {cfg['data']}" if "data" in cfg else "")
    setting = ", ".join(f"{k}={v}" for k, v in cfg.items()
                        if k not in ("data", "device") and not isinstance(v, dict))
    return [head, setting]


def _stats_table(rows: dict[str, dict[str, float]]) -> str:
    stats = pd.DataFrame(rows).T[["mean", "median", "q05", "q95", "min", "max"]]
    return stats.to_string(float_format=lambda v: f"{v:.4g}")


def _margin_lines(s: dict[str, Any]) -> list[str]:
    """Counts, the attack's verdict if any, and quantiles of each margin and of r_min."""
    lines = [f"certified {s['n_certified']} of {s['n_inputs']} inputs "
             f"({100 * s['certified_share']:.1f}%), abstained {s['n_abstained']}"]
    if "empirical" in s:
        e, fit = s["empirical"], s["empirical"]["fit"]["bound"]
        lines.append(f"attacked: {e['n_violations']} violations, {e['n_unbroken']} unbroken; "
                     f"empirical vs bound: correlation {fit['correlation']:.3f}, slope "
                     f"{fit['slope']:.3f}, intercept {fit['intercept']:.3g}")
    rows = {col: s["margins"][col] for col in MARGINS}
    if "empirical" in s:
        rows["margin_empirical"] = s["empirical"]["margin_empirical"]
    rows["r_min"] = s["diagnostics"]["r_min"]
    rows["r_min_upper"] = s["diagnostics"]["r_min_upper"]
    return [*lines, "", _stats_table(rows)]


def _attack_lines(s: dict[str, Any]) -> list[str]:
    """Per budget: mean damage and degradation of attack and noise."""
    rows = [{"L": b["L"], "damage": b["damage"]["mean"], "noise_damage": b["noise_damage"]["mean"],
             "loglik_degradation": b["loglik_degradation"]["mean"],
             "noise_loglik_degradation": b["noise_loglik_degradation"]["mean"],
             "attack_beats_noise": b["attack_beats_noise"]} for b in s["budgets"]]
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    return [f"{s['n_inputs']} inputs attacked; means per budget:", table]


def _curve_lines(s: dict[str, Any]) -> list[str]:
    """Mean ``p(rho)`` per radius and the distribution of crossing radii."""
    table = pd.DataFrame({"rho": s["rho"], "mean_p_hat": s["mean_p_hat"]}).to_string(
        index=False, float_format=lambda v: f"{v:.4g}")
    return [f"{s['n_inputs']} inputs; mean p(rho):", table, "",
            _stats_table({"crossing": s["crossing"]})]
