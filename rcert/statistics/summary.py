"""Dataset-wide figures (SPEC section 7): distributions, certified fraction, the attack's side.

Plain functions of the per-input DataFrames; :mod:`rcert.results.schema` puts their output
in the ``summary`` of a result document, which every renderer prints.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from rcert.settings import AttackConfig, CertifyConfig, attack_label, default, stronger

#: Margins in input space, where a certified fraction at radius ``e`` makes sense.
INPUT_MARGINS = ("bound", "bound_certified", "bound_spectral", "bound_whitened")
#: Every margin column, input space then latent space.
MARGINS = (*INPUT_MARGINS, "latent_margin")
#: What a summary says in place of certified counts where no certificate covers the model.
NO_CERTIFICATE = ("none: a deterministic encoder has no sigma, so no r-robustness certificate "
                  "applies (SPEC section 9); Jacobian norms only")
#: Per-input quantities whose distributions explain the margins [C Fig 9].
DIAGNOSTICS = ("sigma_min", "sigma_mean", "jacobian_fro", "jacobian_spec", "jacobian_whitened",
               "p_hat", "p_lower", "r_min", "r_min_upper")


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
    ``bound_whitened`` (SPEC section 7). An abstention (``abstain``) is never counted as
    certified, whatever its margin column holds. A frame without margins (a deterministic
    encoder's, SPEC section 9) gives the radii alone.
    """
    columns = tuple(col for col in columns if col in df.columns)
    if radii is None:
        finite = df["bound_whitened"].to_numpy() if "bound_whitened" in df.columns \
            else np.zeros(0)
        finite = finite[np.isfinite(finite)]
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        radii = np.linspace(0.0, top, n_radii)
    radii = np.asarray(radii, dtype=np.float64)
    table = {"radius": radii}
    if not columns:  # no certificate covers the model: nothing to count, abstain included
        return pd.DataFrame(table)
    certified = ~df["abstain"].to_numpy(dtype=bool)[None, :]
    for col in columns:
        values = df[col].to_numpy()[None, :]
        table[col] = np.mean((values >= radii[:, None]) & (values > 0) & certified, axis=1)
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
        as lists keyed by column). Only the columns ``df`` has are summarised: a family
        that a certificate does not cover has no entry for it. A deterministic encoder's
        frame (no ``abstain``: no statistical certificate, SPEC section 9) has no
        ``n_certified``, ``n_abstained`` or ``certified_share`` either; its
        ``certificates`` (:data:`NO_CERTIFICATE`) says why.
    """
    n = len(df)
    curve = certified_fraction(df, radii)
    margins = [col for col in MARGINS if col in df.columns]
    summary: dict[str, Any] = {"n_inputs": n}
    if "abstain" in df.columns:
        abstained = int(df["abstain"].sum())
        summary.update(n_certified=n - abstained, n_abstained=abstained,
                       certified_share=(n - abstained) / n if n else math.nan)
    else:
        summary["certificates"] = NO_CERTIFICATE
    summary |= {
        "mean_margin": {col: float(df[col].mean()) for col in margins},
        "margins": {col: describe(df[col]) for col in margins},
        "diagnostics": {col: describe(df[col]) for col in DIAGNOSTICS if col in df.columns},
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
    Fig 6) and on ``bound_certified``. With a ``margin_empirical_audit`` column, ``audit``
    is :func:`audit_summary`, its resolution, alpha and attack read from
    ``df.attrs["config"]["empirical"]`` (without it: 2% of each margin, the default alpha,
    the attack unnamed).
    """
    found = df["margin_empirical"].to_numpy(dtype=np.float64)
    out: dict[str, Any] = {"n_unbroken": int(np.isinf(found).sum()),
                           "margin_empirical": describe(found)}
    if "violation" in df.columns:  # a family with a bound to violate (verdicts.judge)
        out.update(n_violations=int(df["violation"].sum()),
                   violations=df.loc[df["violation"], "index"].astype(int).tolist(),
                   tightness=describe(df["tightness"].to_numpy(dtype=np.float64)),
                   fit={col: fit_line(df[col].to_numpy(dtype=np.float64), found)
                        for col in ("bound", "bound_certified")})
    if AUDIT_COLUMN in df.columns:
        out["audit"] = audit_summary(df, **_audit_settings(df))
    return out


#: The stronger attack's empirical margin on the audited inputs (NaN on the others), and the
#: p-value that confirms a lower one (NaN where it was not lower by more than the resolution).
AUDIT_COLUMN = "margin_empirical_audit"
AUDIT_P_COLUMN = "p_value_audit"


def lowered(weak: np.ndarray, strong: np.ndarray, resolution: float | None = None) -> np.ndarray:
    """Whether the stronger attack's margin lies below the weaker's by more than the search
    resolution: ``resolution``, or 2% of the weaker margin (the bisection's default width).

    An unbroken weaker margin (``inf``) is lowered by any finite one.
    """
    weak = np.asarray(weak, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    width = 0.02 * weak if resolution is None else resolution
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(weak), np.isfinite(strong), strong < weak - width)


def relative_drop(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """``1 - strong / weak``: the share of the weaker margin that the stronger attack took
    off (1 when it broke an unbroken input, 0 where both are 0 or both ``inf``, negative
    where the stronger attack found the larger margin)."""
    weak = np.asarray(weak, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = 1.0 - strong / weak
    return np.where((weak == strong) | (weak == 0), 0.0, np.where(np.isinf(weak), 1.0, drop))


def _audit_settings(df: pd.DataFrame) -> dict[str, Any]:
    """The resolution, alpha and stronger attack of a frame's audit, from its recorded
    attack (``df.attrs["config"]["empirical"]``); the defaults and no name without one."""
    recorded = (df.attrs.get("config") or {}).get("empirical") or {}
    names = {f.name for f in dataclasses.fields(AttackConfig)}
    attack = AttackConfig(**{k: v for k, v in recorded.items() if k in names})
    return {"resolution": attack.resolution,
            "alpha": recorded.get("alpha", default(CertifyConfig, "alpha")),
            "attack": attack_label(stronger(attack)) if recorded else None}


def audit_summary(df: pd.DataFrame, *, resolution: float | None = None,
                  alpha: float = default(CertifyConfig, "alpha"),
                  attack: str | None = None) -> dict[str, Any]:
    """How often the stronger attack lowered the audited inputs' empirical margins.

    ``n_audited`` rows have a ``margin_empirical_audit``. ``n_lowered`` of them (ids in
    ``lowered``) lie below ``margin_empirical`` by more than the resolution (:func:`lowered`);
    ``n_confirmed`` (ids in ``confirmed``) of those have ``p_value_audit <= alpha``: at a
    radius where the weaker attack failed, the stronger one broke r-robustness with
    confidence ``1 - alpha``. ``max_drop`` is the largest :func:`relative_drop`, at least 0
    (NaN when none was audited); ``attack`` names the stronger attack.
    """
    rows = df[df[AUDIT_COLUMN].notna()]
    weak = rows["margin_empirical"].to_numpy(dtype=np.float64)
    strong = rows[AUDIT_COLUMN].to_numpy(dtype=np.float64)
    low = lowered(weak, strong, resolution)
    confirmed = rows[AUDIT_P_COLUMN].to_numpy(dtype=np.float64) <= alpha
    drops = relative_drop(weak, strong)
    return {"attack": attack, "n_audited": len(rows), "n_lowered": int(low.sum()),
            "lowered": rows.loc[low, "index"].astype(int).tolist(),
            "n_confirmed": int(confirmed.sum()),
            "confirmed": rows.loc[confirmed, "index"].astype(int).tolist(),
            "max_drop": max(float(drops.max()), 0.0) if len(rows) else math.nan}


def summarize_attack(df: pd.DataFrame) -> dict[str, Any]:
    """Per budget ``L``: damage, distortion and log-likelihood degradation, attack and noise.

    ``attack_beats_noise`` is the share of inputs whose attack damage is at least the
    damage of Gaussian noise of the same norm [C Fig 4, Fig 9b]. Damage sees the mean only
    (0 under threat sigma), so the attack is also compared on ``distortion``
    (``E||Delta(x, d)||`` under its threat, SPEC section 2): ``attack_beats_noise_distortion``.
    Frames made before the distortion columns existed are summarised without them.
    """
    columns = ("damage", "loglik_degradation", "delta_norm", "noise_damage",
               "noise_loglik_degradation", "distortion", "clean_distortion", "noise_distortion")
    per_budget = []
    for budget, group in df.groupby("L", sort=True):
        entry = {"L": float(budget), "n_inputs": len(group),
                 **{col: describe(group[col]) for col in columns if col in group},
                 "attack_beats_noise": float(np.mean(group["damage"] >= group["noise_damage"]))}
        if "distortion" in group and "noise_distortion" in group:
            entry["attack_beats_noise_distortion"] = float(
                np.mean(group["distortion"] >= group["noise_distortion"]))
        per_budget.append(entry)
    return {"n_inputs": int(df["index"].nunique()), "budgets": per_budget}


def summarize_curve(df: pd.DataFrame, m: float) -> dict[str, Any]:
    """Mean ``p(rho)`` per radius, and each input's crossing (SPEC section 6).

    An input's crossing is its first radius with ``broken`` (``p_upper <= m``: not
    r-robust there at confidence ``1 - alpha``). ``crossing`` describes the inputs that
    crossed; ``n_uncrossed`` counts those that did not up to ``largest_rho``, whose
    crossing lies beyond it (or nowhere) and so has no number. ``m`` is the level the
    ``broken`` column was computed at; it is returned for the record.
    """
    mean_p = df.groupby("rho", sort=True)["p_hat"].mean()
    inputs = df["index"].unique()
    crossing = df[df["broken"]].groupby("index")["rho"].min().reindex(inputs)
    return {"n_inputs": len(inputs), "m": float(m), "rho": mean_p.index.tolist(),
            "mean_p_hat": mean_p.tolist(), "crossing": describe(crossing.dropna().to_numpy()),
            "n_uncrossed": int(crossing.isna().sum()), "largest_rho": float(df["rho"].max())}


#: Columns of a targeted attack's table (:mod:`rcert.evaluation.targeted`) summarised.
TARGETED_COLUMNS = ("loss", "attack_loss", "distortion", "neg_log_lik_target",
                    "l2_input_target", "l2_output_target", "l2_target_recon")


def _mean_intervals(df: pd.DataFrame, columns: list[str], *, level: float, n_resamples: int,
                    seed: int, groups: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Each column's mean with its percentile-bootstrap interval
    (:func:`rcert.statistics.bootstrap.bootstrap_ci`; ``groups``: resample whole clusters)."""
    from rcert.statistics.bootstrap import bootstrap_ci

    out = {}
    for col in columns:
        mean, low, high = bootstrap_ci(df[col].to_numpy(dtype=np.float64), "mean",
                                       level=level, n_resamples=n_resamples, seed=seed,
                                       groups=groups)
        out[col] = {"mean": mean, "low": low, "high": high}
    return out


def summarize_targeted(df: pd.DataFrame, *, level: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> dict[str, Any]:
    """The paper's aggregates of a targeted attack (Willetts et al., spec section 4): each
    metric's mean over pairs x lambdas with a percentile-bootstrap interval that resamples
    whole pairs (a pair's lambdas move together), and the same over the pairs' selected
    ("most successful") rows."""
    cols = [c for c in TARGETED_COLUMNS if c in df]
    boot = {"level": level, "n_resamples": n_resamples, "seed": seed}
    return {
        "kind": str(df["kind"].iloc[0]), "n_pairs": int(df["pair"].nunique()),
        "n_lambdas": int(df["lambda"].nunique()), "level": level,
        "status": {str(k): int(v) for k, v in df["status"].value_counts().items()},
        "all": _mean_intervals(df, cols, groups=df["pair"].to_numpy(), **boot),
        "selected": _mean_intervals(df[df["selected"]], cols, **boot),
    }


def summarize_posteriors(df: pd.DataFrame, *, level: float = 0.95, n_resamples: int = 2000,
                         seed: int = 0) -> dict[str, Any]:
    """Each posterior measure's mean over the inputs with a percentile-bootstrap interval
    (:mod:`rcert.evaluation.posteriors`; the inputs are independent rows)."""
    cols = [c for c in df.columns if c != "index"]
    return {"n_inputs": len(df), "level": level,
            "measures": _mean_intervals(df, cols, level=level, n_resamples=n_resamples,
                                        seed=seed)}
