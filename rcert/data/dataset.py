"""A loaded dataset and :func:`load_data`, which dispatches a spec to its loader."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from rcert.data import arrays, cifar, digits, dsprites, idx, images, swissroll
from rcert.data.specs import DATA_RANGE, DataSpec, parse_spec
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
        and image folders lie in :attr:`data_range`; float files are passed through unclipped
        unless the spec sets ``range``.
    y : numpy.ndarray or None
        int64 labels (N,).
    factors : pandas.DataFrame or None
        One row per input: dSprites generative factors; the Swiss roll's ``t`` and
        ``height``; an image folder's ``file`` (relative path) and ``label`` (class name).
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
    def data_range(self) -> tuple[float, float]:
        """The interval the inputs are scaled to, ``spec.data_range``: ``(0.0, 1.0)``, or
        ``(-1.0, 1.0)`` for a spec with ``range=-1,1``."""
        return self.spec.data_range

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
        The rows of the selected split, in their fixed order, mapped affinely from [0, 1]
        onto the spec's ``range``.
    """
    if not isinstance(spec, DataSpec):
        spec = parse_spec(spec)
    x, y, factors, resolved = _LOADERS[spec.name](spec)
    # A loader may rewrite the options it resolves (an npz's key); the range stays as asked.
    resolved = replace(resolved, options=(*resolved.options, *_range_item(spec)))
    if len(x) == 0:
        raise RcertError(f"data spec {resolved} selects no rows: choose another split or more "
                         f"data")
    x = _to_range(np.ascontiguousarray(x, dtype=np.float32), spec)
    return Dataset(
        x=torch.from_numpy(x),
        y=y,
        factors=factors,
        spec=resolved,
        index=np.arange(len(x), dtype=np.int64),
    )


def _range_item(spec: DataSpec) -> tuple[tuple[str, str], ...]:
    return tuple(item for item in spec.options if item[0] == "range")


def _to_range(x: np.ndarray, spec: DataSpec) -> np.ndarray:
    """``x`` (loaded in [0, 1]) mapped onto ``spec.data_range``: ``low + (high - low) * x``,
    in place where it can be. A file's values must lie in [0, 1] to be mapped."""
    low, high = spec.data_range
    if (low, high) == DATA_RANGE:
        return x
    if spec.name == "file":
        lowest, highest = float(x.min()), float(x.max())
        if lowest < 0 or highest > 1:
            raise RcertError(
                f"data {spec.path} holds values in [{lowest:g}, {highest:g}], outside [0, 1], "
                f"but range={low:g},{high:g} maps [0, 1] onto [{low:g}, {high:g}]: store the "
                f"data in [0, 1] (or as 8-bit pixels), or drop range= to use them as stored")
    if not x.flags.writeable:
        x = x.copy()
    x *= np.float32(high - low)
    x += np.float32(low)
    return x


_LOADERS = {
    "digits": digits.load,
    "dsprites": dsprites.load,
    "mnist": idx.load,
    "fashion-mnist": idx.load,
    "cifar10": cifar.load,
    "images": images.load,
    "swissroll": swissroll.load,
    "file": arrays.load,
}
