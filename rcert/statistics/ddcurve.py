"""DD-curves, their AADDC, and the latent-intervention statistics of Lu & Chen (2023) (spec
sections 4.2-4.4).

A DD-curve ("distortion-to-distortion") plots a fidelity score of adversarial
reconstructions against the latent attack budget epsilon. Its AADDC is the area between the
curve and a limit line ``L`` placed on the curve's bad side, over the epsilon grid:
``int (s - L) d epsilon`` for a higher-is-better score (SSIM, PSNR), ``int (L - s) d epsilon``
for a lower-is-better one (LPIPS, MSE, L2); larger is more robust. The integral is the
trapezoid rule on the grid, not divided by the grid's range (spec section 4.3, [inferred]).
One curve is drawn per batch and seed, so the spread of the AADDC is over both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rcert.errors import RcertError
from rcert.settings import METRICS

#: Whether a higher score is better, per fidelity metric.
ORIENTATION: dict[str, bool] = {"ssim": True, "psnr": True, "mse": False, "l2": False,
                                "lpips": False}
#: The limit lines of the paper's tables (Tables 1-2: SSIM 0.4, LPIPS 0.15; Table 3: PSNR 34).
PAPER_LIMITS = {"ssim": 0.4, "lpips": 0.15, "psnr": 34.0}
#: The columns that name one DD-curve besides the caller's grouping.
CURVE_KEYS = ("seed", "batch")


def parse_limits(items: Sequence[str]) -> dict[str, float]:
    """AADDC limit lines from ``metric=value`` strings (spec section 4.3), e.g.
    ``["ssim=0.4", "lpips=0.15"]`` -> ``{"ssim": 0.4, "lpips": 0.15}``.

    Raises
    ------
    RcertError
        An item without ``=``, an unknown metric, a value that is not a finite number, or a
        metric given twice.
    """
    limits: dict[str, float] = {}
    for item in (items,) if isinstance(items, str) else items:
        metric, sep, text = str(item).partition("=")
        metric = metric.strip().lower()
        if not sep:
            raise RcertError(f"a limit line is metric=value, e.g. ssim=0.4, got {item!r}")
        if metric not in METRICS:
            raise RcertError(f"unknown metric {metric!r} in limit {item!r}; choose one of: "
                             f"{', '.join(METRICS)}")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise RcertError(f"the limit of {metric} must be a finite number, e.g. "
                             f"{metric}={PAPER_LIMITS.get(metric, 0.1)}, got {item!r}")
        if metric in limits:
            raise RcertError(f"the limit of {metric} is given twice ({metric}={limits[metric]:g}"
                             f" and {item!r}); give one")
        limits[metric] = value
    return limits


def _grid(epsilons: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """The curve's points sorted by epsilon; (n,) epsilons and (..., n) scores."""
    eps = np.asarray(epsilons, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if eps.ndim != 1 or s.shape[-1:] != eps.shape:
        raise RcertError(f"a DD-curve needs one score per epsilon, got {eps.shape} epsilons "
                         f"and {s.shape} scores")
    if not (np.isfinite(eps).all() and np.isfinite(s).all()):
        raise RcertError("a DD-curve holds NaN or infinite epsilons or scores; drop the rows "
                         "whose attack or score failed")
    order = np.argsort(eps, kind="stable")
    eps, s = eps[order], s[..., order]
    if eps.size < 2 or (np.diff(eps) == 0).any():
        raise RcertError(f"an AADDC needs at least 2 distinct epsilons, each once, got "
                         f"{eps.tolist()}; attack at more budgets, averaging repeats first")
    return eps, s


def _areas(eps: np.ndarray, d: np.ndarray, clip: bool) -> np.ndarray:
    """Trapezoid integrals of the piecewise-linear ``d(eps)`` along its last axis, or of
    ``max(0, d)``: an interval where ``d`` changes sign keeps the triangle on its positive
    side, ``w p^2 / (2 |d0 - d1|)`` with ``p`` the positive end's value."""
    width = np.diff(eps)
    d0, d1 = d[..., :-1], d[..., 1:]
    if not clip:
        return ((d0 + d1) / 2 * width).sum(-1)
    p0, p1 = np.maximum(d0, 0.0), np.maximum(d1, 0.0)
    crossing = d0 * d1 < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        triangle = (p0 * p0 + p1 * p1) / (2 * np.abs(d0 - d1))
    return (np.where(crossing, triangle, (p0 + p1) / 2) * width).sum(-1)


def _gap(scores: np.ndarray, limit: float, higher_is_better: bool) -> np.ndarray:
    """How far each score lies on the good side of the limit (negative: the wrong side)."""
    return scores - limit if higher_is_better else limit - scores


def aaddc(epsilons: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray,
          limit: float, *, higher_is_better: bool, clip: bool = False) -> float:
    """The AADDC of one DD-curve (Lu & Chen, spec section 4.3): the trapezoid integral over the
    epsilon grid of ``s - limit`` (higher is better) or ``limit - s`` (lower is better), not
    divided by the grid's range; larger is more robust.

    Parameters
    ----------
    epsilons, scores
        The curve's points, in any order; at least two distinct epsilons, each once.
    limit
        The limit line, meant to lie on the curve's bad side (:func:`check_limit`).
    higher_is_better
        The score's orientation (:data:`ORIENTATION`).
    clip
        Integrate ``max(0, .)`` instead, exactly for the piecewise-linear curve: where the
        curve crosses the line, only the part on the good side counts.
    """
    eps, s = _grid(epsilons, scores)
    limit = float(limit)
    if not math.isfinite(limit):
        raise RcertError(f"the limit line must be a finite number, got {limit}")
    return float(_areas(eps, _gap(s, limit, higher_is_better), clip))


def check_limit(epsilons: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray,
                limit: float, *, higher_is_better: bool, metric: str) -> str | None:
    """Whether the limit line lies on the DD-curve's bad side, as an AADDC needs (spec
    section 4.3): None if no point of the curve is on the line's wrong side, a warning (for
    the caller to emit) if some are, and an RcertError if all are (a limit given in the wrong
    direction, e.g. an SSIM limit above the whole curve)."""
    _, s = _grid(epsilons, scores)
    wrong = _gap(s, float(limit), higher_is_better) < 0
    side, need, extreme = (("above", "below", f"lowest score {s.min():.4g}") if higher_is_better
                           else ("below", "above", f"highest score {s.max():.4g}"))
    orientation = "higher" if higher_is_better else "lower"
    if wrong.all():
        paper = (f" (the paper's {metric}={PAPER_LIMITS[metric]:g})" if metric in PAPER_LIMITS
                 else "")
        raise RcertError(
            f"the {metric} limit line {limit:g} lies {side} its whole DD-curve; for a "
            f"{orientation}-is-better score the limit must lie {need} the curve{paper}, "
            f"i.e. {need} its {extreme}")
    if wrong.any():
        return (f"the {metric} DD-curve crosses its limit line {limit:g} ({int(wrong.sum())} "
                f"of {wrong.size} points lie {need} it): its signed AADDC subtracts the area on "
                f"the wrong side, a clipped one counts only the area on the good side")
    return None


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RcertError(f"the fidelity table lacks the column(s) {', '.join(missing)}; pass "
                         f"the per-row table of a latent attack run")


def curve_table(df: pd.DataFrame, metric: str, by: Sequence[str]) -> pd.DataFrame:
    """The DD-curves of ``metric`` (spec section 4.2): its mean per ``(*by, seed, batch,
    epsilon)`` over the rows of a per-input table, one curve per batch and seed. Columns
    ``*by, seed, batch, epsilon, metric``."""
    keys = [*by, *CURVE_KEYS, "epsilon"]
    _require(df, [*keys, metric])
    if df[metric].isna().any():
        raise RcertError(f"the {metric} column holds {int(df[metric].isna().sum())} missing "
                         f"value(s); drop those rows, or {metric} from the metrics")
    return df.groupby(keys, sort=True)[metric].mean().reset_index()


def curve_band(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The DD-curve of ``metric`` with its spread, indexed by epsilon (ascending): ``mean``
    over every row (each input weighs the same), and ``std`` (ddof 1) and ``count`` of the
    per-batch-and-seed curves of :func:`curve_table`."""
    spread = curve_table(df, metric, by=()).groupby("epsilon")[metric].agg(["std", "count"])
    return spread.assign(mean=df.groupby("epsilon")[metric].mean())[["mean", "std", "count"]]


def _group_areas(curves: pd.DataFrame, metric: str, limit: float, clip: bool,
                 label: str) -> tuple[dict[str, Any], str | None]:
    """One row of :func:`aaddc_table` from the DD-curves of one group, and its warning."""
    wide = curves.pivot_table(index=list(CURVE_KEYS), columns="epsilon", values=metric)
    if wide.isna().to_numpy().any():
        raise RcertError(f"the {metric} DD-curves{label and ' of ' + label} do not share one "
                         f"epsilon grid; attack every batch and seed at the same budgets")
    eps, s = _grid(wide.columns.to_numpy(), wide.to_numpy())
    higher = ORIENTATION[metric]
    mean = s.mean(0)
    try:
        warning = check_limit(eps, mean, limit, higher_is_better=higher, metric=metric)
    except RcertError as exc:
        raise RcertError(f"{label}: {exc}" if label else str(exc)) from None
    crossing = int((_gap(s, limit, higher) < 0).any(1).sum())
    if warning is None and crossing:
        warning = (f"{crossing} of {len(s)} {metric} DD-curves cross their limit line "
                   f"{limit:g}: their signed AADDC subtracts the area on the wrong side, a "
                   f"clipped one counts only the area on the good side")
    areas = _areas(eps, _gap(s, limit, higher), clip)
    row = {"metric": metric, "limit": limit, "aaddc_mean": float(areas.mean()),
           "aaddc_std": float(areas.std(ddof=1)) if len(areas) > 1 else math.nan,
           "n_curves": len(areas),
           "aaddc_of_mean": float(_areas(eps, _gap(mean, limit, higher), clip))}
    return row, warning and (f"{label}: {warning}" if label else warning)


def aaddc_table(df: pd.DataFrame, metrics: Sequence[str], limits: Mapping[str, float], *,
                by: Sequence[str] = (), clip: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The AADDC (spec section 4.3) per group of ``by`` and per metric that has a limit: of
    each (seed, batch) DD-curve (:func:`curve_table`), their mean, standard deviation
    (``ddof=1``; NaN for one curve) and number, and the AADDC of the mean curve.

    Parameters
    ----------
    df
        Per-input rows with columns ``seed``, ``batch``, ``epsilon``, the ``by`` columns and
        one column per metric; metrics absent from it are skipped.
    metrics, limits
        The metrics scored and the limit lines (:func:`parse_limits`); a metric without a
        limit (e.g. a score with no orientation, such as an MSE to a target) is skipped.
    by
        Columns naming a group, e.g. ``("model",)``.
    clip
        Integrate only the area on the good side of each line (:func:`aaddc`).

    Returns
    -------
    The table (columns ``*by, metric, limit, aaddc_mean, aaddc_std, n_curves,
    aaddc_of_mean``) and the warnings of curves that cross their limit lines.

    Raises
    ------
    RcertError
        Missing columns, missing scores, curves on different grids, or a limit line on the
        wrong side of a group's whole mean curve (:func:`check_limit`).
    """
    by = list(by)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for metric in metrics:
        if metric not in limits or metric not in df.columns:
            continue
        if metric not in ORIENTATION:
            raise RcertError(f"a limit line for {metric!r}, which has no orientation; give "
                             f"limits for {', '.join(ORIENTATION)} only")
        curves = curve_table(df, metric, by)
        groups = curves.groupby(by, sort=True) if by else [((), curves)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{c}={v}" for c, v in zip(by, key, strict=True))
            row, warning = _group_areas(group, metric, float(limits[metric]), clip, label)
            rows.append({**dict(zip(by, key, strict=True)), **row})
            warnings += [warning] if warning else []
    columns = [*by, "metric", "limit", "aaddc_mean", "aaddc_std", "n_curves", "aaddc_of_mean"]
    table = pd.DataFrame(rows, columns=columns)
    if by and len(table):
        table = table.sort_values(by, kind="stable", ignore_index=True)
    return table, warnings


def latent_statistics(z0: Tensor, z_adv: Tensor) -> pd.DataFrame:
    """Lu & Chen's latent-intervention statistics (Eq 7), per latent dimension ``j`` (0-based)
    of ``(m, d)`` clean codes ``Z`` and adversarial codes ``Z_adv``: ``E|Z_j|``,
    ``E|Z_adv_j|`` and ``E|delta_j| = E|Z_adv_j - Z_j|``, means over the ``m`` rows.

    Returns
    -------
    Columns ``dim, mean_abs_code, mean_abs_adversarial, mean_abs_shift``, one row per
    dimension.
    """
    if z0.shape != z_adv.shape or z0.dim() != 2 or z0.shape[0] == 0:
        raise RcertError(f"latent statistics need clean and adversarial codes of one shape "
                         f"(rows >= 1, dims), got {tuple(z0.shape)} and {tuple(z_adv.shape)}")
    with torch.no_grad():
        z0, z_adv = z0.detach().double().cpu(), z_adv.detach().double().cpu()
        stats = torch.stack([z0.abs().mean(0), z_adv.abs().mean(0), (z_adv - z0).abs().mean(0)])
    values = stats.numpy()
    return pd.DataFrame({"dim": np.arange(z0.shape[1]), "mean_abs_code": values[0],
                         "mean_abs_adversarial": values[1], "mean_abs_shift": values[2]})
