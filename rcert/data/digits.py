"""scikit-learn's 8x8 digits with a fixed, seeded split."""

from __future__ import annotations

import numpy as np

from rcert.data.specs import DataSpec
from rcert.data.splits import Loaded, shuffled_rows


def load(spec: DataSpec) -> Loaded:
    """The digits of ``spec.split``, scaled to [0, 1], in a fixed seeded order."""
    # scikit-learn takes about a second to import: only runs on the digits pay for it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = shuffled_rows(len(digits.images), spec.split)
    x = (digits.images[order] / 16.0)[:, None]
    return x, digits.target[order].astype(np.int64), None, spec
