"""The empirical margin by attack and bisection, against closed forms (SPEC section 6)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import UNBOXED, LinearVAE, TinyMLPVAE
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

import rcert
from rcert.checks import ReliabilityWarning
from rcert.errors import RcertError
from rcert.evaluation.empirical import empirical_margin
from rcert.settings import EMPIRICAL_ATTACK as DEFAULT_EMPIRICAL
from rcert.settings import AttackConfig, CertifyConfig
from rcert.statistics.binomial import clopper_pearson_lower, clopper_pearson_upper

COLUMNS = ["index", "margin_empirical", "margin_bracket_lo", "margin_bracket_hi", "k_check",
           "n_check", "p_check", "p_check_upper", "k_verify", "p_verify", "p_verify_upper",
           "p_value", "rounds", "decoder_rows"]
# A light attack: the linear model needs little, the tiny one is only checked for invariants.
LIGHT = {"restarts": 2, "steps": 10, "n_noise": 16}


def _data(n, size, seed=0):
    return torch.rand(n, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- closed form


def _top_singular_value(model: LinearVAE) -> float:
    return float(np.linalg.norm(model.A.detach().double().numpy(), 2))


def _p_robust(model: LinearVAE, r: float, rho: float) -> float:
    """P(||Delta(x, d)|| <= r) for the worst d of norm rho: ||Delta||^2 / (w s)^2 is
    noncentral chi-square(d_z, ||A d||^2 / s^2), smallest when ||A d|| = sigma_1 rho."""
    lam = (_top_singular_value(model) * rho / model.s) ** 2
    return float(stats.ncx2.cdf((r / (model.w * model.s)) ** 2, model.latent_dim, lam))


def _radius_at(model: LinearVAE, r: float, p: float) -> float:
    """The radius rho at which the worst direction brings P(robust) down to p."""
    if _p_robust(model, r, 0.0) <= p:
        return 0.0
    return optimize.brentq(lambda rho: _p_robust(model, r, rho) - p, 0.0, 100.0, xtol=1e-12)


def _true_margin(model: LinearVAE, r: float, m: float) -> float:
    """R = s sqrt(lambda*) / ||A||_2 with ncx2.cdf(r^2 / (w s)^2, d_z, lambda*) = m."""
    c = (r / (model.w * model.s)) ** 2
    assert stats.chi2.cdf(c, model.latent_dim) > m
    lam = optimize.brentq(lambda v: stats.ncx2.cdf(c, model.latent_dim, v) - m, 0.0, 1e4,
                          xtol=1e-14)
    return model.s * math.sqrt(lam) / _top_singular_value(model)


def test_true_margin_helper_is_consistent(linear_vae):
    # The two ways of writing the closed form agree, and P(robust) falls through m there.
    for r, m in [(2.0, 0.5), (3.0, 0.8)]:
        big_r = _true_margin(linear_vae, r, m)
        assert _radius_at(linear_vae, r, m) == pytest.approx(big_r, rel=1e-8)
        assert _p_robust(linear_vae, r, 0.99 * big_r) > m > _p_robust(linear_vae, r, 1.01 * big_r)
        assert _p_robust(linear_vae, r, 0.0) == pytest.approx(linear_vae.p0(r), rel=1e-10)


@pytest.mark.parametrize("r,m", [(2.0, 0.5), (3.0, 0.5), (2.5, 0.3), (3.0, 0.8)])
def test_empirical_margin_matches_the_closed_form(r, m, linear_vae):
    """Six inputs (independent draws each) against the exact margin of the linear model.

    Tolerance: success at rho needs k/n <= m on n_check fresh draws. Below
    rho(m + 4 SE) the true P(robust) exceeds m by 4 standard errors, so no check there
    succeeds (about ten checks per input); above rho(m - 4 SE) every check of a good attack
    succeeds, and the bracket's upper end lies within the resolution of the last failure.
    With n_check = 4000 that band is -3 % .. +3.5 % (m = 1/2, r = 3) to -8 % .. +6 %
    (r = 2); a 1 % allowance covers the attack's direction error.
    """
    n_check = 4000
    big_r = _true_margin(linear_vae, r, m)
    resolution = 0.01 * big_r
    x = _data(6, 12)
    df = empirical_margin(linear_vae, x, r=r, m=m, n_check=n_check, resolution=resolution,
                          run=UNBOXED, **LIGHT)
    assert list(df.columns) == COLUMNS
    hi = df.margin_empirical.to_numpy()
    se = math.sqrt(m * (1 - m) / n_check)
    lower = _radius_at(linear_vae, r, m + 4 * se)
    upper = _radius_at(linear_vae, r, m - 4 * se)
    assert lower < big_r < upper
    assert (hi >= lower).all(), (hi / big_r, lower / big_r)
    assert (hi <= upper + resolution + 0.01 * big_r).all(), (hi / big_r, upper / big_r)
    # Averaged over the six inputs, within 3 % of the true margin.
    assert abs(hi.mean() / big_r - 1) < 0.03, hi / big_r
    # The re-check on fresh draws: no direction of norm hi brings P(robust) below the
    # worst one's, and a successful attack left it near m, not far above.
    p_worst = np.array([_p_robust(linear_vae, r, rho) for rho in hi])
    assert (df.p_verify.to_numpy() >= p_worst - 5 * se).all(), (df.p_verify, p_worst)
    assert (df.p_verify.to_numpy() <= m + 6 * se).all()

    cert = rcert.certify(linear_vae, x, r=r, m=m, n_samples=2000, run=UNBOXED)
    # The certificate holds: the certified bound is below the empirical margin (here by far
    # more than the Monte Carlo band above).
    assert (cert.bound_certified.to_numpy() <= lower).all()
    # The whitened bound is sound and below the true margin: for a linear model the first
    # order is exact and the Neyman-Pearson half-space is the worst case.
    assert (cert.bound_whitened.to_numpy() <= big_r).all()
    assert (cert.bound_whitened.to_numpy() > 0).all()
    # ... and so is the whitened bound computed with the exact p0.
    t0 = stats.norm.ppf(linear_vae.p0(r)) - stats.norm.ppf(m)
    assert linear_vae.s * t0 / _top_singular_value(linear_vae) <= big_r


def test_larger_r_gives_a_larger_margin(linear_vae):
    x = _data(4, 12)
    rs = [1.8, 2.4, 3.0]
    truths = [_true_margin(linear_vae, r, 0.5) for r in rs]
    assert np.all(np.diff(truths) > 0.1)
    found = [empirical_margin(linear_vae, x, r=r, n_check=2000, resolution=0.01, run=UNBOXED,
                              **LIGHT)
             .margin_empirical.to_numpy() for r in rs]
    se = math.sqrt(0.25 / 2000)
    for (lo_r, lo), (hi_r, hi) in itertools.pairwise(zip(rs, found, strict=True)):
        # Per input: the smaller r's margin is below the larger r's up to resolution and the
        # Monte Carlo band of each.
        slack = (_radius_at(linear_vae, lo_r, 0.5 - 4 * se) - _radius_at(linear_vae, lo_r, 0.5)
                 + _radius_at(linear_vae, hi_r, 0.5) - _radius_at(linear_vae, hi_r, 0.5 + 4 * se)
                 + 0.01)
        assert (hi >= lo - slack).all()
        assert hi.mean() > lo.mean()


def test_threat_both_equals_mean_when_sigma_is_constant(linear_vae):
    x = _data(3, 12)
    opts = {"r": 2.5, "n_check": 500, "resolution": 0.02, "run": UNBOXED, **LIGHT}
    pd.testing.assert_frame_equal(
        empirical_margin(linear_vae, x, threat="mean", **opts),
        empirical_margin(linear_vae, x, threat="both", **opts))


# --------------------------------------------------------------------------- invariants


def _check_bracket(df, *, m, n_check, alpha, resolution, steps, restarts, n_noise,
                   optimizer="pgd"):
    lo, hi = df.margin_bracket_lo.to_numpy(), df.margin_bracket_hi.to_numpy()
    np.testing.assert_array_equal(df.margin_empirical.to_numpy(), hi)
    assert (lo >= 0).all() and (lo <= hi).all()
    finite = np.isfinite(hi)
    width = hi[finite] - lo[finite]
    limit = resolution if resolution is not None else 0.02 * hi[finite]
    assert (width <= limit + 1e-12).all()
    assert (df.n_check == n_check).all()
    k, p, upper = df.k_check.to_numpy(), df.p_check.to_numpy(), df.p_check_upper.to_numpy()
    assert (k[finite] >= 0).all() and (k[finite] <= n_check).all()
    np.testing.assert_allclose(p[finite], k[finite] / n_check)
    assert (p[finite] <= m).all()
    assert (upper[finite] >= p[finite]).all()
    np.testing.assert_allclose(upper[finite], clopper_pearson_upper(k[finite], n_check, alpha))
    assert (k[~finite] == -1).all() and np.isnan(p[~finite]).all()
    assert np.isnan(upper[~finite]).all()
    kv, pv = df.k_verify.to_numpy(), df.p_verify.to_numpy()
    pv_upper, p_value = df.p_verify_upper.to_numpy(), df.p_value.to_numpy()
    assert (kv[finite] >= 0).all() and (kv[finite] <= n_check).all()
    np.testing.assert_allclose(pv[finite], kv[finite] / n_check)
    np.testing.assert_allclose(pv_upper[finite], clopper_pearson_upper(kv[finite], n_check,
                                                                       alpha))
    # P(K <= k) under Binomial(n_check, m), by summing the pmf.
    brute = [stats.binom.pmf(np.arange(k + 1), n_check, m).sum() for k in kv[finite]]
    np.testing.assert_allclose(p_value[finite], brute, rtol=1e-9)
    assert (kv[~finite] == -1).all()
    assert np.isnan(pv[~finite]).all() and np.isnan(pv_upper[~finite]).all()
    assert np.isnan(p_value[~finite]).all()
    rounds, rows = df.rounds.to_numpy(), df.decoder_rows.to_numpy()
    attacked = hi > 0
    assert (rounds[attacked] >= 1).all() and (rounds[~attacked] == 0).all()
    assert (rows > 0).all()
    verified = n_check * finite
    if optimizer == "pgd":
        # The clean check, then per round: (steps + 1) objective evaluations of
        # restarts x n_noise codes and one check of n_check codes; then the re-check.
        expected = n_check * (1 + rounds) + rounds * restarts * n_noise * (steps + 1) + verified
        np.testing.assert_array_equal(rows, expected)
    else:
        assert (rows > n_check * (1 + rounds) + verified).all()


@pytest.mark.parametrize("case", [
    {"model": "linear", "r": 2.0, "m": 0.5, "resolution": 0.02, "threat": "mean"},
    {"model": "linear", "r": 3.0, "m": 0.7, "resolution": None, "threat": "mean"},
    {"model": "linear", "r": 2.5, "m": 0.5, "resolution": 0.05, "threat": "mean",
     "optimizer": "lbfgs"},
    {"model": "tiny", "r": 0.14, "m": 0.5, "resolution": 0.05, "threat": "mean"},
    {"model": "tiny", "r": 0.14, "m": 0.5, "resolution": None, "threat": "both"},
    {"model": "tiny", "r": 0.15, "m": 0.4, "resolution": 0.1, "threat": "sigma"},
])
def test_bracket_invariants(case):
    if case["model"] == "linear":
        model, x = LinearVAE(), _data(5, 12)
    else:
        model, x = TinyMLPVAE(), _data(6, 10, seed=1)
    optimizer = case.get("optimizer", "pgd")
    n_check, alpha = 300, 0.01
    df = empirical_margin(model, x, r=case["r"], m=case["m"], threat=case["threat"],
                          resolution=case["resolution"], n_check=n_check, alpha=alpha,
                          optimizer=optimizer, run=UNBOXED, **LIGHT)
    assert list(df.columns) == COLUMNS
    np.testing.assert_array_equal(df["index"], np.arange(x.shape[0]))
    _check_bracket(df, m=case["m"], n_check=n_check, alpha=alpha,
                   resolution=case["resolution"], optimizer=optimizer, **LIGHT)
    if case["threat"] != "sigma":
        # These settings break every linear input and most tiny ones within the box.
        assert np.isfinite(df.margin_empirical).mean() >= 0.5
        assert (df.margin_empirical > 0).any()
    assert df.attrs["config"]["threat"] == case["threat"]


def test_more_rounds_decode_more_rows(linear_vae):
    x = _data(2, 12)
    coarse = empirical_margin(linear_vae, x, r=2.0, n_check=300, resolution=0.1, run=UNBOXED,
                              **LIGHT)
    fine = empirical_margin(linear_vae, x, r=2.0, n_check=300, resolution=0.002, run=UNBOXED,
                            **LIGHT)
    assert (fine.rounds > coarse.rounds).all()
    assert (fine.decoder_rows > coarse.decoder_rows).all()
    assert ((fine.margin_bracket_hi - fine.margin_bracket_lo) <= 0.002 + 1e-12).all()


def test_not_robust_unperturbed_has_margin_zero(linear_vae):
    # p0 = chi2.cdf(0.01, 3) ~ 1e-4: broken before any attack.
    n_check = 400
    df = empirical_margin(linear_vae, _data(3, 12), r=0.1, n_check=n_check, run=UNBOXED, **LIGHT)
    assert (df.margin_empirical == 0).all()
    assert (df.margin_bracket_lo == 0).all() and (df.margin_bracket_hi == 0).all()
    assert (df.rounds == 0).all()
    # The check at radius 0 and the re-check of d = 0 on fresh draws.
    assert (df.decoder_rows == 2 * n_check).all()
    assert (df.p_check <= 0.5).all() and (df.k_check >= 0).all()


def test_recheck_at_radius_zero_is_binomial_with_the_closed_form_p0(linear_vae):
    """Broken unperturbed (d = 0): k_verify ~ Binomial(n_check, p0), p0 = F_chi2(r^2/(ws)^2),
    on draws other than those of the check (not equal to k_check everywhere)."""
    r = linear_vae.w * linear_vae.s * math.sqrt(stats.chi2.ppf(0.3, linear_vae.latent_dim))
    p0, n_check = linear_vae.p0(r), 2000
    assert p0 == pytest.approx(0.3)
    df = empirical_margin(linear_vae, _data(8, 12), r=r, n_check=n_check, run=UNBOXED, **LIGHT)
    assert (df.margin_empirical == 0).all()
    se = math.sqrt(p0 * (1 - p0) / n_check)
    assert (np.abs(df.p_verify - p0) <= 5 * se).all(), df.p_verify
    assert (np.abs(df.p_check - p0) <= 5 * se).all()
    assert (df.k_verify != df.k_check).any()
    # Strong evidence against P(robust) > 1/2 at every input.
    assert (df.p_value < 1e-6).all()


def test_no_success_below_max_radius_gives_inf(linear_vae):
    # The true margin at r = 2 is about 0.34: nothing breaks within 0.05.
    df = empirical_margin(linear_vae, _data(3, 12), r=2.0, n_check=300, max_radius=0.05,
                          run=UNBOXED, **LIGHT)
    assert np.isinf(df.margin_empirical).all() and np.isinf(df.margin_bracket_hi).all()
    assert (df.margin_bracket_lo == 0.05).all()
    assert (df.k_check == -1).all() and df.p_check.isna().all()
    # Default start max_radius / 64, doubled up to max_radius: 7 attacks.
    assert (df.rounds == 7).all()
    # A start beyond max_radius is clipped to it: one attack.
    clipped = empirical_margin(linear_vae, _data(3, 12), r=2.0, n_check=300, max_radius=0.05,
                               start=1.0, run=UNBOXED, **LIGHT)
    assert (clipped.rounds == 1).all() and (clipped.margin_bracket_lo == 0.05).all()


def test_unreachable_r_gives_inf_at_the_box_diagonal(tiny_vae):
    # A sigmoid decoder over 10 pixels moves at most sqrt(10) < 4: never broken. The default
    # max_radius is the diagonal of the [0, 1] box.
    df = empirical_margin(tiny_vae, _data(3, 10), r=4.0, n_check=200, **LIGHT)
    assert np.isinf(df.margin_empirical).all()
    np.testing.assert_allclose(df.margin_bracket_lo, math.sqrt(10), rtol=1e-12)


def test_start_per_input_and_margin_does_not_depend_on_start(linear_vae):
    x = _data(3, 12)
    opts = {"r": 2.0, "n_check": 2000, "resolution": 0.005, "run": UNBOXED, **LIGHT}
    a = empirical_margin(linear_vae, x, start=np.array([0.05, 0.4, 3.0]), **opts)
    b = empirical_margin(linear_vae, x, start=0.3, **opts)
    # Different starts visit different radii (different fresh draws): margins agree up to
    # the Monte Carlo band (about +-10 % at n_check = 2000, see the closed-form test).
    np.testing.assert_allclose(a.margin_empirical, b.margin_empirical, rtol=0.15)


@pytest.mark.parametrize("optimizer", ["pgd", "lbfgs"])
def test_rows_depend_only_on_their_index_not_on_batch_or_memory(optimizer, linear_vae):
    x = _data(5, 12)
    opts = {"r": 2.0, "n_check": 300, "resolution": 0.02, "optimizer": optimizer,
            "run": UNBOXED, **LIGHT}
    full = empirical_margin(linear_vae, x, **opts)
    part = empirical_margin(linear_vae, x[[3, 1]], index=np.array([3, 1]), **opts)
    chunked = empirical_margin(linear_vae, x, memory_mb=3e-3, **opts)
    np.testing.assert_array_equal(part["index"], [3, 1])
    pd.testing.assert_frame_equal(chunked, full)
    for column in ("margin_empirical", "margin_bracket_lo", "k_check", "k_verify", "rounds",
                   "decoder_rows"):
        np.testing.assert_array_equal(part[column], full[column].to_numpy()[[3, 1]])


def test_settings_objects_and_shortcuts_agree(linear_vae):
    x = _data(2, 12)
    a = empirical_margin(linear_vae, x, CertifyConfig(r=2.0, seed=4),
                         AttackConfig(n_check=200, resolution=0.05, **LIGHT), run=UNBOXED)
    b = empirical_margin(linear_vae, x, r=2.0, seed=4, n_check=200, resolution=0.05,
                         run=UNBOXED, **LIGHT)
    pd.testing.assert_frame_equal(a, b)
    cfg = a.attrs["config"]
    assert (cfg["r"], cfg["m"], cfg["seed"], cfg["threat"], cfg["n_check"]) == \
        (2.0, 0.5, 4, "mean", 200)
    assert (DEFAULT_EMPIRICAL.restarts, DEFAULT_EMPIRICAL.steps, DEFAULT_EMPIRICAL.n_noise,
            DEFAULT_EMPIRICAL.n_check, str(DEFAULT_EMPIRICAL.threat)) == (1, 10, 128, 200, "mean")


def test_same_seed_same_frame_different_seed_different():
    model, x = TinyMLPVAE(), _data(4, 10, seed=1)
    opts = {"r": 0.14, "n_check": 300, "resolution": 0.05, "threat": "both", **LIGHT}
    a = empirical_margin(model, x, seed=5, **opts)
    b = empirical_margin(model, x, seed=5, **opts)
    pd.testing.assert_frame_equal(a, b)
    c = empirical_margin(model, x, seed=6, **opts)
    assert not a.drop(columns=["index", "n_check"]).equals(c.drop(columns=["index", "n_check"]))
    assert a.attrs["config"]["seed"] == 5 and c.attrs["config"]["seed"] == 6


@pytest.mark.parametrize("kwargs", [
    {"r": 0.0}, {"r": -1.0}, {"r": float("nan")}, {"r": float("inf")},
    {"r": 1.0, "n_check": 0}, {"r": 1.0, "m": 0.0}, {"r": 1.0, "m": 1.0},
    {"r": 1.0, "m": 1.5}, {"r": 1.0, "m": -0.1}, {"r": 1.0, "alpha": 0.0},
    {"r": 1.0, "threat": "logvar"}, {"r": 1.0, "optimizer": "adam"},
    {"r": 1.0, "restarts": 0}, {"r": 1.0, "steps": 0}, {"r": 1.0, "n_noise": 0},
    {"r": 1.0, "resolution": -0.1}, {"r": 1.0, "resolution": 0.0},
    {"r": 1.0, "start": 0.0}, {"r": 1.0, "start": -1.0}, {"r": 1.0, "start": float("inf")},
    {"r": 1.0, "start": np.array([0.1, 0.0, 0.1])},
    {"r": 1.0, "max_radius": 0.0}, {"r": 1.0, "max_radius": -2.0},
    {"r": 1.0, "seed": -1}, {"r": None}, {"r": 1.0, "preset": "quick"},
    {"r": 1.0, "memory_mb": -1.0}, {"r": 1.0, "attack": "fast"},
])
def test_bad_arguments_raise(kwargs, linear_vae):
    with pytest.raises(RcertError):
        empirical_margin(linear_vae, _data(3, 12), **{**LIGHT, "n_check": 50, "run": UNBOXED,
                                                      **kwargs})


def test_start_of_the_wrong_length_raises(linear_vae):
    with pytest.raises(RcertError):
        empirical_margin(linear_vae, _data(3, 12), r=2.0, n_check=50,
                         start=np.array([0.1, 0.2]), run=UNBOXED, **LIGHT)


def test_numpy_float32_r_is_accepted(linear_vae):
    x = _data(2, 12)
    opts = {"n_check": 200, "resolution": 0.05, "run": UNBOXED, **LIGHT}
    a = empirical_margin(linear_vae, x, r=np.float32(2.0), **opts)
    b = empirical_margin(linear_vae, x, r=2.0, **opts)
    pd.testing.assert_frame_equal(a, b)


def test_sigma_threat_on_a_fixed_sigma_model_is_never_broken():
    torch.manual_seed(0)
    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(32,),
                              sigma_mode="fixed", fixed_sigma=0.3)
    x = rcert.load_data("digits:test").subset(3).x
    base = rcert.certify(model, x, r=1.0, n_samples=200)
    r = float(base.r_min_upper.max()) * 1.5  # every input r-robust unperturbed
    with pytest.warns(ReliabilityWarning, match="zero-gradient") as caught:
        df = empirical_margin(model, x, r=r, threat="sigma", n_check=200, max_radius=2.0,
                              **LIGHT)
    assert "3 of 3 inputs" in str(caught[0].message)
    assert np.isinf(df.margin_empirical).all()
    assert (df.margin_bracket_lo == 2.0).all()


# --------------------------------------------------------------------------- Clopper-Pearson


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 2000), data=st.data(),
       alpha=st.floats(1e-4, 0.5, allow_subnormal=False))
def test_clopper_pearson_upper_is_the_mirror_of_lower(n, data, alpha):
    k = data.draw(st.integers(0, n))
    upper = float(clopper_pearson_upper(np.array([k]), n, alpha)[0])
    mirror = 1.0 - float(clopper_pearson_lower(np.array([n - k]), n, alpha)[0])
    assert upper == pytest.approx(mirror, abs=1e-10)
    assert k / n <= upper <= 1.0
    if k == n:
        assert upper == 1.0
    else:
        assert upper < 1.0
        # It is the 1 - alpha quantile of Beta(k + 1, n - k): P(Beta > upper) = alpha.
        assert stats.beta.sf(upper, k + 1, n - k) == pytest.approx(alpha, rel=1e-6)


def test_clopper_pearson_upper_is_vectorised_and_monotone():
    n, alpha = 50, 0.01
    ks = np.arange(n + 1)
    upper = clopper_pearson_upper(ks, n, alpha)
    assert upper.shape == ks.shape
    assert np.all(np.diff(upper) > 0)
    assert upper[-1] == 1.0


@pytest.mark.parametrize("n,alpha", [(20, 0.05), (200, 0.001), (57, 0.2)])
def test_clopper_pearson_upper_exact_coverage(n, alpha):
    """P_p(upper(K) >= p) >= 1 - alpha for every p, K ~ Binomial(n, p): summed exactly."""
    ks = np.arange(n + 1)
    upper = clopper_pearson_upper(ks, n, alpha)
    for p in np.linspace(0.001, 0.999, 199):
        coverage = stats.binom.pmf(ks, n, p)[upper >= p].sum()
        assert coverage >= 1 - alpha - 1e-9, (p, coverage)


def test_clopper_pearson_upper_coverage_over_repeated_trials():
    rng = np.random.default_rng(0)
    n, alpha, trials = 100, 0.05, 4000
    for p in (0.05, 0.5, 0.93):
        k = rng.binomial(n, p, size=trials)
        covered = np.mean(clopper_pearson_upper(k, n, alpha) >= p)
        # 4000 trials: standard error about 0.0035.
        assert covered >= 1 - alpha - 0.012
        # Not trivially conservative: the point estimate alone misses about half the time.
        assert np.mean(k / n >= p) < 0.75
