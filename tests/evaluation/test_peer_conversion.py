"""docs/peers.md: the Lipschitz-VAE code's two-draw statistic against rcert's draw-to-mean one.

On a linear decoder with a sigma that the perturbation does not move,
``P(||g(z2) - g(z1)|| <= r)`` at ``d`` (``z1 ~ q(z|x)``, ``z2 ~ q(z|x+d)``, independent) equals
rcert's ``P(||g(z) - g(mu(x))|| <= r / sqrt 2)`` at ``d / sqrt 2``. Three computations must
agree: rcert's own distance sampling, an independent numpy simulation of the two draws,
and the noncentral chi-square closed form.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LinearVAE, TinyMLPVAE
from scipy import stats

from rcert.engine import montecarlo

N_DRAWS = 20_000
R = 2.5
DOCS = Path(__file__).resolve().parents[2] / "docs" / "peers.md"


def _inputs(model, n=4):
    x = torch.rand(n, model.input_shape[0], generator=torch.Generator().manual_seed(0))
    d = torch.randn(n, model.input_shape[0], generator=torch.Generator().manual_seed(1))
    return x, d / d.norm(dim=1, keepdim=True)


def _rcert_p(model, x, d, radius):
    """rcert's ``P(||g(mu(x + d) + sigma eta) - g(mu(x))|| <= radius)``, by its own sampling."""
    with torch.no_grad():
        mu0, _ = model.encode(x)
        mu, sigma = model.encode(x + d.to(x.dtype))
        dist = montecarlo.distortion_norms(model, mu, sigma, index=torch.arange(len(x)),
                                           n_samples=N_DRAWS, seed=0, max_rows=1 << 16,
                                           reference=model.decode(mu0).flatten(1))
    return (dist <= radius).double().mean(dim=1).numpy()


def _two_draw_p(model, x, d, radius, seed=2):
    """The peer's ``P(||g(z2) - g(z1)|| <= radius)``, simulated in numpy from the model's
    weights: ``z1 ~ N(A x, s^2 I)``, ``z2 ~ N(A (x + d), s^2 I)``, ``g(z) = w Q z``."""
    a = model.A.detach().double().numpy()
    decoder = model.w * model.Q.double().numpy()
    rng = np.random.default_rng(seed)
    out = []
    for xi, di in zip(x.double().numpy(), d.double().numpy(), strict=True):
        z1 = a @ xi + model.s * rng.standard_normal((N_DRAWS, model.latent_dim))
        z2 = a @ (xi + di) + model.s * rng.standard_normal((N_DRAWS, model.latent_dim))
        out.append(np.mean(np.linalg.norm((z2 - z1) @ decoder.T, axis=1) <= radius))
    return np.array(out)


def _closed_form(model, x_shift, radius, scale):
    """``P(||N(W A shift, scale^2 (w s)^2 I)|| <= radius)`` in the decoder's range."""
    shift = (x_shift.double().numpy() @ model.A.detach().double().numpy().T) * model.w
    sd = scale * model.w * model.s
    return stats.ncx2.cdf((radius / sd) ** 2, model.latent_dim,
                          np.sum(shift**2, axis=1) / sd**2)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_two_draws_at_r_are_rcert_at_r_over_sqrt2(rho):
    model = LinearVAE(input_size=12, latent_dim=3, s=0.5, w=2.0)
    x, u = _inputs(model)
    d = rho * u.double()
    exact = _closed_form(model, d, R, scale=math.sqrt(2))
    # The identity itself, in closed form: both sides are one noncentral chi-square.
    np.testing.assert_allclose(_closed_form(model, d / math.sqrt(2), R / math.sqrt(2), 1.0),
                               exact, rtol=1e-12)
    assert np.all((exact > 0.05) & (exact < 0.95))  # informative probabilities, not 0 or 1
    tolerance = 4.5 * np.sqrt(exact * (1 - exact) / N_DRAWS)
    assert np.all(np.abs(_rcert_p(model, x, d / math.sqrt(2), R / math.sqrt(2)) - exact)
                  < tolerance)
    assert np.all(np.abs(_two_draw_p(model, x, d, R) - exact) < tolerance)


def test_without_the_rescaling_the_two_statistics_differ():
    # At the same r the peer's probability is much lower: the numbers are not comparable.
    model = LinearVAE(input_size=12, latent_dim=3, s=0.5, w=2.0)
    x, u = _inputs(model)
    same_r = _rcert_p(model, x, 0 * u, R)
    assert np.all(_two_draw_p(model, x, 0 * u, R) < same_r - 0.2)


def test_the_triangle_bound_holds_on_a_nonlinear_decoder():
    # docs/peers.md: P(||g(z2) - g(z1)|| <= r) >= P(D_d <= r/2) P(D_0 <= r/2) for any decoder.
    model = TinyMLPVAE(input_size=10, latent_dim=3)
    x, u = _inputs(model, n=3)
    d = 0.5 * u
    r = 0.3
    with torch.no_grad():
        mu0, sigma0 = model.encode(x)
        mu1, sigma1 = model.encode(x + d)
        g = torch.Generator().manual_seed(3)
        z1 = mu0[:, None] + sigma0[:, None] * torch.randn(3, N_DRAWS, 3, generator=g)
        z2 = mu1[:, None] + sigma1[:, None] * torch.randn(3, N_DRAWS, 3, generator=g)
        two = (model.decode(z2) - model.decode(z1)).norm(dim=-1)
    p_two = (two <= r).double().mean(dim=1).numpy()
    bound = _rcert_p(model, x, d, r / 2) * _rcert_p(model, x, 0 * d, r / 2)
    assert np.all((bound > 0.05) & (bound < 0.95))
    assert np.all(p_two >= bound - 4.5 * np.sqrt(0.25 / N_DRAWS))


def test_the_quoted_clopper_pearson_interval_is_scipys():
    low = stats.beta.ppf(0.025, 20, 21)
    high = stats.beta.ppf(0.975, 21, 20)
    quoted = re.search(r"\*\*\[(0\.\d{3}), (0\.\d{3})\]\*\*", DOCS.read_text())
    assert quoted is not None
    assert (float(quoted.group(1)), float(quoted.group(2))) == (round(low, 3), round(high, 3))


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)`` summed term by term, without scipy."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def _tail_root(tail, target: float) -> float:
    """The ``p`` in (0, 1) where the monotone ``tail(p)`` crosses ``target``, by bisection."""
    lo, hi = 0.0, 1.0
    rising = tail(0.75) > tail(0.25)
    for _ in range(200):
        mid = (lo + hi) / 2
        if (tail(mid) < target) == rising:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_the_quoted_clopper_pearson_interval_inverts_the_binomial_tails():
    # Independently of the beta quantiles: the 95% interval at 20/40 holds the p with
    # P(Bin(40, p) >= 20) >= 0.025 and P(Bin(40, p) <= 20) >= 0.025.
    low = _tail_root(lambda p: 1 - _binomial_cdf(19, 40, p), 0.025)
    high = _tail_root(lambda p: _binomial_cdf(20, 40, p), 0.025)
    quoted = re.search(r"\*\*\[(0\.\d{3}), (0\.\d{3})\]\*\*", DOCS.read_text())
    assert (float(quoted.group(1)), float(quoted.group(2))) == (round(low, 3), round(high, 3))


def test_the_quoted_chances_of_a_false_break():
    # A start calls a candidate broken when p_hat = k/40 <= 0.5, i.e. k <= 20; with 5
    # starts, when any of them does.
    text = " ".join(DOCS.read_text().split())
    one = _binomial_cdf(20, 40, 0.6)
    five = 1 - (1 - one) ** 5
    five_at_065 = 1 - (1 - _binomial_cdf(20, 40, 0.65)) ** 5
    assert (f"at a true `P(D₂ ≤ r) = 0.6`, one start does so with probability {one:.3f} and "
            f"one of five with {five:.3f}; at 0.65, {five_at_065:.3f} for one of five") in text


def test_the_quoted_share_of_breaks_that_held_is_the_benchmarks():
    # benchmarks/bench_empirical.py: the rebuilt scan's break at its own margin, rechecked on
    # 4000 fresh draws, holds where the fresh P(||Delta|| <= r) is at most 1/2.
    run = json.loads((DOCS.parents[1] / "benchmarks" / "results"
                      / "bench_empirical.json").read_text())
    fresh = [p for config in run["configs"]
             for p in config["baselines"]["lbfgs10@10"]["p_verify_at_breaking"]]
    held = sum(p <= 0.5 for p in fresh)
    text = " ".join(DOCS.read_text().split())
    assert f"held on fresh draws for {held} of {len(fresh)} inputs" in text
