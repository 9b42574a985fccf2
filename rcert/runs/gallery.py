"""Pictures of a report's weakest inputs: the inputs with the smallest certified margin.

For each chosen input the report shows the input ``x``, its maximum-likelihood
reconstruction ``g(mu(x))`` (the reference reconstruction of Camuto et al. 2021, [C] Eq 1)
and, when the caller has the attack's perturbation ``d``, the adversarial input ``x + d``
and its reconstruction ``g(mu(x + d))``. Images are PNG bytes drawn with matplotlib's Agg
canvas, pixel for pixel (each data pixel a block of :func:`pixel_scale` screen pixels), so
the same inputs give the same bytes.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from rcert import validate
from rcert.errors import RcertError
from rcert.evaluation.empirical import perturbations
from rcert.evaluation.verdicts import start_radii
from rcert.models import contract
from rcert.settings import AttackConfig, CertifyConfig, RunConfig

#: The shortest longer side, in screen pixels, an image is drawn at: small inputs (8x8
#: digits) are enlarged by whole-number factors, so pixels stay sharp squares.
MIN_SIDE = 64

#: The value range shown when the model declares no ``data_range``.
DEFAULT_RANGE = (0.0, 1.0)


def pixel_scale(height: int, width: int) -> int:
    """How many screen pixels per data pixel: the least whole factor that brings the longer
    side to at least :data:`MIN_SIDE` (1 for images already that large)."""
    return max(1, math.ceil(MIN_SIDE / max(height, width)))


def as_image(values: np.ndarray) -> np.ndarray:
    """One input as an image array: ``(H, W)`` for grey, ``(H, W, 3)`` for colour.

    ``(C, H, W)`` with ``C`` in {1, 3} is an image; ``(H, W)`` is grey; anything else is
    flattened to ``D`` values, shown as a square when ``D`` is a square number, else as a
    ``1 x D`` strip.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 3 and v.shape[0] == 3:
        return np.moveaxis(v, 0, -1)
    if v.ndim == 3 and v.shape[0] == 1:
        return v[0]
    if v.ndim == 2:
        return v
    flat = v.reshape(-1)
    side = math.isqrt(flat.size)
    return flat.reshape(side, side) if side * side == flat.size else flat.reshape(1, -1)


def render_png(values: np.ndarray, value_range: tuple[float, float] = DEFAULT_RANGE) -> bytes:
    """PNG bytes of one input (see :func:`as_image`), values clipped to ``value_range``:
    grey for one channel, RGB for three, each data pixel a square of :func:`pixel_scale`."""
    image = as_image(values)
    lo, hi = float(value_range[0]), float(value_range[1])
    unit = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    unit = np.nan_to_num(unit, nan=0.0)  # a NaN pixel shows black, not an error
    if unit.ndim == 2:
        # The grey map by hand: matplotlib's "gray" colormap rounds to a 256-entry table,
        # which would shift values by up to one level more than the PNG's 8 bits do.
        unit = np.repeat(unit[..., None], 3, axis=-1)
    height, width = unit.shape[:2]
    scale = pixel_scale(height, width)
    unit = np.repeat(np.repeat(unit, scale, axis=0), scale, axis=1)
    # dpi 1: the figure's size in inches is its size in pixels, exactly, with no rounding.
    fig = Figure(figsize=(width * scale, height * scale), dpi=1)
    fig.figimage(unit, xo=0, yo=0, origin="upper", resize=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=1)
    return buffer.getvalue()


def _reconstruct(model: Any, x: torch.Tensor) -> np.ndarray:
    """``g(mu(x))`` for a batch, as float64 arrays shaped like ``x``: in eval mode and without
    gradients, the model handed back in its own modes afterwards (:func:`rcert.validate.borrow`),
    so the pictures show what the certificate saw (BatchNorm on running statistics)."""
    with validate.borrow(model), torch.no_grad():
        model.eval()
        out = contract.reconstruct(model, x)
    return out.detach().cpu().to(torch.float64).numpy()


def _weakness(rows: pd.DataFrame) -> np.ndarray:
    """Per row, a number that is smaller the weaker the input: ``bound_certified``; without
    that certificate (docs/hierarchical.md) ``p_lower``; without any (a deterministic
    encoder, SPEC section 9) the empirical margin where attacks ran, else minus the
    encoder's ``||J||_2`` (the input that moves its code the most first)."""
    for key in ("bound_certified", "p_lower", "margin_empirical"):
        if key in rows.columns:
            return rows[key].to_numpy(dtype=np.float64)
    return -rows["jacobian_spec"].to_numpy(dtype=np.float64)


def _choose(rows: pd.DataFrame, k: int) -> np.ndarray:
    """Row positions of the ``k`` weakest inputs (:func:`_weakness`, smallest finite
    ``bound_certified`` where there is one) among inputs that did not abstain, weakest
    first, ties in row order."""
    bound = _weakness(rows)
    keep = ~np.isnan(bound)
    if "abstain" in rows.columns:
        keep &= ~rows["abstain"].to_numpy(dtype=bool)
    positions = np.flatnonzero(keep)
    order = np.argsort(bound[positions], kind="stable")
    return positions[order[:k]]


def weakest_inputs(model: Any, x: torch.Tensor, rows: pd.DataFrame, *, k: int = 6,
                   deltas: dict[int, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """The ``k`` inputs with the smallest certified margin among those not abstained.

    Parameters
    ----------
    model : torch.nn.Module
        The certified model: ``encode(x) -> (mu, sigma)``, ``decode(z)``, and optionally
        ``data_range`` (the value range the images show, default ``(0, 1)``).
    x : torch.Tensor
        The inputs, ``(N, ...)``, row ``i`` of ``rows`` describing ``x[i]``.
    rows : pandas.DataFrame
        The per-input rows of :func:`rcert.certify` (``index``, ``bound_certified``,
        ``abstain``, and ``margin_empirical`` when attacks ran), one per input of ``x``.
    k : int
        How many inputs to show (fewer when fewer inputs were certified).
    deltas : dict, optional
        Adversarial perturbations ``d`` by input ``index``; an input found here also shows
        ``x + d`` and ``g(mu(x + d))``.

    Returns
    -------
    list of dict
        Smallest ``bound_certified`` first (ties in row order), each
        ``{"index", "bound_certified", "margin_empirical" (None without attacks), "images"}``
        (and ``jacobian_spec`` for a model without certificates, which has no
        ``bound_certified``: NaN)
        where ``images`` maps ``"input"``, ``"reconstruction"`` and, with a perturbation,
        ``"adversarial input"`` and ``"adversarial reconstruction"`` to PNG bytes.

    Raises
    ------
    RcertError
        If ``rows`` and ``x`` differ in length, ``k`` is negative, or a perturbation's size
        differs from its input's.
    """
    if len(rows) != len(x):
        raise RcertError(f"weakest_inputs needs one row per input: {len(rows)} rows for "
                         f"{len(x)} inputs")
    if k < 0:
        raise RcertError(f"k must be at least 0, got {k}")
    positions = _choose(rows, k)
    if positions.size == 0:
        return []
    value_range = getattr(model, "data_range", None) or DEFAULT_RANGE
    chosen = x[torch.as_tensor(positions)]
    recon = _reconstruct(model, chosen)
    entries = []
    for j, pos in enumerate(positions):
        row = rows.iloc[int(pos)]
        index = int(row["index"])
        original = chosen[j].detach().cpu().to(torch.float64).numpy()
        images = {"input": render_png(original, value_range),
                  "reconstruction": render_png(recon[j], value_range)}
        if deltas is not None and index in deltas:
            images.update(_adversarial(model, chosen[j], deltas[index], value_range))
        empirical = row["margin_empirical"] if "margin_empirical" in rows.columns else None
        bound = row["bound_certified"] if "bound_certified" in rows.columns else math.nan
        entry = {"index": index, "bound_certified": float(bound),
                 "margin_empirical": None if empirical is None else float(empirical),
                 "images": images}
        if "abstain" not in rows.columns:  # no certificate: the caption shows ||J||_2
            entry["jacobian_spec"] = float(row["jacobian_spec"])
        entries.append(entry)
    return entries


def _adversarial(model: Any, x: torch.Tensor, delta: np.ndarray,
                 value_range: tuple[float, float]) -> dict[str, bytes]:
    """Pictures of ``x + d`` and of ``g(mu(x + d))``."""
    d = torch.as_tensor(np.asarray(delta), dtype=x.dtype, device=x.device)
    if d.numel() != x.numel():
        raise RcertError(f"a perturbation has {d.numel()} values but its input has "
                         f"{x.numel()}")
    attacked = (x + d.reshape(x.shape)).unsqueeze(0)
    recon = _reconstruct(model, attacked)
    return {"adversarial input": render_png(attacked[0].cpu().double().numpy(), value_range),
            "adversarial reconstruction": render_png(recon[0], value_range)}


def attacked_deltas(model: Any, x: torch.Tensor, rows: pd.DataFrame, certify: CertifyConfig,
                    attack: AttackConfig, *, k: int, run: RunConfig) -> dict[int, np.ndarray]:
    """The attack's perturbations at ``margin_empirical`` for the inputs
    :func:`weakest_inputs` pictures (by input ``index``), found again by rerunning the
    empirical margin on just those inputs with the run's settings: rows depend only on
    their input's index, so this is the perturbation of the run (to float rounding)."""
    positions = _choose(rows, k)
    if "margin_empirical" not in rows.columns or positions.size == 0:
        return {}
    found = rows["margin_empirical"].to_numpy(dtype=np.float64)[positions]
    positions = positions[np.isfinite(found) & (found > 0)]
    if positions.size == 0:
        return {}
    picked = rows.iloc[positions]
    _, deltas = perturbations(model, x[torch.as_tensor(positions)], certify, attack,
                              start=start_radii(picked), index=picked["index"].to_numpy(),
                              run=dataclasses.replace(run, progress=False))
    return {int(i): d.cpu().numpy() for i, d in zip(picked["index"], deltas, strict=True)}
