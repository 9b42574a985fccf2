"""Maximum-damage attacks and the projection onto the ball and the box (SPEC section 6)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import UNBOXED, LinearVAE, TinyMLPVAE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rcert
from rcert.attacks.damage import attack
from rcert.attacks.objectives import expected_damage
from rcert.attacks.optimizers import maximise
from rcert.attacks.projection import project
from rcert.engine import noise
from rcert.engine.noise import STREAM_ATTACK, STREAM_START
from rcert.errors import RcertError
from rcert.settings import DAMAGE_ATTACK as DEFAULT_ATTACK
from rcert.settings import AttackConfig

COLUMNS = ["index", "L", "damage", "loglik_degradation", "delta_norm", "objective",
           "distortion", "clean_distortion", "noise_damage", "noise_loglik_degradation",
           "noise_delta_norm", "noise_distortion"]
BOX = (0.0, 1.0)
FAST = {"restarts": 2, "steps": 6, "n_noise": 8}


# --------------------------------------------------------------------------- projection


@st.composite
def projection_cases(draw):
    """``(delta, x, radius, box)`` as float64 arrays: x inside [0, 1], any delta."""
    batch = draw(st.integers(1, 4))
    dim = draw(st.integers(1, 12))
    unit = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)
    x = draw(hnp.arrays(np.float64, (batch, dim), elements=unit))
    scale = draw(st.sampled_from([0.01, 0.3, 1.0, 5.0]))
    coord = st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)
    delta = scale * draw(hnp.arrays(np.float64, (batch, dim), elements=coord))
    radius = draw(hnp.arrays(np.float64, (batch,),
                             elements=st.floats(1e-3, 4.0, allow_subnormal=False)))
    box = BOX if draw(st.booleans()) else None
    return delta, x, radius, box


def _project_np(delta, x, radius, box):
    out = project(torch.from_numpy(delta), torch.from_numpy(x), torch.from_numpy(radius), box)
    assert out.shape == delta.shape and out.dtype == torch.float64
    return out.numpy()


def _dykstra(delta, x, radius, box, iterations=20000):
    """Exact Euclidean projection onto ball ∩ box by Dykstra's alternating projections.

    Independent of rcert's KKT/bisection argument: it only uses the two easy projections
    (radial scaling onto the ball, clipping onto the box) and converges to the projection
    onto their intersection. Returns the point and whether the iteration converged (it can
    stall for thousands of steps where the sphere grazes a face of the box).
    """
    lo, hi = box[0] - x, box[1] - x
    v = delta.copy()
    p = np.zeros_like(v)
    q = np.zeros_like(v)
    for _ in range(iterations):
        y = np.clip(v + p, lo, hi)
        p = v + p - y
        u = y + q
        norm = np.linalg.norm(u)
        v_new = u * min(1.0, radius / norm) if norm > 0 else u
        q = y + q - v_new
        if np.max(np.abs(v_new - v)) < 1e-13 and np.max(np.abs(y - v_new)) < 1e-13:
            return v_new, True
        v = v_new
    return v, False


def _feasible(d, x, radius, box, slack=1e-5):
    norms_ok = np.all(np.linalg.norm(d, axis=1) <= radius * (1 + slack) + 1e-12)
    if box is None:
        return norms_ok
    return norms_ok and np.all(x + d >= box[0] - 1e-12) and np.all(x + d <= box[1] + 1e-12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projection_cases())
def test_project_is_feasible_and_the_exact_projection(case):
    delta, x, radius, box = case
    out = _project_np(delta, x, radius, box)
    assert _feasible(out, x, radius, box)
    for i in range(delta.shape[0]):
        if box is None:
            norm = np.linalg.norm(delta[i])
            expected = delta[i] * min(1.0, radius[i] / norm) if norm > 0 else delta[i]
        else:
            expected, converged = _dykstra(delta[i], x[i], radius[i], box)
            # The brute force is feasible too, so ours cannot be farther from delta.
            assert (np.linalg.norm(out[i] - delta[i])
                    <= np.linalg.norm(expected - delta[i]) + 1e-7)
            if not converged:
                continue  # only the distance comparison above is meaningful then
        np.testing.assert_allclose(out[i], expected, atol=1e-4, rtol=0)


@settings(max_examples=80, deadline=None)
@given(projection_cases())
def test_project_is_idempotent(case):
    delta, x, radius, box = case
    once = _project_np(delta, x, radius, box)
    twice = _project_np(once, x, radius, box)
    # Equal up to float rounding (a radially scaled delta may sit one ulp outside the ball).
    np.testing.assert_allclose(twice, once, rtol=1e-12, atol=1e-15)


@settings(max_examples=80, deadline=None)
@given(projection_cases())
def test_project_leaves_a_feasible_delta_unchanged(case):
    delta, x, radius, box = case
    # Make delta feasible: clip into the box (0 is inside it), then shrink into the ball.
    if box is not None:
        delta = np.clip(delta, box[0] - x, box[1] - x)
    norms = np.linalg.norm(delta, axis=1)
    shrink = np.where(norms > 0.999 * radius, 0.999 * radius / np.maximum(norms, 1e-300), 1.0)
    delta = delta * shrink[:, None]
    np.testing.assert_array_equal(_project_np(delta, x, radius, box), delta)


@settings(max_examples=60, deadline=None)
@given(projection_cases())
def test_project_without_box_is_radial_scaling(case):
    delta, x, radius, _ = case
    out = _project_np(delta, x, radius, None)
    norms = np.linalg.norm(delta, axis=1)
    factor = np.where(norms > radius, radius / np.maximum(norms, 1e-300), 1.0)
    np.testing.assert_allclose(out, delta * factor[:, None], rtol=1e-12, atol=1e-15)
    # Without a box, x plays no part: any x, even outside [0, 1], gives the same answer.
    np.testing.assert_array_equal(_project_np(delta, x + 7.0, radius, None), out)


def test_project_keeps_image_shape_and_acts_per_input():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 4, 4, generator=g)
    delta = 2 * torch.randn(3, 1, 4, 4, generator=g)
    radius = torch.tensor([0.1, 1.0, 100.0])
    out = project(delta, x, radius, BOX)
    assert out.shape == delta.shape
    # Each row is the projection of that row alone.
    for i in range(3):
        alone = project(delta[i:i + 1], x[i:i + 1], radius[i:i + 1], BOX)
        torch.testing.assert_close(out[i:i + 1], alone, rtol=0, atol=0)
    # A huge radius leaves only the box: plain clipping.
    torch.testing.assert_close(out[2], (x[2] + delta[2]).clamp(0, 1) - x[2])
    assert float(out[0].norm()) == pytest.approx(0.1, rel=1e-5)


# --------------------------------------------------------------------------- attack


@pytest.fixture(scope="module")
def shipped():
    return rcert.load("models/vae-digits.safetensors")


@pytest.fixture(scope="module")
def digits8():
    return rcert.load_data("digits:test").subset(8).x


def _tiny_data(n=6, seed=1):
    return torch.rand(n, 10, generator=torch.Generator().manual_seed(seed))


def _model_and_data(which, shipped, digits8):
    if which == "shipped":
        return shipped, digits8
    return TinyMLPVAE(), _tiny_data()


def _objective_brute(model, x, delta, *, threat, n_noise, seed=0, index=None):
    """The maximum-damage objective [C Eq 5] from its definition, one input at a time:
    the mean over the attack's common draws of ||g(mu' + eta sigma') - g(mu(x))|| in float64."""
    index = np.arange(x.shape[0]) if index is None else index
    out = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            eta = noise.gaussian(seed, torch.tensor([int(index[i])]), n_noise,
                                 model.encode(x[i:i + 1])[0].shape[1], stream=STREAM_ATTACK)[0]
            mu, sigma = model.encode(x[i:i + 1])
            mu_d, sigma_d = model.encode(x[i:i + 1] + delta[i:i + 1])
            mu_t = mu_d if threat in ("mean", "both") else mu
            sigma_t = sigma_d if threat in ("sigma", "both") else sigma
            g = model.decode(mu_t + eta * sigma_t).flatten(1).double()
            ref = model.decode(mu).flatten(1).double()
            out.append(float((g - ref).norm(dim=1).mean()))
    return np.array(out)


def _noise_baseline(x, budget, seed=0):
    """The documented baseline: a unit Gaussian direction per input (stream STREAM_START),
    scaled to the budget and projected into the ball and box."""
    u = noise.gaussian(seed, torch.arange(x.shape[0]), 1, x[0].numel(), stream=STREAM_START)
    u = u.reshape(x.shape[0], -1)
    u = (u / u.norm(dim=1, keepdim=True)).view_as(x)
    return project(u * budget, x, torch.full((x.shape[0],), float(budget)), BOX)


@pytest.mark.parametrize("optimizer", ["pgd", "lbfgs"])
@pytest.mark.parametrize("threat", ["mean", "sigma", "both"])
def test_maximise_stays_feasible_reports_its_objective_and_beats_its_start(optimizer, threat):
    model, x = TinyMLPVAE(), _tiny_data()
    radius = torch.tensor([0.2, 0.5, 1.0, 2.0, 0.7, 1.5])
    starts = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    config = AttackConfig(threat=threat, optimizer=optimizer, **FAST)
    found = maximise(model, x, radius, expected_damage, config, seed=0,
                     index=torch.arange(6), box=BOX, starts=starts)
    d = found.delta
    assert (d.norm(dim=1) <= radius * (1 + 1e-5)).all()
    assert float((x + d).min()) >= 0.0 and float((x + d).max()) <= 1.0
    brute = _objective_brute(model, x, d, threat=threat, n_noise=FAST["n_noise"])
    np.testing.assert_allclose(found.value.numpy(), brute, rtol=1e-5, atol=1e-7)
    # The first restart starts at the given direction on the sphere, so the best restart
    # is never worse than that point.
    unit = starts / starts.norm(dim=1, keepdim=True)
    first = project(unit * radius[:, None], x, radius, BOX)
    at_start = _objective_brute(model, x, first, threat=threat, n_noise=FAST["n_noise"])
    assert (found.value.numpy() >= at_start - 1e-5 * np.abs(at_start) - 1e-7).all()
    assert found.moved.all()
    assert found.rows.shape == (6,) and (found.rows >= FAST["restarts"] * FAST["n_noise"]).all()


@pytest.mark.parametrize("which", ["shipped", "tiny"])
@pytest.mark.parametrize("optimizer", ["pgd", "lbfgs"])
@pytest.mark.parametrize("threat", ["mean", "sigma", "both"])
def test_attack_respects_budget_box_and_beats_noise(which, optimizer, threat, shipped,
                                                    digits8):
    model, x = _model_and_data(which, shipped, digits8)
    budgets = [0.5, 2.0]
    df = attack(model, x, L=budgets, threat=threat, optimizer=optimizer, **FAST)
    assert list(df.columns) == COLUMNS
    assert len(df) == len(budgets) * x.shape[0]
    np.testing.assert_array_equal(df["index"], np.tile(np.arange(x.shape[0]), 2))
    np.testing.assert_array_equal(df["L"], np.repeat(budgets, x.shape[0]))
    numeric = df.drop(columns=["loglik_degradation", "noise_loglik_degradation"])
    assert np.isfinite(numeric.to_numpy()).all()
    assert (df.delta_norm <= df.L + 1e-5).all()
    assert (df.noise_delta_norm <= df.L + 1e-5).all()
    assert (df.damage >= 0).all() and (df.noise_damage >= 0).all()
    assert (df.distortion > 0).all() and (df.clean_distortion > 0).all()
    for budget in budgets:
        rows = df[df.L == budget]
        noise_delta = _noise_baseline(x, budget)
        np.testing.assert_allclose(rows.noise_delta_norm, noise_delta.flatten(1).norm(dim=1),
                                   rtol=1e-5)
        # Never weaker than Gaussian noise of the same norm, on the same common draws.
        baseline = _objective_brute(model, x, noise_delta, threat=threat,
                                    n_noise=FAST["n_noise"])
        assert (rows.objective.to_numpy() >= baseline - 1e-5 * np.abs(baseline) - 1e-6).all()
    assert df.attrs["config"]["threat"] == threat and df.attrs["config"]["seed"] == 0


def test_attack_on_the_mean_does_more_damage_than_noise(shipped, digits8):
    df = attack(shipped, digits8, L=[0.5, 1.0], threat="mean", restarts=2, steps=10,
                n_noise=8)
    assert (df.damage >= df.noise_damage).all()
    # And by a real margin on average: noise of the same norm is far from the worst case.
    assert df.damage.mean() > 1.5 * df.noise_damage.mean()


@pytest.mark.parametrize("optimizer", ["pgd", "lbfgs"])
def test_damage_grows_with_the_budget(optimizer, shipped, digits8):
    budgets = [0.25, 0.5, 1.0, 2.0]
    df = attack(shipped, digits8, L=budgets, threat="mean", optimizer=optimizer, restarts=2,
                steps=8, n_noise=8)
    by_budget = df.groupby("L")[["damage", "objective", "noise_damage"]].mean()
    assert list(by_budget.index) == budgets
    assert np.all(np.diff(by_budget.damage) >= 0)
    assert np.all(np.diff(by_budget.objective) >= 0)
    # Budgets are used in full away from the box faces (digits sit at 0 and 1 a lot, so
    # the box may bind; the ball must still be reached when the box lets it).
    assert (df.delta_norm <= df.L + 1e-5).all()
    assert (df.groupby("L").delta_norm.max() > 0.9 * np.array(budgets)).all()


def test_same_seed_same_frame_and_different_seed_different(tiny_vae):
    x = _tiny_data()
    a = attack(tiny_vae, x, L=[0.3, 1.0], threat="both", seed=3, **FAST)
    b = attack(tiny_vae, x, L=[0.3, 1.0], threat="both", seed=3, **FAST)
    pd.testing.assert_frame_equal(a, b)
    c = attack(tiny_vae, x, L=[0.3, 1.0], threat="both", seed=4, **FAST)
    assert not np.allclose(a.objective, c.objective)
    assert not np.allclose(a.noise_damage, c.noise_damage)
    np.testing.assert_array_equal(a["index"], c["index"])
    assert a.attrs["config"]["seed"] == 3 and c.attrs["config"]["seed"] == 4


def test_defaults_come_from_the_settings(tiny_vae):
    assert (DEFAULT_ATTACK.restarts, DEFAULT_ATTACK.steps, DEFAULT_ATTACK.n_noise) == (5, 50, 16)
    assert str(DEFAULT_ATTACK.threat) == "both" and DEFAULT_ATTACK.optimizer == "pgd"
    df = attack(tiny_vae, _tiny_data(n=1), L=0.5, steps=2)
    cfg = df.attrs["config"]
    assert (cfg["threat"], cfg["restarts"], cfg["steps"], cfg["n_noise"]) == ("both", 5, 2, 16)
    assert cfg["seed"] == 0
    # A config object and the shortcuts compose: shortcuts win, None keeps the config's.
    config = AttackConfig(preset="fast", threat="sigma")
    df = attack(tiny_vae, _tiny_data(n=1), config, L=0.5, steps=3, restarts=None)
    cfg = df.attrs["config"]
    assert (cfg["threat"], cfg["restarts"], cfg["steps"], cfg["n_noise"]) == ("sigma", 1, 3, 32)


_NUMERIC = ["L", "damage", "delta_norm", "objective", "distortion", "clean_distortion",
            "noise_damage", "noise_delta_norm", "noise_distortion"]


@pytest.mark.parametrize("optimizer", ["pgd", "lbfgs"])
def test_rows_depend_only_on_their_index_not_on_batch_or_budget(optimizer, tiny_vae):
    x = _tiny_data(n=5)
    opts = {"L": [0.4, 1.2], "threat": "both", "optimizer": optimizer, **FAST}
    full = attack(tiny_vae, x, **opts)
    # One input per chunk (the smallest budget) against all five in one chunk.
    chunked = attack(tiny_vae, x, memory_mb=2e-3, **opts)
    part = attack(tiny_vae, x[[3, 1]], index=np.array([3, 1]), **opts)
    np.testing.assert_array_equal(part["index"], [3, 1, 3, 1])
    expected = full.set_index(["L", "index"]).loc[list(zip(part.L, part["index"],
                                                           strict=True))]
    # Every column up to float rounding: the decoder runs on batches of different sizes.
    for column in _NUMERIC[1:]:
        np.testing.assert_allclose(part[column], expected[column], rtol=1e-4, atol=1e-6,
                                   err_msg=column)
        np.testing.assert_allclose(chunked[column], full[column], rtol=1e-4, atol=1e-6,
                                   err_msg=column)
    if optimizer == "lbfgs":
        # L-BFGS-B solves each input's problem on its own rows from its own clean point:
        # what it found is bit for bit what the input finds alone.
        for column in ("objective", "delta_norm"):
            np.testing.assert_array_equal(part[column], expected[column])
            np.testing.assert_array_equal(chunked[column], full[column])


def test_loglik_degradation_and_damage_match_the_closed_form_of_a_rank_one_model():
    """mu(x) = a.x (d_z = 1), g(z) = w Q z: the damage is w |a.d|, at most w L ||a||, which
    the attack reaches at d = +-L a/||a||; the degradation at those two points is known."""
    model = _LinearWithLikelihood(latent_dim=1)
    a = model.A.detach().double().numpy()[0]
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(3))
    budget = 0.8
    df = attack(model, x, L=budget, threat="mean", restarts=2, steps=60, n_noise=64,
                run=UNBOXED)
    top = model.w * budget * np.linalg.norm(a)
    np.testing.assert_allclose(df.damage, top, rtol=1e-3)
    with torch.no_grad():
        z = model.encode(x)[0].double()
        shift = budget * np.linalg.norm(a)
        clean = model.log_likelihood(x, z)
        options = [((model.log_likelihood(x, z + sign * shift) - clean).abs() / clean.abs())
                   .numpy() for sign in (1, -1)]
    reported = df.loglik_degradation.to_numpy()
    nearest = np.min([np.abs(reported - o) / o for o in options], axis=0)
    assert (nearest < 2e-3).all(), (reported, options)
    assert (df.noise_loglik_degradation >= 0).all()


class _LinearWithLikelihood(LinearVAE):
    """LinearVAE with a Gaussian log-likelihood ``-||x - g(z)||^2 / 2 - 1`` (never 0)."""

    def log_likelihood(self, x, z):
        return -0.5 * ((x.double() - self.decode(z.to(x.dtype)).double()) ** 2).sum(dim=1) - 1.0


def test_model_without_log_likelihood_gives_nan(tiny_vae):
    assert not hasattr(tiny_vae, "log_likelihood")
    df = attack(tiny_vae, _tiny_data(), L=[0.5, 1.0], **FAST)
    assert df.loglik_degradation.isna().all()
    assert df.noise_loglik_degradation.isna().all()
    assert df.damage.notna().all()


@pytest.mark.parametrize("kwargs", [
    {"L": 0.0}, {"L": -1.0}, {"L": [1.0, 0.0]}, {"L": float("nan")}, {"L": float("inf")},
    {"L": 1.0, "threat": "logvar"}, {"L": 1.0, "optimizer": "adam"},
    {"L": 1.0, "restarts": 0}, {"L": 1.0, "steps": 0}, {"L": 1.0, "n_noise": 0},
    {"L": 1.0, "seed": -1}, {"L": 1.0, "seed": 2**63}, {"L": 1.0, "preset": "quick"},
    {"L": 1.0, "memory_mb": 0.0}, {"L": 1.0, "config": "fast"},
])
def test_bad_arguments_raise(kwargs, tiny_vae):
    with pytest.raises(RcertError):
        attack(tiny_vae, _tiny_data(), **kwargs)


@pytest.mark.parametrize("budget", [[], None])
def test_empty_or_missing_budget_raises(budget, tiny_vae):
    with pytest.raises(RcertError):
        attack(tiny_vae, _tiny_data(), L=budget, **FAST)


def _fixed_sigma_model():
    torch.manual_seed(0)
    return rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(32,),
                             sigma_mode="fixed", fixed_sigma=0.3)


@pytest.mark.parametrize("optimizer", ["pgd", "lbfgs"])
def test_sigma_attack_on_a_fixed_sigma_model_warns_and_equals_no_attack(optimizer, digits8):
    model = _fixed_sigma_model()
    with pytest.warns(rcert.checks.ReliabilityWarning, match="zero-gradient") as caught:
        df = attack(model, digits8, L=[0.5, 2.0], threat="sigma", optimizer=optimizer, **FAST)
    messages = [str(w.message) for w in caught
                if isinstance(w.message, rcert.checks.ReliabilityWarning)]
    assert len(messages) == 1 and "8 of 8 inputs" in messages[0]
    # sigma cannot move: every perturbation has the objective of no perturbation ...
    base = _objective_brute(model, digits8, torch.zeros_like(digits8), threat="sigma",
                            n_noise=FAST["n_noise"])
    np.testing.assert_allclose(df.objective, np.tile(base, 2), rtol=1e-5)
    # ... the fresh-draw distortion is the clean one, draw for draw, and no damage is done.
    np.testing.assert_array_equal(df.distortion, df.clean_distortion)
    np.testing.assert_array_equal(df.noise_distortion, df.clean_distortion)
    assert (df.damage == 0).all() and (df.loglik_degradation == 0).all()
    assert (df.delta_norm <= df.L + 1e-5).all()


def test_an_attack_that_moves_does_not_warn(tiny_vae, recwarn):
    attack(tiny_vae, _tiny_data(), L=0.5, threat="sigma", **FAST)
    assert not [w for w in recwarn if isinstance(w.message, rcert.checks.ReliabilityWarning)]


def _linear_top_direction_case(optimizer, steps):
    model = LinearVAE()
    a = model.A.detach().double().numpy()
    _, sv, vt = np.linalg.svd(a)
    assert sv[0] > 1.5 * sv[1]  # a clear top direction
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(0))
    opts = {"restarts": 2, "steps": steps, "optimizer": optimizer, "n_noise": 256}
    found = maximise(model, x, torch.full((3,), 1.5), expected_damage,
                     AttackConfig(threat="mean", **opts), seed=0, index=torch.arange(3),
                     box=None)
    return (model, x, opts, sv, vt, found.delta.double().numpy(),
            found.value.double().numpy())


def test_linear_vae_attack_finds_the_top_singular_direction():
    """E||w Q (A d + s eta)|| over ||d|| <= L peaks at d = L v1, v1 A's top right-singular
    vector (no box: LinearVAE has no data_range)."""
    budget = 1.5
    model, x, opts, sv, vt, d, _ = _linear_top_direction_case("lbfgs", 40)
    norms = np.linalg.norm(d, axis=1)
    np.testing.assert_allclose(norms, budget, rtol=1e-5)
    assert (np.abs(d @ vt[0]) / norms > 0.99).all()
    # attack() reports the same: full budget, damage ||w A d|| close to w L sigma_1.
    df = attack(model, x, L=budget, threat="mean", run=UNBOXED, **opts)
    np.testing.assert_allclose(df.delta_norm, budget, rtol=1e-5)
    top = model.w * budget * sv[0]
    assert (df.damage <= top * (1 + 1e-5)).all()
    assert (df.damage >= 0.99 * top).all()
    assert (df.damage > df.noise_damage).all()
    assert math.isnan(df.loglik_degradation[0])


def test_linear_vae_pgd_converges_to_the_top_singular_direction():
    _, _, _, _, vt, d, value = _linear_top_direction_case("pgd", 120)
    *_, best = _linear_top_direction_case("lbfgs", 40)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.5, rtol=1e-5)
    assert (np.abs(d @ vt[0]) / np.linalg.norm(d, axis=1) > 0.99).all()
    assert (value >= best * (1 - 1e-3)).all()
