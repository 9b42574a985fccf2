"""The attack's distortion columns against closed forms (SPEC sections 2 and 6, [C Fig 4]).

For a linear decoder ``g(z) = w Q z`` (``Q^T Q = I``) and isotropic ``sigma``,
``||Delta(x, d)|| = w ||mu' - mu + eta sigma'||``, so ``||Delta|| / (w sigma')`` is a
(noncentral) chi with ``d_z`` degrees of freedom and noncentrality
``||mu' - mu|| / sigma'``. Its mean and spread are exact, and ``damage = w ||mu' - mu||``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import UNBOXED, LinearVAE
from scipy import special, stats

from rcert.attacks.damage import attack
from rcert.checks import ReliabilityWarning
from rcert.results import text
from rcert.settings import AttackConfig
from rcert.statistics import summary

N_CHECK = 4000
LIGHT = {"restarts": 2, "steps": 40, "n_noise": 32, "n_check": N_CHECK}


def _chi_mean(k: int) -> float:
    """E[chi_k] = sqrt(2) Gamma((k + 1) / 2) / Gamma(k / 2)."""
    return math.sqrt(2) * math.exp(special.gammaln((k + 1) / 2) - special.gammaln(k / 2))


def _ncchi_moments(k: int, nc: float) -> tuple[float, float]:
    """Mean and standard deviation of a noncentral chi: sqrt of ncx2(k, nc^2)."""
    if nc == 0:
        mean = _chi_mean(k)
    else:
        mean = stats.ncx2(k, nc ** 2).expect(np.sqrt, epsabs=1e-12, epsrel=1e-10)
    return mean, math.sqrt(max(k + nc ** 2 - mean ** 2, 0.0))


def _x(n=6, size=12, seed=0):
    return torch.rand(n, size, generator=torch.Generator().manual_seed(seed))


def _within_mc(found, expected, spread, n=N_CHECK, z=5.0):
    """Each input within z standard errors of its exact mean (independent draws each)."""
    se = np.asarray(spread) / math.sqrt(n)
    assert (np.abs(np.asarray(found) - expected) <= z * se).all(), (found, expected, se)


def test_clean_and_mean_threat_distortion_match_the_noncentral_chi(linear_vae):
    config = AttackConfig(threat="mean", **LIGHT)
    df = attack(linear_vae, _x(), config, L=[0.3, 1.0], run=UNBOXED)
    ws, k = linear_vae.w * linear_vae.s, linear_vae.latent_dim
    clean_mean, clean_sd = _ncchi_moments(k, 0.0)
    assert clean_mean == pytest.approx(math.sqrt(8 / math.pi))  # E chi_3, by hand
    # Same fresh draws at every budget: the clean column does not depend on L.
    per_input = df.groupby("index").clean_distortion
    assert (per_input.nunique() == 1).all()
    _within_mc(df.clean_distortion, ws * clean_mean, np.full(len(df), ws * clean_sd))
    for prefix in ("", "noise_"):
        # damage = w ||A d||, so ||mu' - mu|| / s = damage / (w s).
        moments = [_ncchi_moments(k, dmg / ws) for dmg in df[f"{prefix}damage"]]
        mean, sd = (np.array(v) for v in zip(*moments, strict=True))
        _within_mc(df[f"{prefix}distortion"], ws * mean, ws * sd)
    # The attack moves the mean much further than noise, and its distortion shows it.
    assert (df.distortion > df.noise_distortion).all()
    assert (df.distortion > df.clean_distortion).all()


def test_sigma_threat_on_constant_sigma_is_the_clean_distortion_draw_for_draw(linear_vae):
    with pytest.warns(ReliabilityWarning, match="zero-gradient"):
        df = attack(linear_vae, _x(3), AttackConfig(threat="sigma", **LIGHT), L=1.0, run=UNBOXED)
    np.testing.assert_array_equal(df.distortion, df.clean_distortion)
    np.testing.assert_array_equal(df.noise_distortion, df.clean_distortion)
    both = attack(linear_vae, _x(3), AttackConfig(threat="both", **LIGHT), L=1.0, run=UNBOXED)
    mean = attack(linear_vae, _x(3), AttackConfig(threat="mean", **LIGHT), L=1.0, run=UNBOXED)
    # Sigma is constant, so moving it too changes nothing.
    np.testing.assert_allclose(both.distortion, mean.distortion, rtol=1e-6)


class _ScaledSigmaVAE(LinearVAE):
    """LinearVAE whose isotropic sigma is ``s exp(c . x)``: an attack on sigma alone has a
    known best ``d = L c / ||c||`` (no box) and a known distortion."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.register_buffer("c", 0.5 * torch.randn(12, generator=g))

    def encode(self, x):
        mu = x @ self.A.T
        return mu, (self.s * torch.exp(x @ self.c))[:, None].expand_as(mu)


def test_attacks_on_sigma_are_seen_by_the_distortion_and_match_the_closed_form():
    model = _ScaledSigmaVAE()
    x, budget = _x(4), 0.6
    df = attack(model, x, AttackConfig(threat="sigma", optimizer="lbfgs", **LIGHT), L=budget,
                run=UNBOXED)
    # The damage sees only the mean: 0 under threat sigma, whatever the attack did ...
    assert (df.damage == 0).all()
    # ... the distortion sees sigma: w sigma(x + d) E chi_3 at the best d.
    c = model.c.double().numpy()
    sigma_best = model.s * np.exp(x.double().numpy() @ c + budget * np.linalg.norm(c))
    k = model.latent_dim
    mean, sd = _ncchi_moments(k, 0.0)
    _within_mc(df.distortion, model.w * sigma_best * mean, model.w * sigma_best * sd)
    sigma_clean = model.s * np.exp(x.double().numpy() @ c)
    _within_mc(df.clean_distortion, model.w * sigma_clean * mean, model.w * sigma_clean * sd)
    assert (df.distortion > df.noise_distortion).all()


def test_summarize_attack_describes_the_distortions_by_hand():
    df = pd.DataFrame({
        "index": [0, 1, 0, 1], "L": [0.5, 0.5, 1.0, 1.0],
        "damage": [0.0] * 4, "noise_damage": [0.0] * 4,
        "loglik_degradation": [0.0] * 4, "noise_loglik_degradation": [0.0] * 4,
        "delta_norm": [0.5, 0.5, 1.0, 1.0],
        "distortion": [2.0, 3.0, 4.0, 1.0], "clean_distortion": [1.0, 1.0, 1.0, 1.0],
        "noise_distortion": [1.5, 3.5, 2.0, 2.0]})
    s = summary.summarize_attack(df)
    first, second = s["budgets"]
    assert first["distortion"]["mean"] == 2.5 and second["distortion"]["max"] == 4.0
    assert first["clean_distortion"]["mean"] == 1.0
    assert first["noise_distortion"]["median"] == 2.5
    assert first["attack_beats_noise_distortion"] == 0.5
    assert second["attack_beats_noise_distortion"] == 0.5
    # Damage ties at 0 (a sigma attack): counted as not worse than noise.
    assert first["attack_beats_noise"] == 1.0
    lines = text._attack_lines(s)
    assert "attack_beats_noise_distortion" in lines[1] and "noise_distortion" in lines[1]
