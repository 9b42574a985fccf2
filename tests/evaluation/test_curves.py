"""Fixed-direction curves against the linear model's closed form (SPEC section 6, [C Fig 5])."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import UNBOXED, TinyMLPVAE
from scipy import stats

from rcert.checks import ReliabilityWarning
from rcert.errors import RcertError
from rcert.evaluation.curves import curve
from rcert.results import text
from rcert.settings import CertifyConfig
from rcert.statistics import summary

RADII = [0.0, 0.2, 0.4, 0.8, 1.6]


def _data(n, size, seed=0):
    return torch.rand(n, size, generator=torch.Generator().manual_seed(seed))


def test_p_hat_matches_the_noncentral_chi_square_along_a_given_direction(linear_vae):
    """Along u: ||Delta(x, rho u)||^2 / (w s)^2 ~ ncx2(d_z, (rho ||A u|| / s)^2)."""
    x, n = _data(4, 12), 4000
    u = torch.randn(4, 12, generator=torch.Generator().manual_seed(9))
    r = 2.0
    df = curve(linear_vae, x, r=r, radii=RADII, direction=u.numpy(), n_samples=n, run=UNBOXED)
    a = linear_vae.A.detach().double().numpy()
    unit = u.double().numpy() / np.linalg.norm(u.double().numpy(), axis=1, keepdims=True)
    c = (r / (linear_vae.w * linear_vae.s)) ** 2
    for row in df.itertuples():
        lam = (row.rho * np.linalg.norm(a @ unit[row.index]) / linear_vae.s) ** 2
        p = stats.ncx2.cdf(c, linear_vae.latent_dim, lam) if lam > 0 else \
            stats.chi2.cdf(c, linear_vae.latent_dim)
        assert abs(row.p_hat - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (row, p)
    np.testing.assert_allclose(df.delta_norm, df.rho, rtol=1e-6)  # no box: full norm


def test_certified_and_broken_say_what_they_mean(linear_vae):
    df = curve(linear_vae, _data(6, 12), r=2.0, m=0.5, alpha=0.01, radii=RADII, n_samples=300,
               run=UNBOXED)
    assert "robust" not in df.columns
    lower = np.array([stats.beta.ppf(0.01, k, 300 - k + 1) if k > 0 else 0.0 for k in df.k])
    upper = np.array([stats.beta.ppf(0.99, k + 1, 300 - k) if k < 300 else 1.0 for k in df.k])
    np.testing.assert_allclose(df.p_lower, lower, rtol=1e-9)
    np.testing.assert_allclose(df.p_upper, upper, rtol=1e-9)
    np.testing.assert_array_equal(df.certified, lower > 0.5)
    np.testing.assert_array_equal(df.broken, upper <= 0.5)
    assert not (df.certified & df.broken).any()
    # These radii span both verdicts (the true margin at r = 2 is about 0.34).
    assert df.certified.any() and df.broken.any()
    # A certified row has p_hat > m; a broken one p_hat <= m.
    assert (df.p_hat[df.certified] > 0.5).all() and (df.p_hat[df.broken] <= 0.5).all()


def test_rows_do_not_depend_on_batch_or_memory():
    model, x = TinyMLPVAE(), _data(4, 10, seed=2)
    opts = {"r": 0.14, "radii": [0.0, 0.3, 1.0], "n_samples": 200, "direction": "max-damage"}
    full = curve(model, x, **opts)
    chunked = curve(model, x, memory_mb=2e-3, **opts)
    pd.testing.assert_frame_equal(chunked, full, check_exact=False, rtol=1e-5)
    part = curve(model, x[[2]], index=np.array([2]), **opts)
    np.testing.assert_array_equal(part.k, full[full["index"] == 2].k)


def test_settings_object_and_default_samples(linear_vae):
    x = _data(2, 12)
    a = curve(linear_vae, x, CertifyConfig(r=2.0, n_samples=100, seed=3), radii=RADII, run=UNBOXED)
    b = curve(linear_vae, x, r=2.0, n_samples=100, seed=3, radii=RADII, run=UNBOXED)
    pd.testing.assert_frame_equal(a, b)
    default = curve(linear_vae, x, r=2.0, radii=[0.0], run=UNBOXED)
    assert (default.n == CertifyConfig(r=1.0).n_samples).all()


def test_max_damage_on_a_constant_sigma_warns(linear_vae):
    with pytest.warns(ReliabilityWarning, match="zero-gradient"):
        curve(linear_vae, _data(2, 12), r=2.0, radii=[0.5], n_samples=50,
              direction="max-damage", threat="sigma", run=UNBOXED)


@pytest.mark.parametrize("kwargs", [
    {}, {"r": 2.0, "radii": []}, {"r": 2.0, "radii": [-1.0]}, {"r": 2.0, "threat": "logvar"},
    {"r": 2.0, "direction": "sideways"}, {"r": 2.0, "direction": np.zeros(12)},
    {"r": 2.0, "direction": np.ones((3, 12))}, {"r": 2.0, "n_samples": 0},
])
def test_bad_arguments_raise(kwargs, linear_vae):
    with pytest.raises(RcertError):
        curve(linear_vae, _data(2, 12), **{"radii": [0.5], "run": UNBOXED, **kwargs})


def test_summarize_curve_counts_uncrossed_inputs_by_hand():
    # Input 0 is broken from rho = 0.2; input 1 never is; input 2 from rho = 0.
    rows = [(0, 0.0, 0.9, False), (0, 0.1, 0.7, False), (0, 0.2, 0.2, True),
            (0, 0.3, 0.1, True), (1, 0.0, 0.9, False), (1, 0.1, 0.9, False),
            (1, 0.2, 0.8, False), (1, 0.3, 0.45, False), (2, 0.0, 0.1, True),
            (2, 0.1, 0.3, False), (2, 0.2, 0.1, True), (2, 0.3, 0.0, True)]
    df = pd.DataFrame(rows, columns=["index", "rho", "p_hat", "broken"])
    s = summary.summarize_curve(df, m=0.5)
    assert s["n_inputs"] == 3 and s["n_uncrossed"] == 1 and s["largest_rho"] == 0.3
    assert s["crossing"]["count"] == 2
    assert s["crossing"]["min"] == 0.0 and s["crossing"]["max"] == 0.2
    assert all(math.isfinite(v) for v in s["crossing"].values())
    lines = text._curve_lines(s)
    assert any("2 of 3 inputs crossed, 1 did not up to rho = 0.3" in line for line in lines)
    none = summary.summarize_curve(df[df["index"] == 1], m=0.5)
    assert none["n_uncrossed"] == 1 and none["crossing"]["count"] == 0
    assert not any(line.startswith("crossing ") for line in text._curve_lines(none))
