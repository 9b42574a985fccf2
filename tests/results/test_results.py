"""Dataset-wide figures and the renderings of a result (rcert.report)."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TinyMLPVAE, add_attack_columns
from hypothesis import given, settings
from hypothesis import strategies as st

from rcert.engine.certificates import COLUMNS
from rcert.engine.certify import certify
from rcert.results import schema
from rcert.results.markdown import summary_markdown
from rcert.results.text import TABLE_COLUMNS, to_csv, to_json, to_table
from rcert.statistics import summary

INF = math.inf
CURVE_COLUMNS = ("bound_certified", "bound_spectral", "bound_whitened")


def _strict_json(text: str):
    """``json.loads`` that refuses the non-standard NaN / Infinity / -Infinity tokens."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _frame(rows: list[dict]) -> pd.DataFrame:
    """A certify-like DataFrame: every column of COLUMNS, defaults for what a row leaves out."""
    defaults = {
        "sigma_min": 0.5, "sigma_mean": 0.6, "jacobian_fro": 2.0, "jacobian_spec": 1.0,
        "jacobian_whitened": 3.0, "k": 90, "n": 100, "p_hat": 0.9, "p_lower": 0.8,
        "r_min": 0.2, "r_min_upper": 0.3, "bound": 1.0, "bound_certified": 0.5,
        "bound_spectral": 0.7, "bound_whitened": 0.9, "latent_margin": 0.4, "abstain": False,
    }
    records = [{"index": i, **defaults, **row} for i, row in enumerate(rows)]
    df = pd.DataFrame(records, columns=list(COLUMNS))
    return df.astype({"index": np.int64, "k": np.int64, "n": np.int64, "abstain": bool})


# Two certified rows with finite bounds, one abstained row (zero bounds), one row with
# infinite bounds (zero Jacobian): the cases summarize has to get right.
ROWS = [
    {"bound": 2.0, "bound_certified": 1.0, "bound_spectral": 1.5, "bound_whitened": 2.5,
     "latent_margin": 0.5, "p_lower": 0.8, "r_min": 0.1, "r_min_upper": 0.2},
    {"bound": 0.6, "bound_certified": 0.3, "bound_spectral": 0.4, "bound_whitened": 0.6,
     "latent_margin": 0.2, "p_lower": 0.6, "r_min": 0.3, "r_min_upper": 0.45},
    {"bound": 0.0, "bound_certified": 0.0, "bound_spectral": 0.0, "bound_whitened": 0.0,
     "latent_margin": 0.0, "p_lower": 0.3, "k": 40, "p_hat": 0.4, "abstain": True,
     "r_min": 0.9, "r_min_upper": INF},
    {"bound": INF, "bound_certified": INF, "bound_spectral": INF, "bound_whitened": INF,
     "latent_margin": 0.7, "jacobian_fro": 0.0, "jacobian_spec": 0.0, "jacobian_whitened": 0.0,
     "r_min": 0.05, "r_min_upper": 0.07},
]


@pytest.fixture
def df() -> pd.DataFrame:
    return _frame(ROWS)


def _brute_curve(df: pd.DataFrame, radii) -> dict[str, list[float]]:
    """The certified-fraction curve by counting, one radius and one row at a time.

    An abstention is never certified, whatever its margin columns hold.
    """
    n = len(df)
    curve = {"radius": [float(e) for e in radii]}
    for col in CURVE_COLUMNS:
        rows = zip(df[col].tolist(), df["abstain"].tolist(), strict=True)
        values = [v for v, abstained in rows if not abstained]
        curve[col] = [sum(1 for v in values if v >= e and v > 0) / n for e in radii]
    return curve


# --- summarize -----------------------------------------------------------------------------


def test_summarize_counts(df):
    s = summary.summarize(df)
    assert s["n_inputs"] == 4
    assert s["n_certified"] == 3
    assert s["n_abstained"] == 1
    assert s["certified_share"] == pytest.approx(0.75)
    assert set(s["margins"]) == set(summary.MARGINS)
    assert set(s["diagnostics"]) == set(summary.DIAGNOSTICS)


def test_mean_margin_is_inf_when_a_row_is_inf(df):
    s = summary.summarize(df)
    for col in summary.INPUT_MARGINS:
        assert s["mean_margin"][col] == INF
    # latent_margin is finite in every row.
    assert s["mean_margin"]["latent_margin"] == pytest.approx((0.5 + 0.2 + 0.0 + 0.7) / 4)


def test_mean_margin_of_finite_rows():
    s = summary.summarize(_frame(ROWS[:3]))
    assert s["mean_margin"]["bound"] == pytest.approx((2.0 + 0.6 + 0.0) / 3)
    assert s["mean_margin"]["bound_certified"] == pytest.approx((1.0 + 0.3) / 3)
    assert s["mean_margin"]["bound_spectral"] == pytest.approx((1.5 + 0.4) / 3)
    assert s["mean_margin"]["bound_whitened"] == pytest.approx((2.5 + 0.6) / 3)
    assert s["n_certified"] == 2 and s["n_abstained"] == 1


@pytest.mark.parametrize("col", ["bound_certified", "latent_margin", "sigma_min", "r_min"])
def test_describe_matches_numpy(df, col):
    finite = df.iloc[:3] if col == "bound_certified" else df
    s = summary.summarize(finite)
    group = "margins" if col in summary.MARGINS else "diagnostics"
    d = s[group][col]
    v = finite[col].to_numpy(dtype=np.float64)
    q = np.quantile(v, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    expected = {"count": len(v), "mean": np.mean(v), "std": np.std(v), "min": q[0],
                "q05": q[1], "q25": q[2], "median": q[3], "q75": q[4], "q95": q[5],
                "max": q[6]}
    assert set(d) == set(expected)
    for key, value in expected.items():
        assert d[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_describe_skips_nan_and_counts():
    d = summary.describe(np.array([np.nan, 1.0, 3.0, np.nan]))
    assert d["count"] == 2 and d["mean"] == 2.0 and d["median"] == 2.0
    empty = summary.describe(np.array([np.nan]))
    assert empty["count"] == 0 and np.isnan(empty["mean"]) and np.isnan(empty["max"])


def test_describe_quantiles_of_an_unsorted_series():
    d = summary.describe(pd.Series([4.0, 1.0, 3.0, 2.0]))
    assert d["median"] == pytest.approx(2.5)
    assert d["q25"] == pytest.approx(1.75)
    assert d["q95"] == pytest.approx(3.85)
    assert d["std"] == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))


def test_describe_with_inf_mean_and_std():
    d = summary.describe(np.array([1.0, 2.0, INF]))
    assert d["mean"] == INF
    assert math.isnan(d["std"])
    assert d["min"] == 1.0
    assert d["q25"] == pytest.approx(1.5)




def test_describe_with_inf_quantiles():
    d = summary.describe(np.array([1.0, 2.0, INF]))
    assert d["median"] == 2.0  # the middle order statistic exactly
    assert d["q75"] == INF
    assert d["q95"] == INF
    assert d["max"] == INF


def test_describe_of_an_all_inf_column():
    # r_min_upper is inf for every input when n_samples is too small to certify any.
    d = summary.describe(np.array([INF, INF, INF]))
    assert d["min"] == d["median"] == d["max"] == INF


def test_summary_r_min_upper_inf_is_counted(df):
    d = summary.summarize(df)["diagnostics"]["r_min_upper"]
    assert d["mean"] == INF
    assert d["min"] == pytest.approx(0.07)
    assert d["max"] == INF


# --- certified-fraction curve ----------------------------------------------------------------


def test_certified_fraction_default_radii_match_brute_force(df):
    s = summary.summarize(df)
    curve = s["certified_fraction"]
    assert list(curve) == ["radius", *CURVE_COLUMNS]
    radii = np.linspace(0.0, 2.5, 41)  # up to the largest finite bound_whitened
    assert curve["radius"] == pytest.approx(radii.tolist())
    brute = _brute_curve(df, radii)
    for col in CURVE_COLUMNS:
        assert curve[col] == pytest.approx(brute[col]), col


def test_certified_fraction_at_zero_is_certified_share_without_abstained_rows(df):
    s = summary.summarize(df)
    curve = s["certified_fraction"]
    for col in CURVE_COLUMNS:
        # The abstained row has bound 0 >= 0 but is not counted.
        assert curve[col][0] == pytest.approx(s["certified_share"]) == pytest.approx(0.75)
    all_abstained = _frame([ROWS[2], ROWS[2]])
    s = summary.summarize(all_abstained)
    assert s["n_certified"] == 0
    for col in CURVE_COLUMNS:
        assert s["certified_fraction"][col] == [0.0] * 41


def test_certified_fraction_is_non_increasing(df):
    curve = summary.summarize(df)["certified_fraction"]
    for col in CURVE_COLUMNS:
        values = np.asarray(curve[col])
        assert np.all(np.diff(values) <= 0), col
        # The inf row is certified at every finite radius.
        assert values[-1] >= 0.25


def test_certified_fraction_explicit_radii(df):
    radii = [0.0, 0.3, 0.5, 1.0, 2.5, 100.0, INF]
    s = summary.summarize(df, radii=np.array(radii))
    curve = s["certified_fraction"]
    assert curve["radius"] == radii
    assert curve["bound_certified"] == pytest.approx([0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.25])
    assert curve["bound_whitened"] == pytest.approx([0.75, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25])
    brute = _brute_curve(df, radii)
    for col in CURVE_COLUMNS:
        assert curve[col] == pytest.approx(brute[col])
    frame = summary.certified_fraction(df, radii=radii)
    assert list(frame.columns) == ["radius", *CURVE_COLUMNS]
    assert frame["bound_spectral"].tolist() == pytest.approx(brute["bound_spectral"])


def test_certified_fraction_default_top_without_finite_positive_bounds():
    # Only zero and inf bound_whitened: the default radii run from 0 to 1.
    frame = summary.certified_fraction(_frame([ROWS[2], ROWS[3]]), n_radii=5)
    assert frame["radius"].tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert frame["bound_certified"].tolist() == [0.5] * 5


_bounds = st.floats(min_value=0.0, allow_nan=False, allow_infinity=True, width=64)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(_bounds, _bounds, _bounds), min_size=1, max_size=25),
    radii=st.one_of(
        st.none(),
        st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1,
                 max_size=10).map(sorted),
    ),
)
def test_certified_fraction_property(data, radii):
    rows = [{"bound_certified": a, "bound_spectral": b, "bound_whitened": c,
             "abstain": a == 0} for a, b, c in data]
    df = _frame(rows)
    frame = summary.certified_fraction(df, radii=radii)
    brute = _brute_curve(df, frame["radius"].to_numpy())
    for col in CURVE_COLUMNS:
        values = frame[col].to_numpy()
        assert np.all((values >= 0) & (values <= 1))
        assert np.all(np.diff(values) <= 0)
        assert values.tolist() == pytest.approx(brute[col])


# --- to_json -------------------------------------------------------------------------------


def test_to_json_is_strict_and_spells_non_finite_numbers():
    res = {
        "pos": np.float64(INF), "neg": -INF, "nan": float("nan"), "f32": np.float32(0.5),
        "i64": np.int64(3), "i32": np.int32(-7), "flag": np.bool_(True), "plain": False,
        "none": None, "text": "x",
        "nested": {"list": [np.float64(1.25), np.float32(-INF), np.int16(2)], 5: (1, 2.5)},
    }
    text = to_json(res)
    assert "NaN" not in text and "Infinity" not in text
    back = _strict_json(text)
    assert back == {
        "pos": "inf", "neg": "-inf", "nan": "nan", "f32": 0.5, "i64": 3, "i32": -7,
        "flag": True, "plain": False, "none": None, "text": "x",
        "nested": {"list": [1.25, "-inf", 2], "5": [1, 2.5]},
    }
    assert type(back["i64"]) is int and type(back["flag"]) is bool
    assert type(back["nested"]["list"][2]) is int
    assert text.endswith("}\n")


def test_to_json_round_trips_a_result(df):
    res = schema.result(df, model={"path": "m.rcert"}, config={"data": "digits:test"})
    back = _strict_json(to_json(res))
    assert set(back) == {"schema_version", "kind", "config", "model", "summary", "inputs"}
    assert back["kind"] == "margin"
    assert back["schema_version"] == schema.SCHEMA_VERSION
    assert back["config"] == {"data": "digits:test"}
    assert back["model"] == {"path": "m.rcert"}
    assert back["summary"]["n_certified"] == 3
    assert back["summary"]["mean_margin"]["bound"] == "inf"
    assert back["summary"]["diagnostics"]["r_min_upper"]["std"] == "nan"
    assert len(back["inputs"]) == len(df)
    for row, (_, expected) in zip(back["inputs"], df.iterrows(), strict=True):
        assert list(row) == list(COLUMNS)
        for col in COLUMNS:
            value = row[col]
            if col in ("index", "k", "n"):
                assert type(value) is int and value == expected[col]
            elif col == "abstain":
                assert type(value) is bool and value == expected[col]
            else:
                assert float(value) == expected[col], col
    assert back["inputs"][3]["bound"] == "inf"
    assert back["inputs"][2]["abstain"] is True


# --- to_csv / to_table on a real certification ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_result():
    model = TinyMLPVAE()
    x = torch.rand(7, 10, generator=torch.Generator().manual_seed(3))
    base = certify(model, x, r=1.0, n_samples=200, seed=1)
    # An r between the r_min_upper values, so that some inputs abstain and some do not.
    r = float(np.median(base["r_min_upper"]))
    df = certify(model, x, r=r, n_samples=200, seed=1)
    res = schema.result(df, model={"path": "tiny.rcert"}, config={"data": "random"})
    return df, res


def test_tiny_result_has_both_outcomes(tiny_result):
    df, _ = tiny_result
    assert 0 < int(df["abstain"].sum()) < len(df)


def test_to_csv_round_trip(tiny_result):
    df, res = tiny_result
    text = to_csv(res)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert len(text.splitlines()) == len(df) + 1
    back = pd.read_csv(io.StringIO(text))
    pd.testing.assert_frame_equal(back, df, check_dtype=True, check_exact=True)


def test_to_csv_round_trip_with_inf(df):
    text = to_csv(schema.result(df))
    back = pd.read_csv(io.StringIO(text))
    pd.testing.assert_frame_equal(back, df, check_dtype=True, check_exact=True)
    assert back["bound"].iloc[3] == INF


def test_to_table(tiny_result):
    df, res = tiny_result
    text = to_table(res)
    lines = text.splitlines()
    header = lines[0].split()
    # Columns the result lacks (no attack was run) are left out, in the same order.
    assert header == [c for c in TABLE_COLUMNS if c in df.columns]
    body = lines[1:1 + len(df)]
    assert [int(line.split()[0]) for line in body] == df["index"].tolist()
    assert [line.split()[-1] for line in body] == [str(v) for v in df["abstain"]]
    assert lines[1 + len(df)] == ""
    n_cert = int((~df["abstain"]).sum())
    n_abst = int(df["abstain"].sum())
    pattern = (rf"^certified {n_cert} of {len(df)} inputs "
               rf"\({100 * n_cert / len(df):.1f}%\), abstained {n_abst}$")
    assert sum(1 for line in lines if re.match(pattern, line)) == 1
    assert "model tiny.rcert on random" in lines
    cfg = df.attrs["config"]
    assert f"r={cfg['r']}, m=0.5, n_samples=200, alpha=0.001, seed=1" in lines
    # The margin quantile block names every margin and r_min.
    for name in (*summary.MARGINS, "r_min", "r_min_upper"):
        assert any(line.split()[:1] == [name] for line in lines), name
    assert text.endswith("\n")


def test_summarize_curve_crossings_by_hand():
    # Input 0 is first broken at rho = 0.2; input 1 never (uncrossed); input 2 at rho = 0.
    rows = [(0, 0.0, 0.9, False), (0, 0.1, 0.7, False), (0, 0.2, 0.4, True),
            (0, 0.3, 0.2, True),
            (1, 0.0, 0.9, False), (1, 0.1, 0.9, False), (1, 0.2, 0.8, False),
            (1, 0.3, 0.6, False),
            (2, 0.0, 0.5, True), (2, 0.1, 0.3, True), (2, 0.2, 0.1, True), (2, 0.3, 0.0, True)]
    df = pd.DataFrame(rows, columns=["index", "rho", "p_hat", "broken"])
    s = summary.summarize_curve(df, m=0.5)
    assert s["n_inputs"] == 3 and s["rho"] == [0.0, 0.1, 0.2, 0.3]
    assert s["mean_p_hat"] == pytest.approx([0.7666666, 0.6333333, 0.4333333, 0.2666666])
    # Only the two finite crossings are described; the third input is counted apart.
    assert s["crossing"]["count"] == 2 and s["n_uncrossed"] == 1
    assert s["crossing"]["min"] == 0.0 and s["crossing"]["max"] == 0.2


def test_summarize_attack_by_hand():
    df = pd.DataFrame({
        "index": [0, 1, 0, 1], "L": [0.5, 0.5, 1.0, 1.0],
        "damage": [1.0, 3.0, 2.0, 0.5], "noise_damage": [0.5, 0.5, 0.5, 1.0],
        "loglik_degradation": [0.1, 0.3, 0.2, 0.4], "noise_loglik_degradation": [0.0] * 4,
        "delta_norm": [0.5, 0.5, 1.0, 1.0]})
    s = summary.summarize_attack(df)
    assert s["n_inputs"] == 2 and [b["L"] for b in s["budgets"]] == [0.5, 1.0]
    first, second = s["budgets"]
    assert first["damage"]["mean"] == 2.0 and first["attack_beats_noise"] == 1.0
    assert second["damage"]["mean"] == 1.25 and second["attack_beats_noise"] == 0.5
    assert second["loglik_degradation"]["max"] == 0.4


def _attacked_frame() -> pd.DataFrame:
    """Certify rows with attack columns, made by hand: seven inputs, of which one abstained
    (bound 0), one has an unbounded certificate (bound inf) and one was never broken
    (margin_empirical inf); the published bound and bound_certified are ordered differently,
    so a fit against the wrong column, or over the wrong inputs, gives other numbers."""
    bound = np.array([2.0, 0.6, 0.0, INF, 1.2, 3.1, 0.9])
    certified = np.array([0.5, 0.4, 0.0, INF, 1.0, 0.7, 0.8])
    found = np.array([2.6, 1.5, 0.0, 1.7, 0.6, INF, 0.3])
    rows = [{"bound": b, "bound_certified": c, "abstain": b == 0.0}
            for b, c in zip(bound, certified, strict=True)]
    return add_attack_columns(_frame(rows), found, unbroken_lo=5.0, p_check=0.1,
                              p_check_upper=0.3)


def _number(pattern: str, line: str) -> float:
    match = re.search(pattern, line)
    assert match, (pattern, line)
    return float(match.group(1))


def test_table_summary_prints_the_attack_verdict():
    df = _attacked_frame()
    line = next(x for x in to_table(schema.result(df)).splitlines() if "violations" in x)

    # Recomputed from the rows, not from the summary: counts ...
    assert _number(r"(\d+) violations", line) == df["violation"].sum() == 3
    assert _number(r"(\d+) unbroken", line) == np.isinf(df["margin_empirical"]).sum() == 1
    # ... and the fit of margin_empirical on the published bound over the inputs where both
    # are finite and the bound positive (inputs 0, 1, 4, 6).
    b, f = df["bound"].to_numpy(), df["margin_empirical"].to_numpy()
    keep = np.isfinite(b) & np.isfinite(f) & (b > 0)
    assert keep.tolist() == [True, True, False, False, True, False, True]
    correlation = np.corrcoef(b[keep], f[keep])[0, 1]
    slope = np.cov(b[keep], f[keep])[0, 1] / np.var(b[keep], ddof=1)
    intercept = f[keep].mean() - slope * b[keep].mean()
    assert _number(r"correlation (-?[\d.]+)", line) == pytest.approx(correlation, abs=6e-4)
    assert _number(r"slope (-?[\d.]+)", line) == pytest.approx(slope, abs=6e-4)
    assert _number(r"intercept (-?[\d.e+-]+)", line) == pytest.approx(intercept, rel=6e-3)
    # Against bound_certified, or with the abstained input, the numbers would differ.
    c = df["bound_certified"].to_numpy()
    assert abs(np.corrcoef(c[keep], f[keep])[0, 1] - correlation) > 0.05
    wide = np.isfinite(b) & np.isfinite(f)
    assert abs(np.corrcoef(b[wide], f[wide])[0, 1] - correlation) > 0.01


def _audited_frame(alpha: float) -> pd.DataFrame:
    """:func:`_attacked_frame` with an audit of four inputs, recorded as a careful run at
    ``alpha``: input 0 lowered by 40% (p 1e-5), input 1 by 10% (p 0.005), input 3 by 0.5%
    (within the 2% resolution) and input 6 raised by 20%."""
    df = _attacked_frame()
    df["margin_empirical_audit"] = [1.56, 1.35, np.nan, 1.6915, np.nan, np.nan, 0.36]
    df["p_value_audit"] = [1e-5, 0.005, np.nan, np.nan, np.nan, np.nan, np.nan]
    df.attrs["config"] = {"empirical": {"preset": "careful", "alpha": alpha}}
    return df


def _recount_audit(df: pd.DataFrame, alpha: float) -> tuple[int, int, int, float]:
    """Audited, lowered (by more than 2%), confirmed (p <= alpha) and the largest drop, by a
    loop over the rows."""
    audited = lowered = confirmed = 0
    largest = 0.0
    for weak, strong, p in zip(df["margin_empirical"], df["margin_empirical_audit"],
                               df["p_value_audit"], strict=True):
        if math.isnan(strong):
            continue
        audited += 1
        lowered += strong < weak - 0.02 * weak
        confirmed += p <= alpha
        largest = max(largest, 1 - strong / weak)
    return audited, lowered, confirmed, largest


@pytest.mark.parametrize("alpha", [0.001, 0.01])
def test_the_table_and_markdown_print_the_audit_of_the_rows(alpha):
    df = _audited_frame(alpha)
    audited, lowered, confirmed, largest = _recount_audit(df, alpha)
    assert (audited, lowered, confirmed) == (4, 2, 1 if alpha == 0.001 else 2)
    res = schema.result(df)
    table_line = next(x for x in to_table(res).splitlines()
                      if x.startswith("attack strength: "))
    markdown_row = next(x for x in summary_markdown({"a": res}).splitlines()
                        if x.startswith("| attack strength |"))
    pattern = (r"standard \(restarts 5, steps 50, n_noise 128\) lowered (\d+) of (\d+) "
               r"audited margins \(max drop (\d+)%\), (\d+) confirmed")
    for shown in (table_line, markdown_row):
        found = re.search(pattern, shown)
        assert found, shown
        assert [int(v) for v in found.groups()] == [lowered, audited, round(100 * largest),
                                                    confirmed]


# --- the attack and curve tables: printed numbers recomputed from the rows ----------------


def _table_after(text: str, heading: str) -> pd.DataFrame:
    """The whitespace table that follows the line starting with ``heading``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return pd.read_csv(io.StringIO("\n".join(lines[start:end])), sep=r"\s+")


def test_attack_table_prints_the_means_of_the_rows():
    rng = np.random.default_rng(5)
    n = 6
    rows = {"index": np.tile(np.arange(n), 2), "L": np.repeat([0.5, 2.0], n)}
    for col in ("damage", "noise_damage", "distortion", "noise_distortion",
                "clean_distortion", "loglik_degradation", "noise_loglik_degradation",
                "delta_norm"):
        rows[col] = rng.uniform(0.1, 3.0, 2 * n)
    df = pd.DataFrame(rows)
    printed = _table_after(to_table(schema.result(df, kind="attack")), f"{n} inputs attacked")
    assert printed["L"].tolist() == [0.5, 2.0]
    for _, row in printed.iterrows():
        group = df[df["L"] == row["L"]]
        for col in ("damage", "noise_damage", "distortion", "noise_distortion",
                    "clean_distortion", "loglik_degradation"):
            assert row[col] == pytest.approx(group[col].mean(), rel=1e-3), col
        assert row["attack_beats_noise"] == pytest.approx(
            np.mean(group["damage"] >= group["noise_damage"]), rel=1e-3)
        assert row["attack_beats_noise_distortion"] == pytest.approx(
            np.mean(group["distortion"] >= group["noise_distortion"]), rel=1e-3)


def test_curve_table_prints_mean_p_and_the_inputs_that_crossed():
    rng = np.random.default_rng(6)
    radii, n = [0.0, 0.5, 1.0], 5
    df = pd.DataFrame({"index": np.tile(np.arange(n), 3), "rho": np.repeat(radii, n),
                       "p_hat": rng.uniform(0, 1, 3 * n)})
    df["broken"] = df["p_hat"] < 0.4
    text = to_table(schema.result(df, kind="curve", config={"m": 0.5}))
    printed = _table_after(text, f"{n} inputs; mean p(rho)")
    assert printed["rho"].tolist() == radii
    want = df.groupby("rho")["p_hat"].mean().to_numpy()
    assert printed["mean_p_hat"].to_numpy() == pytest.approx(want, rel=1e-3)
    crossed = df[df["broken"]]["index"].nunique()
    line = next(x for x in text.splitlines() if x.startswith("crossing:"))
    numbers = [int(v) for v in re.findall(r"(\d+) of \d+ inputs crossed, (\d+) did not", line)[0]]
    assert numbers == [crossed, n - crossed]
