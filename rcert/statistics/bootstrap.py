"""Percentile bootstrap confidence intervals of a mean or a median, plain or clustered.

The figures of a study (accuracy drops, margins, tightness) are averages over many rows;
:func:`bootstrap_ci` gives one such average an interval, :func:`bootstrap_table` gives one
per group of a DataFrame. The interval is the percentile bootstrap (Efron and Tibshirani
1993, ch. 13): the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the statistic
over resamples drawn with replacement.

Rows are not always independent. The paper's tables aggregate over input-target pairs
times KL weights ``lambda``: the rows of one pair share the pair's inputs, so they move
together, and resampling them one by one would understate the spread. With ``groups``
(``cluster`` in the table) the bootstrap resamples whole clusters, each drawn cluster
bringing all its rows (the cluster bootstrap, Davison and Hinkley 1997, sec. 3.8), so a
pair's ``lambda`` values always stay together.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rcert.errors import RcertError
from rcert.values import check_seed, choice, positive_int, unit_interval

STATISTICS = ("mean", "median")

# Largest number of elements of one resample block; larger bootstraps run in chunks of
# resamples. The median holds about three such arrays of 8-byte numbers at once, so this
# keeps memory near 100 MB whatever n and n_resamples are.
_MAX_ELEMENTS = 4 * 10**6


def _middle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Midpoint of the two middle order statistics, exact where they are equal.

    ``a / 2 + b / 2`` neither overflows for large finite values nor meets ``inf - inf``
    when one or both are infinite of one sign.
    """
    return np.where(a == b, a, a / 2 + b / 2)


def _percentiles(replicates: np.ndarray, probs: tuple[float, float]) -> list[float]:
    """Linear-interpolation quantiles (numpy's and scipy's default) that stay right with
    ``inf``: between two equal order statistics no interpolation (``inf - inf``) is done."""
    v = np.sort(replicates)
    pos = np.asarray(probs) * (len(v) - 1)
    lo, hi = np.floor(pos).astype(int), np.ceil(pos).astype(int)
    frac = pos - lo
    with np.errstate(invalid="ignore"):
        between = v[lo] + frac * (v[hi] - v[lo])
    return np.where((frac == 0) | (v[lo] == v[hi]), v[lo], between).tolist()


def _check_values(values: Any, statistic: str, what: str) -> np.ndarray:
    """``values`` as a non-empty 1-D float array with no NaN, and no inf unless median."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise RcertError(f"{what} must be numbers; convert them to floats first") from None
    if v.ndim != 1:
        raise RcertError(f"{what} must be 1-D, got shape {v.shape}; pass one column at a time")
    if v.size == 0:
        raise RcertError(f"{what} is empty; a bootstrap needs at least one value")
    if np.isnan(v).any():
        raise RcertError(f"{what} holds {int(np.isnan(v).sum())} NaN value(s); drop or fill "
                         f"them before bootstrapping")
    if statistic == "mean" and np.isinf(v).any():
        raise RcertError(f"{what} holds inf, whose mean is inf or undefined; use "
                         f"statistic='median' or drop the infinite values")
    if (v == np.inf).any() and (v == -np.inf).any():
        raise RcertError(f"{what} holds both +inf and -inf, whose median can be undefined; "
                         f"drop the infinite values of one sign")
    return v


def _cluster_codes(groups: Any, n: int) -> np.ndarray:
    """Integer codes ``0 .. G-1`` of the cluster labels, one per value."""
    labels = np.asarray(groups, dtype=object)
    if labels.ndim != 1 or len(labels) != n:
        raise RcertError(f"groups must be 1-D with one label per value ({n}), got shape "
                         f"{labels.shape}")
    codes, _ = pd.factorize(labels)
    if (codes < 0).any():
        raise RcertError("groups holds missing (NaN/None) labels; give every row a cluster")
    return codes


def _resampled(v: np.ndarray, codes: np.ndarray, statistic: str, draws: np.ndarray
               ) -> np.ndarray:
    """The statistic on each resample; ``draws[b]`` lists the clusters resample ``b`` took.

    A resample is the multiset of rows of its drawn clusters, a row weighted by how often
    its cluster was drawn. The mean is then a ratio of cluster sums; the median the middle
    of the weighted, sorted rows.
    """
    n_clusters = int(codes.max()) + 1
    if statistic == "mean":
        sums = np.bincount(codes, weights=v, minlength=n_clusters)
        sizes = np.bincount(codes, minlength=n_clusters)
        return sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    rows = np.arange(len(draws))[:, None] * n_clusters + draws
    taken = np.bincount(rows.ravel(), minlength=len(draws) * n_clusters)
    taken = taken.reshape(len(draws), n_clusters)
    order = np.argsort(v, kind="stable")
    weights = np.cumsum(taken[:, codes[order]], axis=1)  # rows with rank <= j, per resample
    total = weights[:, -1:]
    # The 0-based k-th smallest row sits at the first position whose running count passes k.
    lower = (weights <= (total - 1) // 2).sum(axis=1)
    upper = (weights <= total // 2).sum(axis=1)
    return _middle(v[order][lower], v[order][upper])


def _interval(v: np.ndarray, codes: np.ndarray, statistic: str, level: float,
              n_resamples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(estimate, low, high) of checked values; ``codes`` are their cluster codes."""
    n_clusters = int(codes.max()) + 1
    chunk = max(1, _MAX_ELEMENTS // max(n_clusters, len(v)))
    replicates = np.concatenate([
        _resampled(v, codes, statistic,
                   rng.integers(0, n_clusters, size=(min(chunk, n_resamples - start),
                                                     n_clusters)))
        for start in range(0, n_resamples, chunk)])
    if statistic == "mean":
        estimate = float(np.mean(v))
    else:
        s = np.sort(v)
        estimate = float(_middle(s[(len(s) - 1) // 2], s[len(s) // 2]))
    low, high = _percentiles(replicates, ((1 - level) / 2, (1 + level) / 2))
    return estimate, float(low), float(high)


def bootstrap_ci(values: np.ndarray, statistic: str = "mean", *, level: float = 0.95,
                 n_resamples: int = 2000, seed: int = 0, groups: np.ndarray | None = None
                 ) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of the mean or median of ``values``.

    Parameters
    ----------
    values
        1-D numbers. NaN is refused (drop or fill it first: a silent drop would change
        what is averaged). ``inf`` is allowed for the median only, where it is an ordinary
        large value (an unbroken input's margin); the mean of values holding ``inf`` is
        refused, as are values holding both ``+inf`` and ``-inf``.
    statistic
        ``"mean"`` or ``"median"`` (the midpoint of the two middle values for even counts).
    level
        Confidence level, strictly between 0 and 1.
    n_resamples
        Bootstrap resamples, drawn as one index matrix (in chunks when large).
    seed
        Seeds ``np.random.default_rng``; the same seed gives the same interval.
    groups
        Optional cluster label per value: resample whole clusters, keeping each cluster's
        rows together (the module docstring says why: pairs times ``lambda``).

    Returns
    -------
    tuple of float
        ``(estimate, low, high)``: the statistic on all values, and the ``(1 - level) / 2``
        and ``(1 + level) / 2`` percentiles of its resampled values. A single value (or a
        single cluster) gives ``low = high = estimate``: every resample is the sample
        itself, so the interval is degenerate and says nothing of uncertainty; it is
        returned rather than refused so that a table with a lone row still renders.
    """
    statistic = choice(statistic, "statistic", STATISTICS)
    level = unit_interval(level, "level")
    n_resamples = positive_int(n_resamples, "n_resamples")
    seed = check_seed(seed)
    v = _check_values(values, statistic, "values")
    codes = np.arange(len(v)) if groups is None else _cluster_codes(groups, len(v))
    return _interval(v, codes, statistic, level, n_resamples, np.random.default_rng(seed))


def _group_seed(seed: int, key: Hashable) -> np.random.SeedSequence:
    """A group's own seed: ``seed`` and a stable hash of its key, so that a group's interval
    does not depend on which other groups the table holds (nor on PYTHONHASHSEED)."""
    parts = key if isinstance(key, tuple) else (key,)
    # numpy scalars print differently across numpy versions; plain Python values do not.
    plain = tuple(p.item() if isinstance(p, np.generic) else p for p in parts)
    return np.random.SeedSequence([seed, zlib.crc32(repr(plain).encode())])


def _check_table(df: pd.DataFrame, value_columns: Sequence[str], by: Sequence[str],
                 cluster: str | None) -> None:
    """Refuse a table bootstrap with missing columns, no rows or no value column."""
    if not isinstance(df, pd.DataFrame):
        raise RcertError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if isinstance(value_columns, str) or isinstance(by, str):
        raise RcertError("value_columns and by must be lists of column names; wrap a single "
                         "name in a list")
    if not value_columns:
        raise RcertError("value_columns is empty; name at least one column to bootstrap")
    named = [*value_columns, *by, *([] if cluster is None else [cluster])]
    missing = [c for c in named if c not in df.columns]
    if missing:
        raise RcertError(f"no column(s) {missing} in the table; it has {list(df.columns)}")
    if len(df) == 0:
        raise RcertError("the table has no rows; a bootstrap needs at least one")


def bootstrap_table(df: pd.DataFrame, value_columns: Sequence[str], by: Sequence[str], *,
                    statistic: str = "mean", level: float = 0.95, n_resamples: int = 2000,
                    seed: int = 0, cluster: str | None = None) -> pd.DataFrame:
    """Bootstrap intervals of several columns per group of a table (:func:`bootstrap_ci`).

    Parameters
    ----------
    df
        The rows, e.g. one per input-target pair and ``lambda``.
    value_columns
        Columns to summarise; NaN in any of them is refused.
    by
        Columns whose distinct values (NaN included) make the groups; an empty list makes
        the whole table one group.
    statistic, level, n_resamples
        As in :func:`bootstrap_ci`.
    seed
        Each group draws from ``SeedSequence([seed, crc32(repr(key))])``, so a group's
        row is the same whatever other groups the table holds. All value columns of a
        group are computed on the same resamples.
    cluster
        Optional column of cluster labels (e.g. the pair id): resample whole clusters
        within each group.

    Returns
    -------
    pandas.DataFrame
        One row per group, sorted by ``by``: the ``by`` columns, then per value column
        ``<col>`` (the estimate), ``<col>_low`` and ``<col>_high``, then ``count`` (rows).
    """
    statistic = choice(statistic, "statistic", STATISTICS)
    level = unit_interval(level, "level")
    n_resamples = positive_int(n_resamples, "n_resamples")
    seed = check_seed(seed)
    _check_table(df, value_columns, by, cluster)
    by, value_columns = list(by), list(value_columns)
    parts = df.groupby(by, sort=True, dropna=False) if by else [((), df)]
    rows = []
    for key, part in parts:
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        codes = (np.arange(len(part)) if cluster is None
                 else _cluster_codes(part[cluster].to_numpy(), len(part)))
        for col in value_columns:
            v = _check_values(part[col].to_numpy(), statistic, f"column {col!r} of group {key}")
            # A fresh generator per column: the same draws, so the columns share resamples.
            rng = np.random.default_rng(_group_seed(seed, key))
            row[col], row[f"{col}_low"], row[f"{col}_high"] = _interval(
                v, codes, statistic, level, n_resamples, rng)
        row["count"] = len(part)
        rows.append(row)
    columns = [*by, *(f"{c}{s}" for c in value_columns for s in ("", "_low", "_high")), "count"]
    return pd.DataFrame(rows, columns=columns)
