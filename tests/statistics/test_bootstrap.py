import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rcert.errors import RcertError
from rcert.statistics import bootstrap
from rcert.statistics.bootstrap import bootstrap_ci, bootstrap_table


def test_percentile_interval_covers_the_true_mean_at_its_level():
    rng = np.random.default_rng(1)
    samples = rng.normal(3.0, 2.0, size=(400, 50))
    covered = [low <= 3.0 <= high for _, low, high in
               (bootstrap_ci(s, n_resamples=1000, seed=i) for i, s in enumerate(samples))]
    assert 0.92 <= np.mean(covered) <= 0.98


@pytest.mark.parametrize(("statistic", "function"), [("mean", np.mean), ("median", np.median)])
def test_matches_scipy_percentile_bootstrap_within_monte_carlo_error(statistic, function):
    x = np.random.default_rng(2).normal(size=60)
    est, low, high = bootstrap_ci(x, statistic, n_resamples=20000, seed=3)
    ref = stats.bootstrap((x,), function, method="percentile", n_resamples=20000,
                          confidence_level=0.95, rng=np.random.default_rng(4))
    assert est == pytest.approx(function(x))
    # Endpoints of 20000 resamples wander by about 0.005 here (the median's by more).
    tol = 0.03 if statistic == "mean" else 0.06
    assert low == pytest.approx(ref.confidence_interval.low, abs=tol)
    assert high == pytest.approx(ref.confidence_interval.high, abs=tol)


def _brute_force(v, groups, statistic, level, n_resamples, seed):
    """The documented scheme, one resample at a time: draw clusters, pool their rows."""
    labels = np.arange(len(v)) if groups is None else pd.factorize(np.asarray(groups))[0]
    n_clusters = labels.max() + 1
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(n_resamples, n_clusters))
    function = np.mean if statistic == "mean" else np.median
    reps = [function(np.concatenate([v[labels == c] for c in row])) for row in draws]
    q = np.percentile(reps, [50 * (1 - level), 50 * (1 + level)])
    return function(v), q[0], q[1]


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.integers(-5, 5), min_size=1, max_size=12),
       statistic=st.sampled_from(bootstrap.STATISTICS), clustered=st.booleans(),
       n_clusters=st.integers(1, 4), level=st.sampled_from([0.5, 0.8, 0.95]))
def test_vectorised_resampling_equals_one_resample_at_a_time(values, statistic, clustered,
                                                             n_clusters, level):
    v = np.asarray(values, dtype=float) / 2
    groups = np.arange(len(v)) % n_clusters if clustered else None
    got = bootstrap_ci(v, statistic, level=level, n_resamples=50, seed=7, groups=groups)
    assert got == pytest.approx(_brute_force(v, groups, statistic, level, 50, 7), abs=1e-12)


def test_same_seed_same_interval_and_another_seed_another():
    x = np.random.default_rng(5).exponential(size=40)
    assert bootstrap_ci(x, seed=11) == bootstrap_ci(x, seed=11)
    assert bootstrap_ci(x, seed=11) != bootstrap_ci(x, seed=12)


def test_chunked_resampling_is_deterministic_and_agrees(monkeypatch):
    x = np.random.default_rng(6).normal(size=80)
    whole = bootstrap_ci(x, "median", n_resamples=4000, seed=1)
    monkeypatch.setattr(bootstrap, "_MAX_ELEMENTS", 1000)  # chunks of 12 resamples
    chunked = bootstrap_ci(x, "median", n_resamples=4000, seed=1)
    assert chunked == bootstrap_ci(x, "median", n_resamples=4000, seed=1)
    assert chunked == pytest.approx(whole, abs=0.1)


def test_a_single_value_gives_a_degenerate_interval():
    assert bootstrap_ci(np.array([2.5])) == (2.5, 2.5, 2.5)
    assert bootstrap_ci(np.array([1.0, 4.0]), groups=np.array(["a", "a"])) == (2.5, 2.5, 2.5)


def test_median_with_infinite_values():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.inf, np.inf])
    est, low, high = bootstrap_ci(x, "median", n_resamples=3000, seed=0)
    assert est == 4.0 and 1.0 <= low <= 4.0 and high == np.inf
    half = np.array([1.0, 2.0, np.inf, np.inf])
    est, low, high = bootstrap_ci(half, "median", seed=0)
    assert est == np.inf and high == np.inf and math.isfinite(low)
    assert not any(math.isnan(q) for q in (est, low, high))
    assert bootstrap_ci(np.array([-np.inf, 0.0, 1.0]), "median", seed=0)[0] == 0.0


def test_cluster_bootstrap_is_wider_for_clustered_data():
    rng = np.random.default_rng(8)
    centres = rng.normal(0, 1, size=20)
    values = np.repeat(centres, 10) + rng.normal(0, 0.01, size=200)
    pairs = np.repeat(np.arange(20), 10)
    _, lo_naive, hi_naive = bootstrap_ci(values, seed=0)
    _, lo_cluster, hi_cluster = bootstrap_ci(values, seed=0, groups=pairs)
    assert hi_cluster - lo_cluster >= 2 * (hi_naive - lo_naive)


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"model": np.repeat(["a", "b"], 30), "lam": np.tile([0.1, 1.0], 30),
                         "pair": np.tile(np.repeat(np.arange(15), 2), 2),
                         "drop": rng.normal(size=60), "margin": rng.exponential(size=60)})


def test_table_layout_and_estimates():
    df = _frame()
    table = bootstrap_table(df, ["drop", "margin"], ["model", "lam"], n_resamples=500,
                            cluster="pair")
    assert list(table.columns) == ["model", "lam", "drop", "drop_low", "drop_high", "margin",
                                   "margin_low", "margin_high", "count"]
    assert table[["model", "lam"]].values.tolist() == [["a", 0.1], ["a", 1.0], ["b", 0.1],
                                                       ["b", 1.0]]
    assert (table["count"] == 15).all()
    means = df.groupby(["model", "lam"])["drop"].mean().to_numpy()
    assert np.allclose(table["drop"], means)
    assert (table["drop_low"] <= table["drop"]).all()
    assert (table["drop"] <= table["drop_high"]).all()
    whole = bootstrap_table(df, ["drop"], [], n_resamples=200)
    assert list(whole.columns) == ["drop", "drop_low", "drop_high", "count"]
    assert whole["count"].tolist() == [60]


def test_a_groups_row_does_not_depend_on_other_groups():
    df = _frame()
    alone = bootstrap_table(df[df["model"] == "a"], ["drop"], ["model"], n_resamples=300, seed=4)
    both = bootstrap_table(df, ["drop"], ["model"], n_resamples=300, seed=4)
    pd.testing.assert_frame_equal(alone, both.iloc[:1])
    other = df.assign(model=np.where(df["model"] == "b", "c", df["model"]))
    pd.testing.assert_frame_equal(
        alone, bootstrap_table(other, ["drop"], ["model"], n_resamples=300, seed=4).iloc[:1])


def test_table_row_equals_bootstrap_ci_with_the_groups_seed():
    df = _frame()
    table = bootstrap_table(df, ["margin"], ["model"], statistic="median", n_resamples=300)
    part = df[df["model"] == "b"]["margin"].to_numpy()
    rng = np.random.default_rng(bootstrap._group_seed(0, ("b",)))
    expected = bootstrap._interval(part, np.arange(len(part)), "median", 0.95, 300, rng)
    assert tuple(table.iloc[1][["margin", "margin_low", "margin_high"]]) == expected


@pytest.mark.parametrize(("values", "kwargs", "words"), [
    ([], {}, "empty"),
    ([1.0, np.nan], {}, "NaN"),
    ([1.0, np.inf], {}, "inf"),
    ([np.inf, -np.inf, 1.0], {"statistic": "median"}, "+inf and -inf"),
    ([[1.0, 2.0]], {}, "1-D"),
    (["a", "b"], {}, "numbers"),
    ([1.0, 2.0], {"statistic": "mode"}, "statistic"),
    ([1.0, 2.0], {"level": 1.0}, "level"),
    ([1.0, 2.0], {"n_resamples": 0}, "n_resamples"),
    ([1.0, 2.0], {"seed": -1}, "seed"),
    ([1.0, 2.0], {"groups": np.array([0, 1, 2])}, "one label per value"),
    ([1.0, 2.0], {"groups": np.array([0, None])}, "missing"),
])
def test_bad_arguments_are_refused(values, kwargs, words):
    with pytest.raises(RcertError, match="^[^\n]*" + words.replace("+", r"\+")):
        bootstrap_ci(np.asarray(values), **kwargs)


@pytest.mark.parametrize(("args", "kwargs", "words"), [
    (("drop", ["model"]), {}, "lists"),
    ((["nope"], ["model"]), {}, "no column"),
    ((["drop"], ["model"]), {"cluster": "nope"}, "no column"),
    (([], ["model"]), {}, "at least one column"),
    ((["drop"], ["model"]), {"level": 0}, "level"),
])
def test_bad_tables_are_refused(args, kwargs, words):
    with pytest.raises(RcertError, match=words):
        bootstrap_table(_frame(), *args, **kwargs)
    with pytest.raises(RcertError, match="NaN"):
        bootstrap_table(_frame().assign(drop=np.nan), ["drop"], ["model"])
    with pytest.raises(RcertError, match="no rows"):
        bootstrap_table(_frame().iloc[:0], ["drop"], ["model"])
