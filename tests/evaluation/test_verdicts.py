"""Verdicts of the bound against the attack (``rcert.evaluation.verdicts``): Holm's step-down,
``judge`` (violation, tightness) and the detectability check of ``n_check``."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcert.checks import ReliabilityWarning
from rcert.evaluation.verdicts import check_detectable, holm, judge


def holm_brute_force(p_values, alpha: float, family: int | None = None) -> np.ndarray:
    """Holm's step-down from its definition: sort the tested p-values ascending and reject
    ``H_(1..k)`` for the largest ``k`` with ``p_(i) <= alpha / (family - i + 1)`` for every
    ``i <= k`` (1-based); NaN is untested and never rejected."""
    p = [float(v) for v in p_values]
    family = len(p) if family is None else family
    tested = sorted((v, j) for j, v in enumerate(p) if not math.isnan(v))
    k = 0
    for i, (value, _) in enumerate(tested, start=1):
        if value <= alpha / (family - i + 1):
            k = i
        else:
            break
    rejected = [False] * len(p)
    for _, j in tested[:k]:
        rejected[j] = True
    return np.array(rejected, dtype=bool)


ALPHAS = (0.05, 0.001, 0.2)


@st.composite
def p_value_problems(draw):
    alpha = draw(st.sampled_from(ALPHAS))
    n = draw(st.integers(0, 25))
    extra = draw(st.integers(0, 10))
    family = n + extra
    # Values at and near Holm's thresholds, NaNs, ties and the ends of [0, 1].
    special = [alpha / k for k in range(1, family + 2)]
    element = st.one_of(
        st.floats(0.0, 1.0),
        st.floats(0.0, alpha),
        st.sampled_from([math.nan, 0.0, 1.0, *special]),
        st.sampled_from(special).map(lambda t: math.nextafter(t, 1.0)),
    )
    p = draw(st.lists(element, min_size=n, max_size=n))
    return np.array(p, dtype=np.float64), alpha, draw(st.sampled_from([None, family]))


@given(p_value_problems())
def test_holm_matches_its_definition(problem):
    p, alpha, family = problem
    got = holm(p, alpha, family=family)
    assert got.dtype == bool and got.shape == p.shape
    np.testing.assert_array_equal(got, holm_brute_force(p, alpha, family))
    assert not got[np.isnan(p)].any()


def test_holm_by_hand():
    # Sorted: 0.001 <= 0.05/4, 0.015 <= 0.05/3, 0.03 > 0.05/2 stops; 0.04 is not rejected.
    p = np.array([0.04, 0.001, np.nan, 0.03, 0.015])
    np.testing.assert_array_equal(holm(p, 0.05, family=4), [False, True, False, False, True])
    # The family counts the untested entry by default (5): 0.015 > 0.05/4 stops earlier.
    np.testing.assert_array_equal(holm(p, 0.05), [False, True, False, False, False])
    assert not holm(np.array([]), 0.05).any()


def test_holm_controls_the_familywise_error_and_per_input_testing_does_not():
    runs, n, alpha = 4000, 50, 0.05
    p = np.random.default_rng(20210).uniform(size=(runs, n))  # every null true
    any_holm = np.array([holm(row, alpha).any() for row in p])
    any_none = (p <= alpha).any(axis=1)
    se = math.sqrt(alpha * (1 - alpha) / runs)
    assert any_holm.mean() <= alpha + 3 * se
    expected_none = 1 - (1 - alpha) ** n  # about 0.92
    assert abs(any_none.mean() - expected_none) < 5 * math.sqrt(expected_none / runs)
    assert any_none.mean() > 10 * alpha
    # Through judge: every input a candidate (attack below the bound), p-values uniform.
    base = pd.DataFrame({"bound_certified": np.ones(n), "margin_empirical": np.full(n, 0.5)})
    for correction, want in (("holm", any_holm), ("none", any_none)):
        got = [judge(base.assign(p_value=row), alpha=alpha, correction=correction)
               ["violation"].any() for row in p[:300]]
        np.testing.assert_array_equal(got, want[:300])


# --- judge ------------------------------------------------------------------------------------

ALPHA = 0.01


def _rows(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["bound_certified", "margin_empirical", "p_value"])


def test_judge_cases_by_hand():
    nan, inf = math.nan, math.inf
    df = _rows([
        (1.0, 0.5, 1e-9),   # 0: candidate, rejected -> violation, tightness 2
        (0.8, 0.0, 1e-12),  # 1: not robust even unperturbed -> violation, tightness NaN
        (0.7, inf, nan),    # 2: no attack succeeded -> no violation, tightness NaN
        (0.7, inf, 1e-12),  # 3: inf margin is never a candidate, whatever its p-value
        (0.0, 0.3, 0.5),    # 4: abstention (bound 0) -> tightness 0, no violation
        (0.2, 0.4, 1e-12),  # 5: attack above the bound: not a candidate, tightness 0.5
        (1.0, 0.5, nan),    # 6: candidate never checked -> no violation
        (0.6, 0.3, 0.9),    # 7: candidate not confirmed -> no violation, tightness 2
    ])
    for correction in ("holm", "none"):
        out = judge(df, alpha=ALPHA, correction=correction)
        assert out["violation"].dtype == bool
        assert out["violation"].tolist() == [True, True, False, False, False, False, False,
                                             False]
        want = [2.0, nan, nan, nan, 0.0, 0.5, 2.0, 2.0]
        np.testing.assert_allclose(out["tightness"].to_numpy(), want)
        # judge adds columns and leaves the input alone.
        assert list(out.columns[:3]) == list(df.columns)
        assert "violation" not in df.columns


def test_a_p_value_that_passes_alone_but_not_under_holm():
    n = 5
    # Two clear violations, then one whose p-value lies between Holm's third threshold
    # alpha / (n - 2) and the per-input level alpha.
    holm_third = ALPHA / (n - 2)
    p_mid = (holm_third + ALPHA) / 2
    assert holm_third < p_mid <= ALPHA
    df = _rows([(1.0, 0.5, 1e-9), (1.0, 0.5, 2e-9), (1.0, 0.5, p_mid),
                (1.0, 2.0, 1e-9), (0.0, 1.0, 1e-9)])
    none = judge(df, alpha=ALPHA, correction="none")["violation"].tolist()
    holm_ = judge(df, alpha=ALPHA, correction="holm")["violation"].tolist()
    assert none == [True, True, True, False, False]
    assert holm_ == [True, True, False, False, False]
    # Only candidates are tested; the two non-candidates still count in the family.
    tested = np.where(df.margin_empirical < df.bound_certified, df.p_value, np.nan)
    assert holm_ == holm_brute_force(tested, ALPHA, n).tolist()


def test_a_larger_family_makes_holm_stricter():
    n, family = 3, 30
    p_mid = math.sqrt((ALPHA / n) * (ALPHA / family))  # between alpha/family and alpha/n
    assert ALPHA / family < p_mid < ALPHA / n
    df = _rows([(1.0, 0.5, p_mid), (1.0, 0.5, 0.5), (1.0, 0.5, 0.7)])
    assert judge(df, alpha=ALPHA, correction="holm")["violation"].tolist() \
        == [True, False, False]
    assert judge(df, alpha=ALPHA, correction="holm", family=n)["violation"].tolist() \
        == [True, False, False]
    assert judge(df, alpha=ALPHA, correction="holm", family=family)["violation"].tolist() \
        == [False, False, False]
    # The per-input test does not depend on the family.
    assert judge(df, alpha=ALPHA, correction="none", family=family)["violation"].tolist() \
        == [True, False, False]


@given(p_value_problems(), st.integers(0, 2**32 - 1))
def test_judge_is_holm_over_the_candidates(problem, seed):
    p, alpha, family = problem
    rng = np.random.default_rng(seed)
    bound = rng.choice([0.0, 0.5, 1.0], size=p.size)
    found = rng.choice([0.0, 0.25, 0.75, 2.0, np.inf], size=p.size)
    df = pd.DataFrame({"bound_certified": bound, "margin_empirical": found, "p_value": p})
    tested = np.where(found < bound, p, np.nan)
    out = judge(df, alpha=alpha, correction="holm", family=family)
    np.testing.assert_array_equal(out["violation"].to_numpy(),
                                  holm_brute_force(tested, alpha, family or p.size))
    out = judge(df, alpha=alpha, correction="none", family=family)
    np.testing.assert_array_equal(out["violation"].to_numpy(),
                                  np.nan_to_num(tested, nan=2.0) <= alpha)


# --- check_detectable ---------------------------------------------------------------------------


def _undetectable(n_check, m, alpha, n_inputs, correction) -> list[ReliabilityWarning]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_detectable(n_check, m, alpha, n_inputs, correction)
    found = [w.message for w in caught if isinstance(w.message, ReliabilityWarning)]
    assert all(w.code == "undetectable-violation" for w in found)
    return found


def _suggested(message: str) -> int:
    return int(re.findall(r">=\s*(\d+)", message)[-1])


def _detectable(n_check, m, level) -> bool:
    # The smallest p-value n_check draws can give is P(k = 0) = (1 - m)^n_check.
    return (1 - m) ** n_check <= level


@pytest.mark.parametrize("n_inputs", [1, 6, 50, 1000])
@pytest.mark.parametrize("correction", ["holm", "none"])
def test_undetectable_violations_warn_with_the_smallest_sufficient_n_check(n_inputs, correction):
    m, alpha = 0.5, 0.001
    level = alpha / n_inputs if correction == "holm" else alpha
    n_check = 5
    assert not _detectable(n_check, m, level)
    with pytest.warns(ReliabilityWarning, match="undetectable-violation") as record:
        check_detectable(n_check, m, alpha, n_inputs, correction)
    [w] = [w.message for w in record if isinstance(w.message, ReliabilityWarning)]
    assert w.code == "undetectable-violation"
    suggested = _suggested(w.message)
    assert _detectable(suggested, m, level)
    assert not _detectable(suggested - 1, m, level)
    assert _undetectable(suggested, m, alpha, n_inputs, correction) == []
    assert len(_undetectable(suggested - 1, m, alpha, n_inputs, correction)) == 1


@pytest.mark.parametrize(("n_check", "n_inputs", "correction"),
                         [(200, 1, "holm"), (200, 50, "holm"), (10, 1, "none"),
                          (40, 10**6, "holm")])
def test_no_warning_when_a_violation_is_detectable(n_check, n_inputs, correction):
    assert _undetectable(n_check, 0.5, 0.001, n_inputs, correction) == []


@given(m=st.floats(0.05, 0.95), alpha=st.sampled_from([0.1, 0.01, 0.001, 2.0**-10]),
       n_inputs=st.integers(1, 10_000), correction=st.sampled_from(["holm", "none"]),
       n_check=st.integers(1, 400))
def test_check_detectable_warns_exactly_when_undetectable(m, alpha, n_inputs, correction,
                                                          n_check):
    level = alpha / n_inputs if correction == "holm" else alpha
    found = _undetectable(n_check, m, alpha, n_inputs, correction)
    assert len(found) == (0 if _detectable(n_check, m, level) else 1)
    if found:
        suggested = _suggested(found[0].message)
        assert _detectable(suggested, m, level)
        assert not _detectable(suggested - 1, m, level)
