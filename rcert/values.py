"""Checks of single values: the one rule each for seeds, weights, counts and choices.

Every settings dataclass (:mod:`rcert.settings`) and every function that takes such a value
uses these, so a bad value reads the same wherever it is given: one
:class:`~rcert.errors.RcertError` line naming it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from rcert.errors import RcertError

#: Seeds are integers in ``[0, 2**63)``: every random stream in rcert (the counter-based
#: noise and torch generators in training) is keyed exactly by them, so a larger value would
#: silently alias a smaller one.
SEED_LIMIT = 2**63


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer in ``[0, 2**63)`` (numpy integers too), the one rule for all of rcert."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 0 <= value < SEED_LIMIT:
        raise RcertError(f"{name} must be an integer in [0, 2**63), got {value!r}")
    return int(value)


def check_beta(value: Any, name: str = "beta") -> float:
    """A KL weight: a finite number > 0, the one rule for training and objectives.

    ``beta = 0`` is refused: it drops the prior altogether, and the encoder's sigma, which
    every certificate divides by, is then no longer shaped by anything.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise RcertError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, else an RcertError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise RcertError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an int >= 0, else an RcertError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise RcertError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def positive_float(value: Any, name: str, hint: str = "") -> float:
    """``value`` as a finite float > 0, else an RcertError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise RcertError(f"{name} must be a finite number > 0, got {value!r}{hint}")
    return float(value)


def nonnegative_float(value: Any, name: str) -> float:
    """``value`` as a finite float >= 0, else an RcertError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise RcertError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def unit_interval(value: Any, name: str) -> float:
    """``value`` as a float strictly between 0 and 1, else an RcertError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise RcertError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def choice(value: Any, name: str, options: Sequence[str]) -> Any:
    """``value`` if it is one of ``options``, else an RcertError listing them."""
    if value not in options:
        raise RcertError(f"unknown {name} {value!r}; choose one of: {', '.join(options)}")
    return value
