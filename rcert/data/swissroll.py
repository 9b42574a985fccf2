"""A procedural Swiss roll: 3-D points on a rolled-up sheet, drawn with fixed seeds.

The classic roll (the one scikit-learn's ``make_swiss_roll`` draws, with its own seeding):
``t ~ U(1.5 pi, 4.5 pi)``, ``x = t cos t``, ``y ~ U(0, 21)``, ``z = t sin t``, plus isotropic
Gaussian noise of standard deviation ``noise``. Every coordinate is then mapped into [0, 1] by
the same fixed affine map, so the roll keeps its shape and the ``range`` option of the spec can
move it onto [-1, 1]. A 2-D latent VAE trained on it shows the paper's "overlap" picture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rcert.data.splits import Loaded, split_slice

if TYPE_CHECKING:
    from rcert.data.specs import DataSpec

#: The roll parameter t is uniform on [T_LOW, T_HIGH].
T_LOW, T_HIGH = 1.5 * np.pi, 4.5 * np.pi

#: The sheet's height: y is uniform on [0, HEIGHT].
HEIGHT = 21.0

#: Most points a spec may ask for (``n``).
MAX_POINTS = 1_000_000

#: Largest noise standard deviation a spec may ask for.
MAX_NOISE = 1.0

#: Labels: t in the k-th of CLASSES equal parts of [T_LOW, T_HIGH] is class k.
CLASSES = 4

# The clean roll spans x in [-9.48, 12.61], y in [0, 21], z in [-11.04, 14.14]. Each coordinate
# is centred on CENTRE and divided by one common SCALE, then shifted by 0.5: the clean roll lies
# in [0.08, 0.93] and only points more than 2.4 units off it (noise) reach the box's edge.
CENTRE = np.array([1.5, 10.5, 1.5])

SCALE = 30.0

# Two generators, so that a smaller n draws a prefix of the points of a larger one.
_PARAMETER_SEED, _NOISE_SEED = 0, 1


def swiss_roll(n: int, noise: float) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The first ``n`` points of the fixed roll.

    Parameters
    ----------
    n : int
        Number of points.
    noise : float
        Standard deviation of the Gaussian noise added to every coordinate before scaling.

    Returns
    -------
    x : numpy.ndarray
        float32 (n, 3) in [0, 1]: ``clip((p - CENTRE) / SCALE + 0.5, 0, 1)`` of each noisy
        point ``p = (t cos t, y, t sin t) + noise * e``.
    labels : numpy.ndarray
        int64 (n,): the quarter of [1.5 pi, 4.5 pi] that holds t, 0 (inner) to 3 (outer).
    factors : pandas.DataFrame
        Columns ``t`` and ``height`` (y before noise and scaling), one row per point.
    """
    # u[:, 0] draws t, u[:, 1] the height; drawn row by row, so any n gives a prefix.
    u = np.random.default_rng(_PARAMETER_SEED).random((n, 2))
    t = T_LOW + (T_HIGH - T_LOW) * u[:, 0]
    height = HEIGHT * u[:, 1]
    points = np.stack([t * np.cos(t), height, t * np.sin(t)], axis=1)
    points += noise * np.random.default_rng(_NOISE_SEED).standard_normal((n, 3))
    x = np.clip((points - CENTRE) / SCALE + 0.5, 0.0, 1.0).astype(np.float32)
    labels = np.minimum(np.floor(CLASSES * u[:, 0]), CLASSES - 1).astype(np.int64)
    return x, labels, pd.DataFrame({"t": t, "height": height})


def load(spec: DataSpec) -> Loaded:
    """The points of ``spec.split``: of the ``n`` drawn, the first 80% train, the last 20% test."""
    options = dict(spec.options)
    n = int(options["n"])
    x, labels, factors = swiss_roll(n, float(options["noise"]))
    rows = split_slice(n, spec.split)
    return x[rows], labels[rows], factors.iloc[rows].reset_index(drop=True), spec
