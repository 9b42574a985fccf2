import itertools
import math

import numpy as np
import pytest
import torch
from conftest import UNBOXED, LinearVAE, TinyMLPVAE
from scipy import stats
from torch import nn

from rcert.engine.certificates import COLUMNS
from rcert.engine.certify import certify
from rcert.errors import RcertError
from rcert.runs.training import recommend_r
from rcert.settings import RunConfig


def _rand(*shape: int) -> torch.Tensor:
    """Uniform test inputs from a fixed seed, so a failure reproduces under -k."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def _repeat(x, n):
    """The same input ``n`` times: independent draws per row, so one call makes many trials."""
    return x.expand(n, *x.shape[1:]).clone()


def test_linear_vae_matches_closed_forms(linear_vae):
    r, m, n = 2.0, 0.5, 20000
    df = certify(linear_vae, _rand(3, 12), r=r, m=m, n_samples=n, alpha=0.001, run=UNBOXED)
    assert list(df.columns) == list(COLUMNS)
    a = linear_vae.A.detach().double().numpy()
    assert np.allclose(df.jacobian_fro, np.linalg.norm(a))
    assert np.allclose(df.jacobian_spec, np.linalg.norm(a, 2))
    assert np.allclose(df.jacobian_whitened, np.linalg.norm(a / 0.5, 2))
    assert np.allclose(df.sigma_min, 0.5)
    p0 = linear_vae.p0(r)
    assert np.all(np.abs(df.p_hat - p0) < 5 * math.sqrt(p0 * (1 - p0) / n))
    assert np.allclose(df.r_min, linear_vae.distance_quantile(m), rtol=0.02)
    t0 = stats.norm.ppf(p0)
    assert np.allclose(df.bound, 0.5 * t0 / np.linalg.norm(a), rtol=0.05)


def test_clopper_pearson_coverage_over_repeated_trials():
    model, r, alpha = LinearVAE(), 2.2, 0.05
    p0 = model.p0(r)
    df = certify(model, _repeat(_rand(1, 12), 2000), r=r, n_samples=200, alpha=alpha,
                 run=UNBOXED)
    # Each row is an independent trial (own noise stream); coverage >= 1 - alpha up to
    # simulation error (2000 trials: SE ~ 0.005).
    assert np.mean(df.p_lower <= p0) >= 1 - alpha - 0.015
    # The upper confidence bound on r_min covers the true m-quantile as often.
    assert np.mean(df.r_min_upper >= model.distance_quantile(0.5)) >= 1 - alpha - 0.015
    # And it is not trivially conservative: the point estimate alone would miss often.
    assert np.mean(df.p_hat <= p0) < 0.7


def test_certified_iff_r_at_least_r_min_upper(tiny_vae):
    x = _rand(30, 10)
    base = certify(tiny_vae, x, r=1.0, n_samples=300)
    for r in np.quantile(base.r_min_upper, [0.1, 0.5, 0.9]):
        df = certify(tiny_vae, x, r=float(r), n_samples=300)
        assert np.array_equal(~df.abstain, df.r_min_upper <= r)
        assert np.array_equal(df.p_hat > 0.5, df.r_min <= r)


def test_orderings_hold(tiny_vae):
    df = certify(tiny_vae, _rand(40, 10), r=0.6, n_samples=500, alpha=0.01)
    assert (df.bound_certified <= df.bound_spectral * (1 + 1e-12)).all()
    assert (df.bound_spectral <= df.bound_whitened * (1 + 1e-12)).all()
    assert (df.bound_certified <= df.bound).all()
    assert (df.p_lower <= df.p_hat).all()
    assert (df.r_min <= df.r_min_upper).all()
    assert (df.latent_margin >= 0).all()
    assert (df.jacobian_spec <= df.jacobian_fro * (1 + 1e-12)).all()
    certified = ~df.abstain
    assert certified.any() and (df.bound_certified[certified] > 0).all()
    assert (df.bound_certified[~certified] == 0).all()


def test_monotone_in_r_and_m(tiny_vae):
    x = _rand(20, 10)
    runs = [certify(tiny_vae, x, r=r, n_samples=300) for r in (0.3, 0.6, 1.2)]
    for lo, hi in itertools.pairwise(runs):
        assert (lo.k <= hi.k).all()
        for col in ("bound", "bound_certified", "bound_whitened", "latent_margin"):
            assert (lo[col] <= hi[col]).all()
    strict = certify(tiny_vae, x, r=0.6, m=0.8, n_samples=300)
    assert (strict.bound_whitened <= runs[1].bound_whitened).all()
    assert (strict.r_min >= runs[1].r_min).all()


def test_same_seed_same_result_and_subsets_reproduce_rows(tiny_vae):
    x = _rand(12, 10)
    a = certify(tiny_vae, x, r=0.6, n_samples=200, seed=3)
    b = certify(tiny_vae, x, r=0.6, n_samples=200, seed=3)
    assert a.equals(b)
    rows = [2, 7, 11]
    sub = certify(tiny_vae, x[rows], r=0.6, n_samples=200, seed=3, index=rows)
    assert np.array_equal(sub["index"], rows)
    assert np.array_equal(sub.k, a.k.iloc[rows])
    assert np.allclose(sub.bound_whitened, a.bound_whitened.iloc[rows])
    other = certify(tiny_vae, x, r=0.6, n_samples=200, seed=4)
    assert not np.allclose(other.r_min, a.r_min)


def test_memory_budget_changes_chunks_not_results(tiny_vae):
    x = _rand(15, 10)
    big = certify(tiny_vae, x, r=0.6, n_samples=100)
    small = certify(tiny_vae, x, r=0.6, n_samples=100, memory_mb=0.01)
    assert np.array_equal(small.k, big.k)
    assert np.allclose(small.bound_whitened, big.bound_whitened)


def test_p_hat_one_is_capped_and_finite():
    model = LinearVAE(s=1e-4)
    df = certify(model, _rand(2, 12), r=1.0, n_samples=100, alpha=0.01, run=UNBOXED)
    assert (df.p_hat == 1).all()
    a = model.A.detach().double().numpy()
    expected = 1e-4 * stats.norm.ppf(1 - 1 / 200) / np.linalg.norm(a)
    assert np.allclose(df.bound, expected)
    assert np.allclose(df.p_lower, 0.01 ** (1 / 100))


class ConstantEncoder(LinearVAE):
    def encode(self, x):
        mu = torch.zeros(x.shape[0], self.latent_dim) + 0 * x[:, :1]
        return mu, torch.full_like(mu, self.s)


def test_zero_jacobian_gives_infinite_margin_not_division_error():
    df = certify(ConstantEncoder(), _rand(2, 12), r=3.0, n_samples=200,
                 run=RunConfig(allow=("no-data-range", "zero-input-gradient")))
    assert (df.jacobian_fro == 0).all() and not df.abstain.any()
    for col in ("bound", "bound_certified", "bound_spectral", "bound_whitened"):
        assert np.isinf(df[col]).all()
    assert np.isfinite(df.latent_margin).all()


def test_abstains_when_r_is_below_r_min(linear_vae):
    df = certify(linear_vae, _rand(4, 12), r=0.2, n_samples=300, run=UNBOXED)
    assert df.abstain.all()
    for col in ("bound_certified", "bound_spectral", "bound_whitened", "latent_margin", "bound"):
        assert (df[col] == 0).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"r": 0.0}, "r must be"), ({"r": -1.0}, "r must be"), ({"r": float("nan")}, "r must be"),
    ({"n_samples": 0}, "n_samples"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"),
    ({"m": 1.2}, "m must"), ({"m": 0.0}, "m must"),
])
def test_bad_options(tiny_vae, kwargs, message):
    args = {"r": 1.0, "n_samples": 10} | kwargs
    with pytest.raises(RcertError, match=message):
        certify(tiny_vae, _rand(2, 10), **args)


def test_bad_seed_and_index(tiny_vae):
    with pytest.raises(RcertError, match="seed"):
        certify(tiny_vae, _rand(2, 10), r=1.0, n_samples=10, seed=-1)
    with pytest.raises(RcertError, match="index"):
        certify(tiny_vae, _rand(2, 10), r=1.0, n_samples=10, index=[0, -3])
    with pytest.raises(RcertError, match="index"):
        certify(tiny_vae, _rand(2, 10), r=1.0, n_samples=10, index=[0, 1, 2])


def test_bad_data(tiny_vae):
    x = _rand(3, 10)
    x[1, 4] = float("nan")
    with pytest.raises(RcertError, match="NaN or Inf"):
        certify(tiny_vae, x, r=1.0, n_samples=10)
    with pytest.raises(RcertError, match="Inf"):
        certify(tiny_vae, torch.full((2, 10), float("inf")), r=1.0, n_samples=10)
    with pytest.raises(RcertError, match="data range"):
        certify(tiny_vae, 255 * _rand(2, 10), r=1.0, n_samples=10)
    with pytest.raises(RcertError, match="input shape"):
        certify(tiny_vae, _rand(2, 11), r=1.0, n_samples=10)
    with pytest.raises(RcertError, match="at least one input"):
        certify(tiny_vae, _rand(0, 10), r=1.0, n_samples=10)


def test_model_without_declared_shape_fails_cleanly_on_wrong_shape():
    model = TinyMLPVAE()
    del model.input_shape
    with pytest.raises(RcertError, match="cannot encode"):
        certify(model, _rand(2, 3, 4), r=1.0, n_samples=10)


class LogVarEncoder(TinyMLPVAE):
    def encode(self, x):
        mu, sigma = super().encode(x)
        return mu, 2 * torch.log(sigma)  # log-variance: negative for sigma < 1


def test_non_positive_sigma_is_refused_with_a_hint():
    with pytest.raises(RcertError, match="logvar"):
        certify(LogVarEncoder(), _rand(2, 10), r=1.0, n_samples=10)


def test_recommend_r_certifies_most_inputs(tiny_vae):
    x = _rand(50, 10)
    r = recommend_r(tiny_vae, x, n_samples=300)
    df = certify(tiny_vae, x, r=r, n_samples=300)
    assert 0.85 <= np.mean(~df.abstain) <= 1.0
    assert float(f"{r:.2g}") == r


class BatchNormEncoder(TinyMLPVAE):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(10)

    def encode(self, x):
        return super().encode(self.norm(x))


def test_model_is_evaluated_in_eval_mode():
    model = BatchNormEncoder()
    model.train()
    x = _rand(6, 10)
    df = certify(model, x, r=1.0, n_samples=20)
    assert model.training  # ran in eval mode (below), handed back in train mode
    alone = certify(model, x[:1], r=1.0, n_samples=20)
    assert np.isclose(alone.jacobian_fro[0], df.jacobian_fro[0])


class _PoisonedVAE(LinearVAE):
    """A linear VAE whose encoder mean or decoder output is NaN for inputs whose first
    coordinate exceeds 5: a damage the probe of the first inputs cannot see."""

    def __init__(self, part: str) -> None:
        super().__init__()
        self.part = part

    def encode(self, x):
        mu, sigma = super().encode(x)
        if self.part == "encoder":
            mu = torch.where(x[:, :1] > 5, torch.nan, mu)
        return mu, sigma

    def decode(self, z):
        g = super().decode(z)
        if self.part == "decoder":
            g = torch.where(z[:, :1].abs() > 50, torch.inf, g)
        return g


@pytest.mark.parametrize(("part", "named"), [("encoder", "the encoder's mean"),
                                             ("decoder", "the decoder's output")])
def test_a_non_finite_model_output_stops_the_run_naming_the_input(part, named):
    model = _PoisonedVAE(part)
    x = torch.rand(20, 12, generator=torch.Generator().manual_seed(0))
    x[13] = 1e4  # far beyond the probe's first inputs
    with pytest.raises(RcertError, match=rf"^{named} is not finite \(NaN or inf\) for "
                                         rf"input 113; "):
        certify(model, x, r=1.0, n_samples=50, index=np.arange(100, 120), run=UNBOXED)
    # Without the damaged input the same model certifies every input.
    df = certify(model, x[:13], r=1.0, n_samples=50, run=UNBOXED)
    assert np.isfinite(df["r_min"]).all() and len(df) == 13
