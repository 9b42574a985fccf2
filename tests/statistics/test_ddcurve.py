import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rcert.errors import RcertError
from rcert.statistics.ddcurve import (
    ORIENTATION,
    aaddc,
    aaddc_table,
    check_limit,
    curve_table,
    latent_statistics,
    parse_limits,
)

GRID = np.linspace(0.0, 1.0, 11)


def test_orientation_of_every_metric():
    assert ORIENTATION == {"ssim": True, "psnr": True, "mse": False, "l2": False,
                           "lpips": False}


@pytest.mark.parametrize("clip", [False, True])
def test_constant_curves_give_the_rectangle_not_divided_by_the_range(clip):
    eps = np.linspace(0.0, 2.0, 5)
    assert aaddc(eps, np.full(5, 0.9), 0.4, higher_is_better=True, clip=clip) == \
        pytest.approx(2 * 0.5)
    assert aaddc(eps, np.full(5, 0.05), 0.15, higher_is_better=False, clip=clip) == \
        pytest.approx(2 * 0.1)


def test_linear_curves_give_the_trapezoid():
    # SSIM falling from 1 to 0.6 over [0, 1], limit 0.4: area (0.6 + 0.2) / 2.
    assert aaddc(GRID, 1 - 0.4 * GRID, 0.4, higher_is_better=True) == pytest.approx(0.4)
    # LPIPS rising from 0 to 0.1 over [0, 2], limit 0.15: area 2 * (0.15 + 0.05) / 2.
    eps = 2 * GRID
    assert aaddc(eps, 0.05 * eps, 0.15, higher_is_better=False) == pytest.approx(0.2)


def test_clip_keeps_the_exact_area_on_the_good_side_of_a_crossing():
    # s(eps) = 1 - eps on the grid {0, 0.3, 1} (piecewise linear, crossing L = 0.5 at 0.5,
    # inside the second interval): the area above the line is the triangle 0.5 * 0.5 * 0.5.
    eps, s = [0.0, 0.3, 1.0], [1.0, 0.7, 0.0]
    assert aaddc(eps, s, 0.5, higher_is_better=True, clip=True) == pytest.approx(0.125)
    assert aaddc(eps, s, 0.5, higher_is_better=True) == pytest.approx(0.0)
    # Lower is better: LPIPS 2 eps against L = 0.5 crosses at 0.25; above the curve: 1/16.
    assert aaddc(eps, 2 * np.array(eps), 0.5, higher_is_better=False, clip=True) == \
        pytest.approx(0.0625)


finite = st.floats(-10, 10, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(st.floats(0, 5, allow_nan=False), finite), min_size=2,
                       max_size=12, unique_by=lambda p: p[0]),
       limit=finite, higher=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_numpy_trapezoid_clip_dominates_and_order_does_not_matter(points, limit,
                                                                          higher, seed):
    eps, s = (np.array(v) for v in zip(*points, strict=True))
    order = np.argsort(eps)
    d = (s - limit) if higher else (limit - s)
    expected = np.trapezoid(d[order], eps[order])
    signed = aaddc(eps, s, limit, higher_is_better=higher)
    assert signed == pytest.approx(expected, rel=1e-9, abs=1e-9)
    clipped = aaddc(eps, s, limit, higher_is_better=higher, clip=True)
    assert clipped >= signed - 1e-9 and clipped >= -1e-12
    shuffled = np.random.default_rng(seed).permutation(len(eps))
    assert aaddc(eps[shuffled], s[shuffled], limit, higher_is_better=higher) == \
        pytest.approx(signed, rel=1e-12, abs=1e-12)
    assert aaddc(eps[shuffled], s[shuffled], limit, higher_is_better=higher, clip=True) == \
        pytest.approx(clipped, rel=1e-12, abs=1e-12)
    if (d >= 0).all():
        assert clipped == pytest.approx(signed, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("eps", "scores", "message"), [
    ([0.5], [0.9], "at least 2 distinct"),
    ([0.5, 0.5], [0.9, 0.8], "at least 2 distinct"),
    ([0.0, 0.5], [0.9, math.nan], "NaN or infinite"),
    ([0.0, 0.5], [0.9], "one score per epsilon"),
])
def test_refuses_curves_without_an_area(eps, scores, message):
    with pytest.raises(RcertError, match=message):
        aaddc(eps, scores, 0.4, higher_is_better=True)


def test_limit_lines_in_the_wrong_direction_are_refused():
    with pytest.raises(RcertError, match=r"ssim limit line 0\.95 lies above its whole DD-curve; "
                       r"for a higher-is-better score the limit must lie below the curve "
                       r"\(the paper's ssim=0\.4\)"):
        check_limit(GRID, 0.9 - 0.2 * GRID, 0.95, higher_is_better=True, metric="ssim")
    with pytest.raises(RcertError, match=r"lpips limit line 0\.01 lies below its whole "
                       r"DD-curve; for a lower-is-better score the limit must lie above .*"
                       r"lpips=0\.15.*highest score 0\.12"):
        check_limit(GRID, 0.02 + 0.1 * GRID, 0.01, higher_is_better=False, metric="lpips")


def test_limits_on_the_bad_side_pass_and_crossings_warn():
    assert check_limit(GRID, 1 - 0.4 * GRID, 0.4, higher_is_better=True, metric="ssim") is None
    assert check_limit(GRID, 0.1 * GRID, 0.15, higher_is_better=False, metric="lpips") is None
    warning = check_limit(GRID, 1 - GRID, 0.45, higher_is_better=True, metric="ssim")
    assert "crosses its limit line 0.45 (5 of 11 points lie below it)" in warning
    warning = check_limit(GRID, 0.3 * GRID, 0.16, higher_is_better=False, metric="lpips")
    assert "(5 of 11 points lie above it)" in warning and "\n" not in warning


def test_parse_limits():
    assert parse_limits(["ssim=0.4", " LPIPS = 0.15"]) == {"ssim": 0.4, "lpips": 0.15}
    assert parse_limits([]) == {}


@pytest.mark.parametrize(("items", "message"), [
    (["ssim0.4"], "metric=value"),
    (["fid=3e-4"], "unknown metric 'fid'"),
    (["ssim=high"], "finite number"),
    (["psnr=inf"], "finite number"),
    (["ssim=nan"], "finite number"),
    (["ssim=0.4", "ssim=0.5"], "given twice"),
])
def test_parse_limits_refuses_bad_items(items, message):
    with pytest.raises(RcertError, match=message) as info:
        parse_limits(items)
    assert "\n" not in str(info.value)


def per_row_table():
    """Two models; model a: seeds 0 and 1, one batch each; model b: one curve. Two inputs per
    (curve, epsilon), whose mean is the curve's point."""
    rows = []
    curves = {("a", 0, 0): [1.0, 0.8, 0.6], ("a", 1, 0): [1.0, 0.6, 0.5],
              ("b", 0, 3): [0.9, 0.9, 0.9]}
    for (model, seed, batch), points in curves.items():
        for eps, point in zip([0.0, 0.5, 1.0], points, strict=True):
            for spread in (-0.05, 0.05):
                rows.append({"model": model, "seed": seed, "batch": batch, "epsilon": eps,
                             "ssim": point + spread, "lpips": (1 - point) / 2 + spread})
    return pd.DataFrame(rows)


def test_curve_table_averages_rows_per_curve_and_epsilon():
    curves = curve_table(per_row_table(), "ssim", ["model"])
    assert list(curves.columns) == ["model", "seed", "batch", "epsilon", "ssim"]
    assert len(curves) == 9
    row = curves[(curves.model == "a") & (curves.seed == 1) & (curves.epsilon == 0.5)]
    assert row.ssim.item() == pytest.approx(0.6)


def test_aaddc_table_by_hand():
    table, warnings = aaddc_table(per_row_table(), ["ssim", "lpips", "psnr"],
                                  {"ssim": 0.4, "lpips": 0.5, "psnr": 30.0}, by=["model"])
    assert warnings == []
    assert list(table.columns) == ["model", "metric", "limit", "aaddc_mean", "aaddc_std",
                                   "n_curves", "aaddc_of_mean"]
    got = table.set_index(["model", "metric"])
    # ssim, model a, limit 0.4, grid step 0.5: curve 1 has gaps 0.6, 0.4, 0.2 -> area
    # 0.5 * (0.5 + 0.3) = 0.4; curve 2 gaps 0.6, 0.2, 0.1 -> 0.5 * (0.4 + 0.15) = 0.275.
    a = got.loc[("a", "ssim")]
    assert a.aaddc_mean == pytest.approx(0.3375)
    assert a.aaddc_std == pytest.approx(0.125 / math.sqrt(2))
    assert a.n_curves == 2 and a.limit == 0.4
    assert a.aaddc_of_mean == pytest.approx(0.3375)  # the trapezoid rule is linear
    b = got.loc[("b", "ssim")]
    assert b.aaddc_mean == pytest.approx(0.5) and math.isnan(b.aaddc_std)
    # lpips = (1 - ssim) / 2, limit 0.5: gaps are ssim / 2, so half the areas under the ssim
    # curves (0.8 and 0.675).
    assert got.loc[("a", "lpips")].aaddc_mean == pytest.approx((0.8 + 0.675) / 4)
    assert ("a", "psnr") not in got.index  # absent from the table
    assert list(table.model) == ["a", "a", "b", "b"]


def test_aaddc_table_warns_on_crossings_and_refuses_wrong_directions():
    df = per_row_table()
    # Limit 0.52: model a's second curve ends at 0.5, below it; their mean ends at 0.55.
    table, warnings = aaddc_table(df, ["ssim"], {"ssim": 0.52}, by=["model"])
    assert len(warnings) == 1 and warnings[0].startswith("model=a: ")
    assert "1 of 2 ssim DD-curves cross" in warnings[0]
    clipped, _ = aaddc_table(df, ["ssim"], {"ssim": 0.52}, by=["model"], clip=True)
    assert (clipped.aaddc_mean > table.aaddc_mean).tolist() == [True, False]
    with pytest.raises(RcertError, match=r"model=a: the ssim limit line 1\.5 lies above"):
        aaddc_table(df, ["ssim"], {"ssim": 1.5}, by=["model"])
    df["target_mse"] = 0.0  # a score without a limit line gets no AADDC
    one, _ = aaddc_table(df[df.model == "b"], ["ssim", "target_mse"], {"ssim": 0.4})
    assert one.metric.tolist() == ["ssim"]
    assert one.columns[0] == "metric" and one.aaddc_mean.item() == pytest.approx(0.5)


def test_aaddc_table_refuses_curves_on_different_grids():
    df = per_row_table()
    df.loc[(df.model == "a") & (df.seed == 1) & (df.epsilon == 1.0), "epsilon"] = 0.9
    with pytest.raises(RcertError, match="do not share one epsilon grid"):
        aaddc_table(df, ["ssim"], {"ssim": 0.1}, by=["model"])


def test_latent_statistics_against_explicit_loops():
    z0 = torch.tensor([[1.0, -2.0, 0.0], [-3.0, 0.5, 1.0]])
    z_adv = torch.tensor([[0.5, -2.0, 1.0], [-1.0, -0.5, 1.0]])
    table = latent_statistics(z0, z_adv)
    assert list(table.columns) == ["dim", "mean_abs_code", "mean_abs_adversarial",
                                   "mean_abs_shift"]
    m, d = z0.shape
    for j in range(d):
        row = table.iloc[j]
        assert row.dim == j
        assert row.mean_abs_code == pytest.approx(sum(abs(z0[i, j].item()) for i in range(m)) / m)
        assert row.mean_abs_adversarial == pytest.approx(
            sum(abs(z_adv[i, j].item()) for i in range(m)) / m)
        assert row.mean_abs_shift == pytest.approx(
            sum(abs(z_adv[i, j].item() - z0[i, j].item()) for i in range(m)) / m)
    with pytest.raises(RcertError, match="of one shape"):
        latent_statistics(z0, z_adv[:1])
