"""``latent_tightness`` (Lu & Chen spec sections 7.3 and 8, C9) on linear Gaussian models,
where everything has a closed form.

For the conftest :class:`LinearVAE`, ``g(z) = w Q z`` with ``Q^T Q = I`` and ``sigma = s``
constant, so a shift ``d_z`` of the latent mean leaves
``||Delta|| = w ||d_z + s eta||`` and

    P(||Delta|| <= r) = ncx2.cdf((r / (w s))^2, d, (||d_z|| / s)^2),

a function of ``||d_z||`` alone, decreasing in it. The true latent margin ``rho*`` is where
it crosses ``m``; the certificate ``latent_margin = s t(p_lower)`` must lie below it, the
fresh-draw probability at the certificate's boundary must be at least ``m`` (to Monte Carlo
error), and the first factor that breaks must bracket ``rho*`` (every direction being as bad
as any other, the attack only has to reach its sphere).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import LinearVAE
from scipy import optimize, stats

import rcert
from rcert.errors import RcertError
from rcert.evaluation import latent_certificate
from rcert.evaluation.latent_certificate import BEYOND, INSIDE, latent_tightness
from rcert.models.contract import ModelTraits
from rcert.settings import EMPIRICAL_ATTACK, CertifyConfig, RunConfig, merge
from rcert.statistics.latent_summary import summarize_latent_margin

RUN = RunConfig(progress=False, allow=("no-data-range",))
ATTACK = merge(type(EMPIRICAL_ATTACK), EMPIRICAL_ATTACK, steps=5, restarts=1, n_noise=8,
               n_check=400)
N_INPUTS = 6
#: (latent_dim, s, w, r): two linear models with p0 of about 0.74 and 0.92.
CASES = {"d3": (3, 0.5, 2.0, 2.0), "d2": (2, 0.3, 1.5, 1.0)}


def _p_robust(norm, d: int, s: float, w: float, r: float):
    """``P(||Delta|| <= r)`` after a shift of the latent mean of norm ``norm``."""
    norm = np.asarray(norm, dtype=np.float64)
    return stats.ncx2.cdf((r / (w * s)) ** 2, d, np.maximum(norm / s, 1e-12) ** 2)


def _true_margin(level: float, d: int, s: float, w: float, r: float) -> float:
    """The shift norm at which ``P(||Delta|| <= r)`` falls to ``level``."""
    return optimize.brentq(lambda q: _p_robust(q, d, s, w, r) - level, 0.0, 100.0)


def _mc_tol(p, n: int = ATTACK.n_check) -> np.ndarray:
    """Five standard errors of a fresh-draw estimate from ``n`` draws (and a floor)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.05, 0.95)
    return 5 * np.sqrt(p * (1 - p) / n) + 1e-9


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    d, s, w, r = CASES[request.param]
    model = LinearVAE(input_size=12, latent_dim=d, s=s, w=w, seed=1)
    x = torch.randn(N_INPUTS, 12, generator=torch.Generator().manual_seed(2))
    config = CertifyConfig(r=r, m=0.5, n_samples=2000, seed=0)
    table = latent_tightness(model, x, config, ATTACK, run=RUN)
    cert = rcert.certify(model, x, config, run=RUN)
    return {"d": d, "s": s, "w": w, "r": r, "model": model, "x": x, "config": config,
            "table": table, "cert": cert}


def test_columns_agree_with_certify(case):
    table, cert, m = case["table"], case["cert"], case["config"].m
    assert table["index"].tolist() == list(range(N_INPUTS))
    np.testing.assert_allclose(table["p_lower"], cert["p_lower"], rtol=1e-12)
    np.testing.assert_allclose(table["latent_margin"], cert["latent_margin"], rtol=1e-12)
    t = stats.norm.ppf(table["p_lower"]) - stats.norm.ppf(m)
    np.testing.assert_allclose(table["t_lower"], t, rtol=1e-9)
    # Constant isotropic sigma: s_min t(p_lower).
    np.testing.assert_allclose(table["latent_margin"], case["s"] * t, rtol=1e-6)
    assert (table["latent_margin"] > 0).all()


def test_the_certificate_lies_below_the_true_margin(case):
    d, s, w, r = case["d"], case["s"], case["w"], case["r"]
    m = case["config"].m
    p0 = stats.chi2.cdf((r / (w * s)) ** 2, d)
    exact_bound = s * (stats.norm.ppf(p0) - stats.norm.ppf(m))
    rho = _true_margin(m, d, s, w, r)
    # The Gaussian-smoothing bound with the true p0 is below the true margin, and the
    # certificate (a lower confidence bound on p0) below both.
    assert 0 < exact_bound <= rho
    assert (case["table"]["latent_margin"] <= exact_bound).all()
    assert (_p_robust(case["table"]["latent_margin"], d, s, w, r) > m).all()


@pytest.mark.parametrize("geometry", ["l2", "whitened"])
def test_no_violation_and_the_boundary_keeps_m(case, geometry):
    table, config = case["table"], case["config"]
    d, s, w, r, m = case["d"], case["s"], case["w"], case["r"], config.m
    assert not table[f"{geometry}_violation"].any()
    p_inside = table[f"{geometry}_p_inside"].to_numpy()
    # The smallest estimate inside is the one at the boundary, ||d_z|| = latent_margin.
    truth = _p_robust(table["latent_margin"], d, s, w, r)
    assert (p_inside >= m - _mc_tol(m)).all()
    np.testing.assert_array_less(np.abs(p_inside - truth), _mc_tol(truth))
    k = np.rint(p_inside * ATTACK.n_check)
    upper = stats.beta.ppf(1 - config.alpha, k + 1, ATTACK.n_check - k)
    np.testing.assert_allclose(table[f"{geometry}_upper_inside"], upper, rtol=1e-9)
    np.testing.assert_array_equal(table[f"{geometry}_violation"], upper <= m)


@pytest.mark.parametrize("geometry", ["l2", "whitened"])
def test_the_first_break_brackets_the_closed_form_margin(case, geometry):
    table = case["table"]
    d, s, w, r, m = case["d"], case["s"], case["w"], case["r"], case["config"].m
    factors = (*INSIDE, *BEYOND)
    tight = table[f"{geometry}_tightness"].to_numpy()
    assert np.isfinite(tight).all() and (tight >= 1).all()
    assert set(tight) <= set(BEYOND)
    radius = table["latent_margin"] if geometry == "l2" else table["t_lower"]
    np.testing.assert_allclose(table[f"{geometry}_empirical"], tight * radius, rtol=1e-12)
    # In latent units (sigma = s: a whitened radius t is a raw one of s t).
    lm = table["latent_margin"].to_numpy()
    broke_at = tight * lm
    before = np.array([factors[factors.index(f) - 1] for f in tight]) * lm
    # A break is real: the broken norm is past the true margin, to the Monte Carlo error.
    tol = float(_mc_tol(m))
    hi = _true_margin(m + tol, d, s, w, r)
    lo = _true_margin(m - tol, d, s, w, r)
    assert (broke_at >= hi).all(), (broke_at, hi)
    # The factor before did not break, and every direction is as bad: it lies inside.
    assert (before <= lo).all(), (before, lo)
    np.testing.assert_array_equal(table["l2_tightness"], table["whitened_tightness"])


def test_the_summary_counts_what_the_table_holds(case):
    summary = summarize_latent_margin(case["table"])
    assert summary["n_inputs"] == summary["n_certified"] == N_INPUTS
    for geometry in ("l2", "whitened"):
        tight = case["table"][f"{geometry}_tightness"]
        assert summary[geometry]["violations"] == 0
        assert summary[geometry]["n_broken"] == N_INPUTS
        assert summary[geometry]["tightness_median"] == pytest.approx(tight.median())


def test_an_inflated_certificate_is_caught_as_a_violation(monkeypatch):
    """The check is not vacuous: a certificate four times too large breaks inside."""
    real = latent_certificate.certify

    def inflated(*args, **kwargs):
        cert = real(*args, **kwargs)
        cert["latent_margin"] = 4 * cert["latent_margin"]
        return cert

    monkeypatch.setattr(latent_certificate, "certify", inflated)
    model = LinearVAE(input_size=12, latent_dim=3, s=0.5, w=2.0, seed=1)
    x = torch.randn(2, 12, generator=torch.Generator().manual_seed(2))
    table = latent_tightness(model, x, CertifyConfig(r=2.0, n_samples=2000), ATTACK, run=RUN)
    assert table["l2_violation"].all()
    assert not table["whitened_violation"].any()  # t_lower was left as it was
    assert summarize_latent_margin(table)["l2"]["violations"] == 2


def test_inputs_without_a_certificate_are_not_attacked():
    # r far below the noise: p0 = F_chi2((r / (w s))^2) is about 0.03 < m, every input
    # abstains and its attack columns are empty.
    model = LinearVAE(input_size=12, latent_dim=3, s=0.5, w=2.0, seed=1)
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(2))
    table = latent_tightness(model, x, CertifyConfig(r=0.5, n_samples=500), ATTACK, run=RUN)
    assert (table["latent_margin"] == 0).all()
    for geometry in ("l2", "whitened"):
        assert table[f"{geometry}_p_inside"].isna().all()
        assert table[f"{geometry}_tightness"].isna().all()
        assert not table[f"{geometry}_violation"].any()
    summary = summarize_latent_margin(table)
    assert summary["n_certified"] == 0 and summary["l2"]["n_broken"] == 0
    assert summary["l2"]["tightness_median"] is None
    assert table.attrs["config"]["inside"] == list(INSIDE)


class DeterministicLinear(LinearVAE):
    traits = ModelTraits(stochastic_layers=0, encoder="deterministic")


def test_a_deterministic_encoder_is_refused_in_one_line():
    with pytest.raises(RcertError, match=r"deterministic encoder.*needs sigma") as info:
        latent_tightness(DeterministicLinear(), torch.zeros(2, 12), CertifyConfig(r=1.0),
                         ATTACK, run=RUN)
    assert "\n" not in str(info.value)


def test_the_recorded_settings_are_the_ones_used(case):
    recorded = case["table"].attrs["config"]
    assert recorded["r"] == case["r"] and recorded["attack"]["n_check"] == ATTACK.n_check
    assert recorded["beyond"] == list(BEYOND)
    assert dataclasses.asdict(ATTACK)["steps"] == recorded["attack"]["steps"]
    assert isinstance(case["table"], pd.DataFrame)
