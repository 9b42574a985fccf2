"""Exact Euclidean projection onto the L2 ball intersected with the data box."""

from __future__ import annotations

import torch
from torch import nn

# Bisection steps for the projection's shrink factor: 2**-40 relative precision.
_PROJECTION_STEPS = 40


def project(delta: torch.Tensor, x: torch.Tensor, radius: torch.Tensor,
            box: tuple[float, float] | None) -> torch.Tensor:
    """Euclidean projection of each ``delta`` onto ``{||d|| <= radius} ∩ {lo <= x + d <= hi}``.

    The KKT conditions give ``d = clip(t * delta, lo - x, hi - x)`` for a shrink factor
    ``t`` in ``(0, 1]``; since ``0`` lies in the box, ``||d(t)||`` grows with ``t``, so the
    largest feasible ``t`` is found by bisection, for all inputs at once.

    Parameters
    ----------
    delta, x
        ``(B, ...)`` perturbations and the inputs they perturb.
    radius
        ``(B,)`` L2 radii.
    box
        ``(lo, hi)`` data range, or None for no box.
    """
    flat = delta.flatten(1)
    radius = radius.to(flat.dtype).reshape(-1)
    if box is None:
        norm = flat.norm(dim=1)
        scale = torch.where(norm > radius, radius / norm.clamp_min(1e-30), torch.ones_like(norm))
        return (flat * scale[:, None]).view_as(delta)
    lo = box[0] - x.flatten(1)
    hi = box[1] - x.flatten(1)

    def shrink(t: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(flat * t[:, None], lo), hi)

    feasible = shrink(torch.ones_like(radius)).norm(dim=1) <= radius
    t_lo = torch.zeros_like(radius)
    t_hi = torch.ones_like(radius)
    for _ in range(_PROJECTION_STEPS):
        mid = (t_lo + t_hi) / 2
        ok = shrink(mid).norm(dim=1) <= radius
        t_lo = torch.where(ok, mid, t_lo)
        t_hi = torch.where(ok, t_hi, mid)
    t = torch.where(feasible, torch.ones_like(radius), t_lo)
    return shrink(t).view_as(delta)


def data_box(model: nn.Module) -> tuple[float, float] | None:
    """The model's ``data_range`` as floats: the box perturbed inputs stay in (None: no box)."""
    box = getattr(model, "data_range", None)
    return None if box is None else (float(box[0]), float(box[1]))
