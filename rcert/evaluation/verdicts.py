"""The bound against the attack, per input: violations and tightness (SPEC section 6).

:func:`attack_certificates` runs the empirical margin on every certified input and
:func:`judge` compares it with ``bound_certified``:

* an input is a *candidate* when the attack succeeded below its certified bound
  (``margin_empirical < bound_certified``; ``margin_empirical = 0`` counts: the input is not
  r-robust even unperturbed, yet its certificate says it is);
* a candidate is a *violation* when fresh draws, independent of the ones that chose the
  successful radius, confirm it: the one-sided p-value ``p_value`` of "P(||Delta|| <= r) > m
  at the attack's perturbation" is rejected. With ``correction="holm"`` (the default) the
  rejections control the family-wise error over all inputs of the run at ``alpha`` (Holm's
  step-down), so a ``max_violations = 0`` gate fails by chance with probability at most
  ``alpha``, whatever the number of inputs; with ``"none"`` each input is tested at
  ``alpha``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import checks
from rcert.evaluation.audit import audit_columns, audit_subset, check_strength
from rcert.evaluation.empirical import empirical_margin
from rcert.settings import AttackConfig, CertifyConfig, RunConfig

#: Columns that :func:`attack_certificates` adds to a certify DataFrame.
EMPIRICAL_COLUMNS = ("margin_empirical", "margin_bracket_lo", "margin_bracket_hi", "p_check",
                     "p_check_upper", "k_verify", "p_verify", "p_verify_upper", "p_value",
                     "violation", "tightness")


def holm(p_values: np.ndarray, alpha: float, family: int | None = None) -> np.ndarray:
    """Holm's step-down rejections at family-wise level ``alpha``.

    ``p_values`` may hold NaN for hypotheses that were not tested (never rejected).
    ``family`` is the number of hypotheses in the family (default: all entries): sorted
    ascending, the ``i``-th smallest p-value (0-based) is rejected while every p-value up
    to it is at most ``alpha / (family - i)``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    family = p.size if family is None else family
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    thresholds = alpha / (family - np.arange(order.size))
    passing = p[order] <= thresholds
    n_reject = order.size if passing.all() else int(np.argmin(passing))
    rejected = np.zeros(p.size, dtype=bool)
    rejected[order[:n_reject]] = True
    return rejected


def judge(df: pd.DataFrame, *, alpha: float, correction: str,
          family: int | None = None) -> pd.DataFrame:
    """Add ``violation`` and ``tightness`` to a DataFrame with certificates and attack columns.

    ``tightness`` is ``bound_certified / margin_empirical`` where the attack found a positive
    finite margin (0 for abstentions), NaN where no attack succeeded (an unbroken certificate
    has no gap to measure) and where ``margin_empirical = 0`` (judged as a violation
    candidate instead). ``family`` is the number of inputs of the run (default: the rows).
    A model without ``bound_certified`` (a family no first-order certificate covers,
    docs/hierarchical.md) has no bound to violate: ``df`` comes back without both columns.
    """
    if "bound_certified" not in df.columns:
        return df.copy()
    certified = df["bound_certified"].to_numpy(dtype=np.float64)
    found = df["margin_empirical"].to_numpy(dtype=np.float64)
    p_value = df["p_value"].to_numpy(dtype=np.float64)
    candidate = (found < certified) & ~np.isnan(p_value)
    tested = np.where(candidate, p_value, np.nan)
    if correction == "holm":
        rejected = holm(tested, alpha, family=family or len(df))
    else:
        rejected = np.nan_to_num(tested, nan=1.0) <= alpha
    out = df.copy()
    out["violation"] = candidate & rejected
    with np.errstate(divide="ignore", invalid="ignore"):
        measurable = np.isfinite(found) & (found > 0)
        out["tightness"] = np.where(measurable, np.where(certified == 0, 0.0, certified / found),
                                    np.nan)
    return out


def check_detectable(n_check: int, m: float, alpha: float, n_inputs: int,
                     correction: str) -> None:
    """Warn when even ``k = 0`` successes in ``n_check`` draws could not reject (see module)."""
    smallest = (1.0 - m) ** n_check  # binom.cdf(0, n_check, m), the smallest p-value
    level = alpha / n_inputs if correction == "holm" else alpha
    if smallest > level:
        needed = math.ceil(math.log(level) / math.log(1.0 - m))
        checks.warn("undetectable-violation",
                    f"n_check={n_check} is too small for any violation to be detected at "
                    f"level alpha={alpha:g} over {n_inputs} inputs ({correction}); "
                    f"use n_check >= {needed}")


def start_radii(df: pd.DataFrame) -> np.ndarray:
    """The empirical margin's first radius per input: twice ``bound_whitened``."""
    # Twice the tightest certified bound is a good first radius: attacks succeed near the
    # true margin, which lies above every sound bound.
    if "bound_whitened" not in df.columns:  # no certificate to start from: the fallback
        return np.ones(len(df))
    start = 2 * df["bound_whitened"].to_numpy(dtype=np.float64)
    start = np.where(np.isfinite(start) & (start > 0), start, np.nan)
    fallback = float(np.nanmedian(start)) if np.isfinite(start).any() else 1.0
    return np.where(np.isnan(start), fallback, start)


def attack_certificates(df: pd.DataFrame, model: nn.Module, x: torch.Tensor,
                        certify: CertifyConfig, attack: AttackConfig, *,
                        index: np.ndarray, run: RunConfig, family: int | None = None,
                        audited: np.ndarray | None = None) -> pd.DataFrame:
    """Attack every certificate of ``df`` (the rows of ``x``) and judge it (SPEC section 6).

    Adds :data:`EMPIRICAL_COLUMNS`, and ``margin_empirical_audit`` and ``p_value_audit``
    when ``attack.audit`` is positive (:mod:`rcert.evaluation.audit`);
    ``df.attrs["config"]["empirical"]`` records the attack. When ``df`` is one chunk of a
    run, ``family`` is the number of inputs of the whole run and ``audited`` its audited ids
    (:func:`~rcert.evaluation.audit.audit_subset` over all of them); the caller then judges
    the whole run again with :func:`judge` and
    :func:`~rcert.evaluation.audit.check_strength`. Otherwise the audited ids are chosen
    from ``index`` and checked here.
    """
    whole = family is None
    family = family or len(df)
    index = np.asarray(index)
    check_detectable(attack.n_check, certify.m, certify.alpha, family, attack.correction)
    start = start_radii(df)
    emp = empirical_margin(model, x, certify, attack, index=index, start=start, run=run)
    out = df.copy()
    for col in EMPIRICAL_COLUMNS[:-2]:
        out[col] = emp[col].to_numpy()
    if attack.audit:
        chosen = audit_subset(index, certify.seed, attack.audit) if audited is None else audited
        for col, values in audit_columns(model, x, certify, attack, index=index, start=start,
                                         run=run, audited=chosen, weak=out).items():
            out[col] = values
    out = judge(out, alpha=certify.alpha, correction=attack.correction, family=family)
    out.attrs["config"] = {**df.attrs.get("config", {}), "empirical": emp.attrs["config"]}
    if whole:
        check_strength(out, certify, attack)
    return out
