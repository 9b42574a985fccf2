"""Theorem 1 is first order: on a sharply non-linear encoder its bound fails (SPEC section 4).

The model (``kinked_vae`` in conftest) has ``mu`` flat (slope 1) within ``c = 0.05`` of
``x = 1/2`` and rising by ``1e6`` per unit of input beyond. ``certify`` sees only the slope at
``x`` and certifies a margin of about 2; a hand-made perturbation of norm ~0.06 that crosses
the kink destroys r-robustness. No attack is involved: the perturbation is written down, and
its failure is checked in closed form and by Monte Carlo through the engine's own sampler.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Kink, kinked_vae
from scipy import stats

import rcert
from rcert.engine.montecarlo import distortion_norms
from rcert.statistics.binomial import clopper_pearson_upper

# Inputs inside the flat region, and how far past the kink the perturbation goes.
X = np.array([[0.46], [0.5], [0.53]], dtype=np.float32)
PAST_KINK = 0.01
N_SAMPLES = 500


def _perturbation(x: np.ndarray, beyond: float) -> np.ndarray:
    """Away from the centre, to ``beyond`` past the kink (negative: short of it)."""
    offset = x - Kink.centre
    direction = np.where(offset < 0, -1.0, 1.0)
    return (direction * (Kink.half_width - np.abs(offset) + beyond)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return kinked_vae()


@pytest.fixture(scope="module")
def certificate(model):
    return rcert.certify(model, torch.from_numpy(X), r=Kink.r, n_samples=N_SAMPLES, seed=0)


def test_the_model_is_the_closed_form(model):
    grid = np.linspace(0.0, 1.0, 201, dtype=np.float32)[:, None]
    with torch.no_grad():
        mu, sigma = model.encode(torch.from_numpy(grid))
        g = model.decode(torch.tensor([[-3.0], [0.0], [2.0]]))
    flat = np.abs(grid - Kink.centre) < Kink.half_width
    np.testing.assert_allclose(mu.numpy()[flat], Kink.mu(grid)[flat], rtol=0, atol=1e-6)
    # Beyond the kink float32 rounds pre-activations of size ~gain to ~0.06 absolute.
    np.testing.assert_allclose(mu.numpy()[~flat], Kink.mu(grid)[~flat], rtol=1e-5, atol=0.1)
    assert flat.sum() > 10 and (~flat).sum() > 100
    assert torch.all(sigma == Kink.sigma)
    np.testing.assert_allclose(g.numpy().ravel(), 0.5 + Kink.scale * np.array([-3.0, 0, 2]),
                               rtol=1e-6)


def test_the_first_order_certificate_is_large(certificate):
    df = certificate
    assert not df["abstain"].any()
    # The Jacobian at x is the slope of the flat part: the kink is invisible to it.
    np.testing.assert_allclose(df["jacobian_fro"], Kink.slope, rtol=1e-6)
    # Theorem 1 in closed form: sigma * Phi^{-1}(p_lower) / slope, and p_lower <= p0 (at 1 -
    # alpha), so the certified bound lies below the bound at the true p0 (about 2.24) ...
    expected = Kink.sigma * stats.norm.ppf(df["p_lower"]) / Kink.slope
    np.testing.assert_allclose(df["bound_certified"], expected, rtol=1e-6)
    assert (df["bound_certified"] <= Kink.sigma * stats.norm.ppf(Kink.p0()) / Kink.slope).all()
    # ... and far above the distance to the kink, which is at most c = 0.05.
    assert (df["bound_certified"] > 1.0).all()


def test_a_perturbation_past_the_kink_breaks_what_theorem_1_certified(model, certificate):
    x = torch.from_numpy(X)
    d = torch.from_numpy(_perturbation(X, PAST_KINK))
    norms = d.abs().numpy().ravel()
    # Well inside the certified radius.
    assert (norms < certificate["bound_certified"].to_numpy() / 10).all()

    with torch.no_grad():
        mu, sigma = model.encode(x)
        mu_adv, _ = model.encode(x + d)
        reference = model.decode(mu).flatten(1)
    shift = (mu_adv - mu).numpy().ravel()
    np.testing.assert_allclose(shift, Kink.gain * PAST_KINK + Kink.slope * d.numpy().ravel(),
                               rtol=1e-3)
    # Closed form: P(||Delta(x, d)|| <= r) is a Gaussian interval probability far in the tail.
    assert (Kink.p_robust(shift) < 1e-100).all()

    # Monte Carlo through the engine's sampler (the theorem's threat model: sigma(x) held).
    index = torch.arange(len(X))
    dist = distortion_norms(model, mu_adv, sigma, index=index, n_samples=2000, seed=1,
                            max_rows=100_000, stream=7, reference=reference)
    k = (dist <= Kink.r).sum(dim=1).numpy()
    assert (k == 0).all()
    assert (clopper_pearson_upper(k, 2000, 1e-9) < 0.5).all()  # not r-robust, beyond doubt

    # And directly, with no rcert code but the model's forward passes.
    eta = torch.randn(len(X), 2000, 1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        g = model.decode((mu_adv[:, None, :] + eta * sigma[:, None, :]).reshape(-1, 1))
    direct = (g.reshape(len(X), 2000, -1) - reference[:, None, :]).norm(dim=-1)
    assert (direct > Kink.r).float().mean() == 1.0


def test_the_linearisation_predicted_robustness_there(model, certificate):
    # What the first-order argument says at the same d: P >= Phi(Phi^{-1}(p0) - ||J d|| / s),
    # well above m = 1/2. The exact probability is ~0: the O(eps) term is everything here.
    d = np.abs(_perturbation(X, PAST_KINK)).ravel()
    predicted = stats.norm.cdf(stats.norm.ppf(Kink.p0()) - Kink.slope * d / Kink.sigma)
    assert (predicted > 0.9).all()
    # Short of the kink the linearisation is exact, and the input stays r-robust.
    short = torch.from_numpy(_perturbation(X, -PAST_KINK))
    with torch.no_grad():
        shift = (model.encode(torch.from_numpy(X) + short)[0]
                 - model.encode(torch.from_numpy(X))[0]).numpy().ravel()
    np.testing.assert_allclose(shift, Kink.slope * short.numpy().ravel(), rtol=1e-3, atol=1e-4)
    assert (Kink.p_robust(shift) > 0.5).all()
