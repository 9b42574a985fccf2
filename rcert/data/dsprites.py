"""dSprites, rendered procedurally from its generative factors (no download)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rcert.data.splits import Loaded, split_slice

if TYPE_CHECKING:
    from rcert.data.specs import DataSpec


CANVAS = 64


_SHAPE_NAMES = ("square", "ellipse", "heart")


_SCALES = np.linspace(0.5, 1.0, 6)


_ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)


_POSITIONS = np.linspace(0.0, 1.0, 32)


_GRID = (len(_SHAPE_NAMES), len(_SCALES), len(_ORIENTATIONS), len(_POSITIONS), len(_POSITIONS))


GRID_SIZE = math.prod(_GRID)


# Every shape fits the unit disk of its own frame, so at scale s it stays within
# _SHAPE_RADIUS * s pixels of its centre whatever the orientation. Positions 0..1 move the
# centre over 12..52 px; the largest shape then keeps >= 2 blank pixels to every edge.
_SHAPE_RADIUS = 10.0


_POSITION_SPAN = 40.0


_HALF_SIDE = 1 / np.sqrt(2)  # square's corners on the unit circle


_ELLIPSE_MINOR = 0.5


_HEART_RADIUS = 1.43  # the heart curve reaches radius 1.4245 from its origin


_CHUNK = 512  # images rendered at once: bounds memory to a few (512, 64, 64) arrays


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= _HALF_SIDE


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    w = v / _ELLIPSE_MINOR
    return u * u + w * w <= 1.0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # (x^2 + y^2 - 1)^3 <= x^2 y^3 with y pointing up; v points down the image, so y = -v makes
    # the tip point down. Plain products, not np.power, so no libm kernel enters per pixel.
    x = u * _HEART_RADIUS
    y = -v * _HEART_RADIUS
    t = x * x + y * y - 1.0
    return t * t * t <= x * x * y * y * y


_INSIDE = (_square, _ellipse, _heart)


def _dsprites_factors(n: int) -> pd.DataFrame:
    """The first n cells of a seed-0 permutation of the factor grid (no repeats)."""
    flat = np.random.default_rng(0).permutation(GRID_SIZE)[:n]
    shape, scale, orientation, pos_x, pos_y = np.unravel_index(flat, _GRID)
    return pd.DataFrame(
        {
            "shape": shape.astype(np.int64),
            "shape_name": np.asarray(_SHAPE_NAMES)[shape],
            "scale": _SCALES[scale],
            "orientation": _ORIENTATIONS[orientation],
            "pos_x": _POSITIONS[pos_x],
            "pos_y": _POSITIONS[pos_y],
        }
    )


def _pixel_centre(position: np.ndarray) -> np.ndarray:
    return (CANVAS / 2 + (position - 0.5) * _POSITION_SPAN).astype(np.float32)


def _render_dsprites(factors: pd.DataFrame, res: int = CANVAS) -> np.ndarray:
    """Render dSprites images from their factors.

    Each pixel centre is mapped into the shape's frame (shift to the position, rotate by
    ``-orientation``, divide by the scale) and tested against the shape's implicit inequality.

    Parameters
    ----------
    factors : pandas.DataFrame
        Columns ``shape`` (0 square, 1 ellipse, 2 heart), ``scale``, ``orientation`` (radians),
        ``pos_x`` and ``pos_y`` (0..1, left to right and top to bottom).
    res : int
        Output side; must divide 64. Below 64, blocks of ``64 // res`` pixels are averaged,
        so the binary images become grey levels in [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 (N, res, res).
    """
    n, block = len(factors), CANVAS // res
    shape = factors["shape"].to_numpy()
    # Trigonometry once per image in float64; per-pixel work is only + - * /, which IEEE rounds
    # the same everywhere, so a recorded spec re-renders the same pixels on another machine.
    angle = factors["orientation"].to_numpy(np.float64)
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    radius = (_SHAPE_RADIUS * factors["scale"].to_numpy(np.float64)).astype(np.float32)
    centre_x = _pixel_centre(factors["pos_x"].to_numpy(np.float64))
    centre_y = _pixel_centre(factors["pos_y"].to_numpy(np.float64))
    pixel = np.arange(CANVAS, dtype=np.float32) + np.float32(0.5)
    out = np.empty((n, res, res), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        dx = pixel[None, None, :] - centre_x[rows, None, None]
        dy = pixel[None, :, None] - centre_y[rows, None, None]
        c, s, r = cos[rows, None, None], sin[rows, None, None], radius[rows, None, None]
        u = (c * dx + s * dy) / r
        v = (c * dy - s * dx) / r
        mask = np.zeros(u.shape, dtype=bool)
        for code, inside in enumerate(_INSIDE):
            chosen = shape[rows] == code
            mask[chosen] = inside(u[chosen], v[chosen])
        m = len(mask)
        out[rows] = mask.reshape(m, res, block, res, block).mean(axis=(2, 4), dtype=np.float32)
    return out


def load(spec: DataSpec) -> Loaded:
    options = dict(spec.options)
    n, res = int(options["n"]), int(options["res"])
    factors = _dsprites_factors(n).iloc[split_slice(n, spec.split)].reset_index(drop=True)
    x = _render_dsprites(factors, res)[:, None]
    return x, factors["shape"].to_numpy(), factors, spec
