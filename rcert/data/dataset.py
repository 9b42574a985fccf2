"""A loaded dataset and :func:`load_data`, which dispatches a spec to its loader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rcert.data import arrays, cifar, digits, dsprites, idx
from rcert.data.specs import DataSpec, parse_spec
from rcert.errors import RcertError


def check_limit(limit: int) -> int:
    """``limit``, a count of inputs to keep, if it is at least 1."""
    if limit < 1:
        raise RcertError(f"limit must be at least 1, got {limit}: pass a positive count")
    return limit


@dataclass
class Dataset:
    """Inputs (and labels, when the source has them) of one split of one data source.

    Attributes
    ----------
    x : torch.Tensor
        float32, contiguous; images are (N, C, H, W), plain vectors (N, D). Built-in sources
        lie in ``DATA_RANGE``; float files are passed through unclipped.
    y : numpy.ndarray or None
        int64 labels (N,).
    factors : pandas.DataFrame or None
        dSprites generative factors, one row per image.
    spec : DataSpec
        The spec that rebuilds exactly these rows (an npz's chosen key filled in).
    index : numpy.ndarray
        int64 (N,): each row's position in its split, a stable id to seed per-input randomness.
    """

    x: torch.Tensor
    y: np.ndarray | None
    factors: pd.DataFrame | None
    spec: DataSpec
    index: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, ``x.shape[1:]``."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, limit: int) -> Dataset:
        """Return the first ``limit`` rows (all of them if there are fewer).

        Parameters
        ----------
        limit : int
            Number of rows to keep, at least 1.
        """
        check_limit(limit)
        return Dataset(
            x=self.x[:limit],
            y=None if self.y is None else self.y[:limit],
            factors=None if self.factors is None else self.factors.iloc[:limit],
            spec=self.spec,
            index=self.index[:limit],
        )


def load_data(spec: str | DataSpec) -> Dataset:
    """Build the dataset a spec selects.

    Parameters
    ----------
    spec : str or DataSpec
        A spec string (see :func:`parse_spec`) or a parsed spec.

    Returns
    -------
    Dataset
        The rows of the selected split, in their fixed order.
    """
    if not isinstance(spec, DataSpec):
        spec = parse_spec(spec)
    x, y, factors, spec = _LOADERS[spec.name](spec)
    if len(x) == 0:
        raise RcertError(f"data spec {spec} selects no rows: choose another split or more data")
    return Dataset(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y=y,
        factors=factors,
        spec=spec,
        index=np.arange(len(x), dtype=np.int64),
    )


_LOADERS = {
    "digits": digits.load,
    "dsprites": dsprites.load,
    "mnist": idx.load,
    "fashion-mnist": idx.load,
    "cifar10": cifar.load,
    "file": arrays.load,
}
