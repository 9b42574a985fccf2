"""``summarize_latent`` and ``summarize_latent_margin`` on hand-built tables whose summaries
are worked out by hand in the comments."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from conftest import strict_json
from hypothesis import given, settings
from hypothesis import strategies as st

from rcert.errors import RcertError
from rcert.results.schema import check_result, result
from rcert.results.text import to_json, to_table
from rcert.statistics.latent_summary import summarize_latent, summarize_latent_margin

EPS = (0.0, 0.5, 1.0)


def _rows(epsilons=EPS) -> pd.DataFrame:
    """Seeds 0 and 1, inputs 0-3 in batches of 2, and
    ``ssim = 1 - 0.4 eps - 0.1 index - 0.05 seed``, ``lpips = 0.1 eps + 0.01 index``,
    ``target_mse = 0.2 - 0.1 eps``."""
    rows = [{"seed": s, "index": i, "batch": i // 2, "epsilon": e,
             "ssim": 1 - 0.4 * e - 0.1 * i - 0.05 * s, "lpips": 0.1 * e + 0.01 * i,
             "target_mse": 0.2 - 0.1 * e}
            for s, i, e in itertools.product((0, 1), range(4), epsilons)]
    return pd.DataFrame(rows)


def test_curves_and_aaddc_by_hand():
    summary, warnings = summarize_latent(_rows(), {"ssim": 0.2, "lpips": 0.15})
    assert warnings == []
    assert (summary["n_inputs"], summary["n_seeds"], summary["n_batches"]) == (4, 2, 2)
    assert summary["epsilons"] == list(EPS)
    # Mean over the 8 rows per epsilon: 1 - 0.4 eps - 0.1 * 1.5 - 0.05 * 0.5.
    ssim = summary["curves"]["ssim"]
    np.testing.assert_allclose(ssim["mean"], [0.825, 0.625, 0.425])
    # The (seed, batch) curves sit below 1 - 0.4 eps by 0.1 * (mean index 0.5 or 2.5) +
    # 0.05 seed = 0.05, 0.10, 0.25, 0.30: standard deviation sqrt(0.0425 / 3).
    np.testing.assert_allclose(ssim["std"], [math.sqrt(0.0425 / 3)] * 3)
    assert ssim["n_curves"] == 4
    np.testing.assert_allclose(summary["curves"]["lpips"]["mean"], [0.015, 0.065, 0.115])
    np.testing.assert_allclose(summary["curves"]["target_mse"]["mean"], [0.2, 0.15, 0.1])
    np.testing.assert_allclose(summary["curves"]["target_mse"]["std"], [0.0] * 3, atol=1e-15)
    # AADDC of ssim over [0, 1] above 0.2: 0.8 - 0.2 - offset = 0.55, 0.50, 0.35, 0.30.
    a = summary["aaddc"]["ssim"]
    assert a["limit"] == 0.2 and a["n_curves"] == 4
    assert a["mean"] == pytest.approx(0.425)
    assert a["std"] == pytest.approx(math.sqrt(0.0425 / 3))
    assert a["of_mean_curve"] == pytest.approx(0.425)
    # lpips below 0.15: 0.15 - 0.05 - 0.01 * (0.5 or 2.5) = 0.095 (both seeds), 0.075.
    b = summary["aaddc"]["lpips"]
    assert b["mean"] == pytest.approx(0.085) and b["of_mean_curve"] == pytest.approx(0.085)
    assert b["std"] == pytest.approx(np.std([0.095, 0.095, 0.075, 0.075], ddof=1))
    # target_mse has no orientation and no limit: a curve only.
    assert set(summary["aaddc"]) == {"ssim", "lpips"}


def test_a_crossed_limit_warns_and_clipping_keeps_the_good_side():
    # Mean ssim minus 0.7 at the grid: 0.125, -0.075, -0.275. Signed trapezoid:
    # 0.5 (0.125 - 0.075) / 2 + 0.5 (-0.075 - 0.275) / 2 = -0.075; clipped: the triangle
    # 0.5 * 0.125^2 / (2 * 0.2) of the first interval.
    signed, warnings = summarize_latent(_rows(), {"ssim": 0.7})
    assert signed["aaddc"]["ssim"]["of_mean_curve"] == pytest.approx(-0.075)
    assert len(warnings) == 1 and "crosses its limit line 0.7" in warnings[0]
    clipped, _ = summarize_latent(_rows(), {"ssim": 0.7}, clip=True)
    assert clipped["aaddc"]["ssim"]["of_mean_curve"] == pytest.approx(0.5 * 0.125**2 / 0.4)


def test_a_limit_on_the_wrong_side_of_the_whole_curve_is_refused():
    with pytest.raises(RcertError, match=r"ssim limit line 1\.5 lies above its whole"):
        summarize_latent(_rows(), {"ssim": 1.5})


def test_one_epsilon_gives_curves_without_aaddc():
    summary, warnings = summarize_latent(_rows(epsilons=(0.5,)), {"ssim": 0.4, "lpips": 0.15})
    assert summary["aaddc"] == {} and warnings == []
    np.testing.assert_allclose(summary["curves"]["ssim"]["mean"], [0.625])


def test_a_limit_for_an_unscored_metric_is_ignored():
    summary, _ = summarize_latent(_rows().drop(columns="lpips"), {"lpips": 0.15})
    assert summary["aaddc"] == {} and "lpips" not in summary["curves"]


@settings(max_examples=30, deadline=None)
@given(n_seeds=st.integers(1, 3), n_inputs=st.integers(1, 6), batch=st.integers(1, 4),
       n_eps=st.integers(2, 4), seed=st.integers(0, 2**32 - 1))
def test_curves_are_row_means_and_spread_over_batch_and_seed_curves(n_seeds, n_inputs, batch,
                                                                    n_eps, seed):
    rng = np.random.default_rng(seed)
    eps = np.sort(rng.choice(np.linspace(0, 2, 21), n_eps, replace=False))
    keys = list(itertools.product(range(n_seeds), range(n_inputs), eps))
    scores = rng.random((len(keys), 2))
    df = pd.DataFrame({"seed": [k[0] for k in keys], "index": [k[1] for k in keys],
                       "batch": [k[1] // batch for k in keys], "epsilon": [k[2] for k in keys],
                       "mse": scores[:, 0], "psnr": 40 + 10 * scores[:, 1]})
    summary, _ = summarize_latent(df, {"psnr": 30.0})
    values = scores[:, 0].reshape(n_seeds, n_inputs, n_eps)
    np.testing.assert_allclose(summary["curves"]["mse"]["mean"], values.mean(axis=(0, 1)))
    groups = [np.arange(n_inputs)[np.arange(n_inputs) // batch == g]
              for g in range(-(-n_inputs // batch))]
    curves = np.array([values[s, g].mean(axis=0) for s in range(n_seeds) for g in groups])
    assert summary["curves"]["mse"]["n_curves"] == len(curves)
    std = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.full(n_eps, np.nan)
    np.testing.assert_allclose(summary["curves"]["mse"]["std"], std)
    psnr = (40 + 10 * scores[:, 1]).reshape(n_seeds, n_inputs, n_eps)
    psnr_curves = np.array([psnr[s, g].mean(axis=0) for s in range(n_seeds) for g in groups])
    areas = np.trapezoid(psnr_curves - 30.0, eps, axis=1)
    assert summary["aaddc"]["psnr"]["mean"] == pytest.approx(areas.mean())
    assert summary["aaddc"]["psnr"]["of_mean_curve"] == pytest.approx(
        np.trapezoid(psnr.mean(axis=(0, 1)) - 30.0, eps))


def _margin_rows() -> pd.DataFrame:
    """Five inputs: 0-3 certified and attacked, 4 abstained (NaN attack columns)."""
    nan, inf = math.nan, math.inf
    return pd.DataFrame({
        "index": [0, 1, 2, 3, 4],
        "p_lower": [0.9, 0.8, 0.7, 0.95, 0.4],
        "l2_p_inside": [0.7, 0.6, 0.55, 0.8, nan],
        "l2_violation": [False, True, False, False, False],
        "l2_tightness": [2.0, 1.25, inf, 4.0, nan],
        "whitened_p_inside": [0.7, 0.6, 0.55, 0.8, nan],
        "whitened_violation": [False, False, False, False, False],
        "whitened_tightness": [inf, inf, inf, 8.0, nan],
    })


def test_margin_summary_by_hand():
    summary = summarize_latent_margin(_margin_rows())
    assert summary["n_inputs"] == 5 and summary["n_certified"] == 4
    # l2: broken at 2, 1.25 and 4 (input 2 unbroken): median 2, min 1.25, max 4.
    assert summary["l2"] == {"violations": 1, "n_broken": 3, "tightness_median": 2.0,
                             "tightness_min": 1.25, "tightness_max": 4.0}
    assert summary["whitened"] == {"violations": 0, "n_broken": 1, "tightness_median": 8.0,
                                   "tightness_min": 8.0, "tightness_max": 8.0}


def test_margin_summary_of_nothing_broken_and_one_geometry():
    rows = _margin_rows().drop(columns=[c for c in _margin_rows() if c.startswith("whitened")])
    rows["l2_tightness"] = [math.inf] * 4 + [math.nan]
    summary = summarize_latent_margin(rows)
    assert set(summary) == {"n_inputs", "n_certified", "l2"}
    assert summary["l2"]["n_broken"] == 0 and summary["l2"]["tightness_median"] is None


def test_result_documents_of_both_kinds_round_trip_and_render():
    rows = _rows()
    rows.attrs["config"] = {"fidelity": {"limits": ["ssim=0.2"]}}
    rows.attrs["sections"] = {"statistics": [{"epsilon": 0.5, "dim": 0, "mean_abs_code": 1.0,
                                              "mean_abs_adversarial": 1.1,
                                              "mean_abs_shift": 0.1}]}
    # Without a summary in attrs, the document makes it from the recorded limit lines.
    doc = check_result(strict_json(to_json(result(rows, kind="latent"))), "latent.json")
    assert doc["summary"] == summarize_latent(rows, {"ssim": 0.2})[0]
    assert doc["sections"] == rows.attrs["sections"]
    text = to_table(doc)
    assert "4 inputs, 2 batches, 2 seeds" in text
    assert "AADDC ssim (limit 0.2): 0.425 +- 0.12 over 4 curves; of the mean curve 0.425" in text

    table = _margin_rows()
    doc = check_result(strict_json(to_json(result(table, kind="latent-margin"))), "m.json")
    assert doc["summary"] == summarize_latent_margin(table)
    assert math.isinf(doc["inputs"][2]["l2_tightness"]) and "sections" not in doc
    text = to_table(doc)
    assert "4 of 5 inputs certified and attacked" in text
    assert "l2: 1 violations inside the certificate; 3 broken beyond it, median tightness 2" \
        in text
    assert "whitened: 0 violations inside the certificate; 1 broken beyond it" in text
