"""Binomial confidence bounds on ``p0`` and the ranks of ``r_min`` (SPEC section 3).

Plain numpy functions over arrays of inputs: the one-sided Clopper-Pearson bounds, and the
order-statistic ranks that turn a sorted sample of ``||Delta||`` into ``r_min`` and its
certified upper bound ``r_min_upper``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import stats


def clopper_pearson_lower(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower confidence bound on a binomial proportion.

    The ``alpha`` quantile of ``Beta(k, n - k + 1)``, and 0 when ``k = 0`` (SPEC section 3).
    It is below the true ``p0`` with probability at least ``1 - alpha``.
    """
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lower = stats.beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, lower, 0.0)


def clopper_pearson_upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound: the ``1 - alpha`` quantile of ``Beta(k + 1, n - k)``.

    Above the true proportion with probability at least ``1 - alpha``; 1 when ``k = n``.
    """
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        upper = stats.beta.ppf(1 - alpha, k + 1, n - k)
    return np.where(k < n, upper, 1.0)


def quantile_rank(n: int, m: float) -> int:
    """1-based rank ``j`` with ``p_hat(r) > m`` iff ``r >= X_(j)``: ``j = floor(m n) + 1``.

    With ``k(r) = #{||Delta_i|| <= r}``, ``k(r)/n > m`` iff ``k(r) >= floor(m n) + 1`` iff
    the ``j``-th smallest distance is ``<= r``. So ``X_(j)`` is the empirical ``r_min``
    (SPEC section 3), the smallest ``r`` at which the input is empirically r-robust.

    ``j`` is the smallest integer with ``j / n > m`` exactly. ``m`` is read as the decimal
    the user wrote (``0.29`` is ``29/100``): in floating point ``0.29 * 100`` is
    ``28.999...``, which would give a rank one too low.
    """
    exact = Fraction(repr(float(m)))
    return math.floor(exact * int(n)) + 1


def certified_rank(n: int, m: float, alpha: float) -> int | None:
    """Smallest 1-based rank ``k*`` with ``clopper_pearson_lower(k*, n, alpha) > m``, or None.

    ``p_lower(r) > m`` iff ``k(r) >= k*`` iff ``X_(k*) <= r``, so ``X_(k*)`` is the smallest
    ``r`` at which the input is certified r-robust. It is also the distribution-free
    order-statistic upper confidence bound on the ``m``-quantile of ``||Delta||``: the
    Clopper-Pearson interval and the binomial order-statistic bound are the same test,
    so ``P(X_(k*) >= r_min) >= 1 - alpha``. None when even ``k = n`` cannot certify
    (``alpha ** (1/n) <= m``: too few samples).
    """
    # The bound grows with k, so bisect: O(log n) evaluations, no O(n) array whatever n is.
    lo, hi = 1, n + 1  # invariant: bound(k) <= m for k < lo, bound(k) > m for k >= hi
    while lo < hi:
        mid = (lo + hi) // 2
        if clopper_pearson_lower(np.array([mid]), n, alpha)[0] > m:
            hi = mid
        else:
            lo = mid + 1
    return None if lo > n else lo
