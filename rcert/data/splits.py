"""Fixed train/test splits shared by the built-in loaders, and what a loader returns."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from rcert.data.specs import DataSpec

#: What every loader returns: inputs, labels, dSprites factors and the resolved spec.
Loaded: TypeAlias = "tuple[np.ndarray, np.ndarray | None, pd.DataFrame | None, DataSpec]"


def split_slice(n: int, split: str) -> slice:
    """Rows of ``split`` in a shuffled sequence of n: the last 20% (rounded up) are test."""
    n_train = n - math.ceil(n / 5)
    return {"train": slice(0, n_train), "test": slice(n_train, n), "all": slice(0, n)}[split]


def shuffled_rows(n: int, split: str) -> np.ndarray:
    """Positions of ``split``'s rows among ``n``: a fixed shuffle (seed 0), then
    :func:`split_slice`."""
    return np.random.default_rng(0).permutation(n)[split_slice(n, split)]


def parts(split: str) -> tuple[str, ...]:
    return ("train", "test") if split == "all" else (split,)
