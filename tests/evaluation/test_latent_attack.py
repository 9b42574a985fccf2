"""``latent_attack`` (Lu & Chen spec sections 2 and 4) against references it does not compute:
closed forms of a linear decoder, scores recomputed with numpy and torchmetrics from the codes
the decoder was called on, the Eq 7 statistics by hand, and the shape of the table (one row
per seed, input and epsilon, each row a function of its own input alone)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

import rcert
from rcert.checks import ReliabilityWarning
from rcert.errors import RcertError
from rcert.evaluation.latent import latent_attack
from rcert.models.contract import ModelTraits
from rcert.settings import FidelityConfig, RunConfig

D = torch.float64
#: torchmetrics sizes its Gaussian window from sigma alone, ``2 int(3.5 sigma + 0.5) + 1``:
#: 3 pixels for sigma 0.4, so calling it directly is an independent reference for window 3.
FID = FidelityConfig(ssim_window=3, ssim_sigma=0.4, limits=("ssim=-1", "psnr=5"))
QUIET = RunConfig(progress=False)
SINGULAR = (1.6, 0.7, 0.3)
GRID = (0.0, 0.25, 0.5, 1.0)
#: Normalised-gradient PGD with small steps: converges to the linear decoder's optimum.
STRONG = {"step": "l2", "step_size": 0.1, "steps": 100}
PIXELS = 16


class LinearCoder(nn.Module):
    """``mu(x) = A vec(x)``, constant ``sigma = s``, ``g(z) = W z + b`` on (1, 4, 4) images,
    in float64; ``W`` has the singular values ``singular``. Every decode without gradient
    (the table's reconstructions among them) records its codes in ``calls``."""

    def __init__(self, singular=SINGULAR, s: float = 0.3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = len(singular)
        left, _ = torch.linalg.qr(torch.randn(PIXELS, d, generator=g, dtype=D))
        right, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=D))
        self.W = nn.Parameter(left @ torch.diag(torch.tensor(singular, dtype=D)) @ right.T)
        self.A = nn.Parameter(0.15 * torch.randn(d, PIXELS, generator=g, dtype=D))
        self.b = nn.Parameter(torch.full((PIXELS,), 0.5, dtype=D))
        self.data_range = (0.0, 1.0)
        self.s = s
        self.calls: list[torch.Tensor] = []

    def encode(self, x):
        mu = x.flatten(1) @ self.A.T
        return mu, torch.full_like(mu, self.s)

    def decode(self, z):
        if not torch.is_grad_enabled():
            self.calls.append(z.detach().clone())
        return (z @ self.W.T + self.b).reshape(-1, 1, 4, 4)

    # Closed forms, in numpy, from the parameters alone.
    def mu(self, x: torch.Tensor) -> np.ndarray:
        return x.reshape(len(x), -1).numpy() @ self.A.detach().numpy().T

    def images(self, z: np.ndarray) -> np.ndarray:
        return (z @ self.W.detach().numpy().T + self.b.detach().numpy()).reshape(-1, 1, 4, 4)


class DeterministicCoder(LinearCoder):
    """The same decoder behind a deterministic encoder (no sigma, SPEC section 9)."""

    traits = ModelTraits(stochastic_layers=0, encoder="deterministic", data_range=(0, 1))

    def encode(self, x):
        mu = x.flatten(1) @ self.A.T
        return mu, torch.ones_like(mu)


def _inputs(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=D)


def _attack(model: LinearCoder, x, **options) -> pd.DataFrame:
    model.calls.clear()
    options = {"epsilons": GRID, "fidelity": FID, "run": QUIET, **options}
    return latent_attack(model, x, **options)


def _scored_codes(model: LinearCoder, df: pd.DataFrame) -> np.ndarray:
    """The codes of the table's reconstructions: the last decode, one row per table row."""
    codes = model.calls[-1].numpy()
    assert codes.shape[0] == len(df)
    return codes


def _tm_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return structural_similarity_index_measure(
        torch.from_numpy(a), torch.from_numpy(b), gaussian_kernel=True, sigma=0.4,
        kernel_size=3, data_range=1.0, reduction="none").numpy()


def test_untargeted_l2_attack_reaches_the_top_singular_value():
    # max ||W d|| over ||d|| <= eps is eps * sigma_max(W), reached on the sphere.
    model, x = LinearCoder(), _inputs(6)
    df = _attack(model, x, **STRONG)
    eps = df["epsilon"].to_numpy()
    np.testing.assert_allclose(df["l2"], eps * SINGULAR[0], rtol=1e-3, atol=1e-12)
    assert (df["l2"] <= eps * SINGULAR[0] * (1 + 1e-9) + 1e-12).all()
    np.testing.assert_allclose(df["shift_l2"], eps, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(df["mse"], df["l2"] ** 2 / PIXELS, rtol=1e-9, atol=1e-15)
    # The attack's distance is the MSE to the clean reconstruction (D of Eq 4).
    np.testing.assert_allclose(df["loss"], df["mse"], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("reference", ["clean", "input"])
def test_scores_equal_independent_recomputations(reference):
    model, x = LinearCoder(), _inputs(5)
    r = 0.5
    df = _attack(model, x, steps=3, reference=reference, r=r)
    codes = _scored_codes(model, df)
    n_eps = len(GRID)
    mu = np.repeat(model.mu(x), n_eps, axis=0)
    np.testing.assert_allclose(np.linalg.norm(codes - mu, axis=1), df["shift_l2"], rtol=1e-9,
                               atol=1e-12)
    adv = model.images(codes)
    clean = model.images(mu)
    ref = clean if reference == "clean" else np.repeat(x.numpy(), n_eps, axis=0)
    mse = ((adv - ref) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(df["mse"], mse, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(df["l2"], np.sqrt(mse * PIXELS), rtol=1e-9, atol=1e-12)
    psnr = np.where(mse < 1e-10, 100.0, 10 * np.log10(1.0 ** 2 / np.maximum(mse, 1e-300)))
    # torchmetrics converts to base 10 with a float32 log(10): agreement to 1e-7 relative.
    np.testing.assert_allclose(df["psnr"], psnr, rtol=1e-6)
    np.testing.assert_allclose(df["ssim"], _tm_ssim(adv, ref), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(df["output_mean"], adv.mean(axis=(1, 2, 3)), rtol=1e-12)
    # exceeds_r always measures against the clean reconstruction, whatever the reference.
    gap = np.sqrt(((adv - clean) ** 2).sum(axis=(1, 2, 3)))
    assert df["exceeds_r"].dtype == bool
    np.testing.assert_array_equal(df["exceeds_r"], gap > r)
    assert df["exceeds_r"].any() and not df["exceeds_r"].all()
    at_zero = df[df["epsilon"] == 0]
    if reference == "clean":
        assert (at_zero["mse"] == 0).all()
        np.testing.assert_allclose(at_zero["ssim"], 1.0, rtol=1e-12)
        assert (at_zero["psnr"] == 100.0).all()
    else:
        assert (at_zero["mse"] > 1e-4).all()


def _numpy_ssim(a: np.ndarray, b: np.ndarray, window: int, sigma: float) -> np.ndarray:
    """SSIM per image (Wang et al. 2004 with a ``window``-pixel Gaussian of std ``sigma``,
    reflection padding, the map's mean over pixels and channels), data range [0, 1]."""
    g = np.exp(-0.5 * ((np.arange(window) - (window - 1) / 2) / sigma) ** 2)
    kernel = np.outer(g, g) / g.sum() ** 2
    pad = (window - 1) // 2

    def blur(img: np.ndarray) -> np.ndarray:
        padded = np.pad(img, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="reflect")
        views = np.lib.stride_tricks.sliding_window_view(padded, (window, window), axis=(2, 3))
        return np.einsum("bchwij,ij->bchw", views, kernel)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = np.maximum(blur(a * a) - mu_a**2, 0)
    var_b = np.maximum(blur(b * b) - mu_b**2, 0)
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.mean(axis=(1, 2, 3))


@pytest.mark.parametrize(("window", "sigma"), [(3, 1.5), (1, 1.5), (3, 0.4)])
def test_ssim_uses_the_window_asked_for(window, sigma):
    # torchmetrics' gaussian_kernel sizes its window from sigma alone (11 pixels for 1.5):
    # the window asked for must be the one used, on (1, 4, 4) images too.
    model, x = LinearCoder(), _inputs(3)
    fidelity = FidelityConfig(ssim_window=window, ssim_sigma=sigma, limits=())
    df = _attack(model, x, steps=2, fidelity=fidelity)
    codes = _scored_codes(model, df)
    adv = model.images(codes)
    clean = model.images(np.repeat(model.mu(x), len(GRID), axis=0))
    np.testing.assert_allclose(df["ssim"], _numpy_ssim(adv, clean, window, sigma),
                               rtol=1e-9, atol=1e-12)


def _trust_region(w: np.ndarray, c: np.ndarray, eps: float) -> float:
    """``min ||W d + c||^2`` over ``||d|| <= eps`` (the Lagrange condition
    ``d = -(W^T W + lam I)^-1 W^T c`` with ``||d|| = eps``), for ``eps`` below the
    unconstrained minimiser's norm."""
    gram, wc = w.T @ w, w.T @ c
    if eps == 0:
        return float(c @ c)

    def d_of(lam: float) -> np.ndarray:
        return -np.linalg.solve(gram + lam * np.eye(len(gram)), wc)

    lam = optimize.brentq(lambda lam: np.linalg.norm(d_of(lam)) - eps, 0.0, 1e6)
    d = d_of(lam)
    return float(np.sum((w @ d + c) ** 2))


def test_targeted_black_attack_reaches_the_trust_region_minimum():
    model, x = LinearCoder(), _inputs(4)
    df = _attack(model, x, goal="targeted", target="black", **STRONG)
    w, b = model.W.detach().numpy(), model.b.detach().numpy()
    for i, mu in enumerate(model.mu(x)):
        rows = df[df["index"] == i].sort_values("epsilon")
        c = w @ mu + b
        assert np.linalg.norm(np.linalg.lstsq(w, -c, rcond=None)[0]) > max(GRID)
        expected = [_trust_region(w, c, eps) / PIXELS for eps in rows["epsilon"]]
        np.testing.assert_allclose(rows["target_mse"], expected, rtol=1e-4)
        assert (np.diff(rows["target_mse"]) < 0).all()
    np.testing.assert_allclose(df["loss"], df["target_mse"], rtol=1e-9)


@settings(max_examples=8, deadline=None)
@given(ids=st.lists(st.integers(0, 40), min_size=2, max_size=6, unique=True),
       batch=st.integers(1, 5), seeds=st.lists(st.integers(0, 2**40), min_size=1, max_size=3,
                                                unique=True))
def test_rows_are_complete_and_batches_are_groups_of_ids(ids, batch, seeds):
    model, x = LinearCoder(), _inputs(len(ids))
    fidelity = FidelityConfig(ssim_window=3, ssim_sigma=0.4, limits=(), batch=batch)
    df = _attack(model, x, steps=1, index=np.array(ids), seeds=seeds, fidelity=fidelity)
    keys = list(zip(df["seed"], df["index"], df["epsilon"], strict=True))
    assert sorted(keys) == sorted(itertools.product(seeds, ids, GRID))
    np.testing.assert_array_equal(df["batch"], df["index"] // batch)
    summary = df.attrs["summary"]
    assert summary["n_inputs"] == len(ids) and summary["n_seeds"] == len(seeds)
    assert summary["n_batches"] == len({i // batch for i in ids})
    assert df.attrs["config"]["seeds"] == seeds and df.attrs["config"]["seed"] == seeds[0]


def test_same_seed_same_frame_other_seed_other_starts():
    model, x = LinearCoder(), _inputs(4)
    weak = {"step": "l2", "step_size": 0.01, "steps": 2}  # the result stays near its start
    first = _attack(model, x, seeds=[3], **weak)
    again = _attack(model, x, seeds=[3], **weak)
    pd.testing.assert_frame_equal(first, again)
    both = _attack(model, x, seeds=[3, 4], **weak)
    pd.testing.assert_frame_equal(both[both["seed"] == 3].reset_index(drop=True), first)
    other = both[both["seed"] == 4].reset_index(drop=True)
    moved = first["epsilon"] > 0
    assert not np.allclose(first.loc[moved, "l2"], other.loc[moved, "l2"])


@pytest.fixture(scope="module")
def mlp():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,),
                                 likelihood="gaussian", data_range=(0.0, 1.0))


MLP_IDS = np.array([5, 11, 2, 8, 30, 1])
MLP_OPTIONS = {"epsilons": (0.0, 0.5, 1.0), "seeds": [0, 7], "run": QUIET,
               "fidelity": FidelityConfig(ssim_window=5, limits=())}


@pytest.fixture(scope="module")
def mlp_inputs():
    return torch.rand(len(MLP_IDS), 1, 8, 8, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def mlp_rows(mlp, mlp_inputs):
    return latent_attack(mlp, mlp_inputs, index=MLP_IDS, **MLP_OPTIONS)


@settings(max_examples=6, deadline=None)
@given(chosen=st.sets(st.integers(0, len(MLP_IDS) - 1), min_size=1, max_size=4))
def test_a_row_depends_only_on_its_own_input(mlp, mlp_inputs, mlp_rows, chosen):
    # The same ids on a subset give the same rows (to the rounding of a CPU matmul, which
    # can depend on the batch size).
    pick = sorted(chosen)
    part = latent_attack(mlp, mlp_inputs[pick], index=MLP_IDS[pick], **MLP_OPTIONS)
    key = ["seed", "index", "epsilon"]
    whole = mlp_rows[mlp_rows["index"].isin(MLP_IDS[pick])].sort_values(key)
    part = part.sort_values(key)
    for col in mlp_rows.columns:
        np.testing.assert_allclose(part[col].to_numpy(np.float64),
                                   whole[col].to_numpy(np.float64), rtol=1e-5, atol=1e-6,
                                   err_msg=col)


def test_spread_scale_measures_epsilon_in_the_codes_spread():
    model, x = LinearCoder(), _inputs(6)
    df = _attack(model, x, scale="spread", **STRONG)
    codes = _scored_codes(model, df)
    mu = model.mu(x)
    spread = mu.std(axis=0, ddof=1)
    shift = (codes - np.repeat(mu, len(GRID), axis=0)) / spread
    np.testing.assert_allclose(df["shift_scaled"], np.linalg.norm(shift, axis=1), rtol=1e-9,
                               atol=1e-12)
    eps = df["epsilon"].to_numpy()
    assert (df["shift_scaled"] <= eps * (1 + 1e-9) + 1e-12).all()
    np.testing.assert_allclose(df["shift_scaled"], eps, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_sigma_scale_is_the_certificate_geometry(norm):
    s = 0.3
    model, x = LinearCoder(s=s), _inputs(5)
    df = _attack(model, x, scale="sigma", norm=norm, **STRONG)
    codes = _scored_codes(model, df)
    shift = (codes - np.repeat(model.mu(x), len(GRID), axis=0)) / s
    size = np.linalg.norm(shift, axis=1) if norm == "l2" else np.abs(shift).max(axis=1)
    np.testing.assert_allclose(df["shift_scaled"], size, rtol=1e-9, atol=1e-12)
    eps = df["epsilon"].to_numpy()
    assert (df["shift_scaled"] <= eps * (1 + 1e-9) + 1e-12).all()
    np.testing.assert_allclose(df["shift_scaled"], eps, rtol=1e-6, atol=1e-12)
    if norm == "l2":
        np.testing.assert_allclose(df["shift_l2"], s * df["shift_scaled"], rtol=1e-9,
                                   atol=1e-12)


def test_sampled_codes_are_keyed_by_seed_and_index():
    model, x = LinearCoder(), _inputs(4)
    ids = np.array([7, 3, 9, 4])
    _attack(model, x, code="sample", index=ids, epsilons=(0.0,), steps=1)
    z0 = model.calls[-1].numpy()
    noise = (z0 - model.mu(x)) / model.s
    assert np.abs(noise).max() > 0.1  # the code moved off the mean
    # Reversed order, same ids: each input keeps its draw.
    _attack(model, x.flip(0), code="sample", index=ids[::-1].copy(), epsilons=(0.0,), steps=1)
    np.testing.assert_allclose((model.calls[-1].numpy() - model.mu(x.flip(0))) / model.s,
                               noise[::-1], rtol=1e-12, atol=1e-12)
    _attack(model, x, code="sample", index=ids, epsilons=(0.0,), steps=1, seeds=[1])
    assert not np.allclose(model.calls[-1].numpy(), z0)


@pytest.mark.parametrize(("options", "match"), [
    ({"scale": "sigma"}, r"--scale sigma needs the encoder's sigma"),
    ({"code": "sample"}, r"--code sample needs the encoder's sigma"),
])
def test_a_deterministic_encoder_refuses_sigma_and_sampled_codes(options, match):
    model = DeterministicCoder()
    with pytest.raises(RcertError, match=match) as info:
        _attack(model, _inputs(3), **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scale", ["raw", "spread"])
def test_a_deterministic_encoder_takes_raw_and_spread_units(scale):
    df = _attack(DeterministicCoder(), _inputs(4), scale=scale, steps=2)
    assert len(df) == 4 * len(GRID) and np.isfinite(df["ssim"]).all()


def test_sections_hold_eq7_statistics_and_the_embedding():
    model, x = LinearCoder(), _inputs(6)
    df = _attack(model, x, statistics_at=(0.5,), tsne_at=(1.0,), steps=3)
    codes = _scored_codes(model, df).reshape(6, len(GRID), -1)
    mu = model.mu(x)
    stats = pd.DataFrame(df.attrs["sections"]["statistics"])
    assert list(stats.columns) == ["epsilon", "dim", "mean_abs_code", "mean_abs_adversarial",
                                   "mean_abs_shift"]
    assert (stats["epsilon"] == 0.5).all() and stats["dim"].tolist() == [0, 1, 2]
    adv = codes[:, GRID.index(0.5)]
    np.testing.assert_allclose(stats["mean_abs_code"], np.abs(mu).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["mean_abs_adversarial"], np.abs(adv).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["mean_abs_shift"], np.abs(adv - mu).mean(0), rtol=1e-9)
    emb = pd.DataFrame(df.attrs["sections"]["embedding"])
    assert list(emb.columns) == ["epsilon", "code", "index", "x", "y"]
    assert emb["code"].tolist() == ["clean"] * 6 + ["adversarial"] * 6
    assert emb["index"].tolist() == [*range(6)] * 2 and (emb["epsilon"] == 1.0).all()
    assert np.isfinite(emb[["x", "y"]].to_numpy()).all()
    assert _attack(model, x, steps=1).attrs["sections"] == {}


@pytest.mark.parametrize(("options", "match"), [
    ({"statistics_at": (0.3,)}, r"statistics_at 0\.3 is not on the epsilon grid"),
    ({"tsne_at": (0.5, 2.0)}, r"tsne_at 2 is not on the epsilon grid"),
])
def test_sections_off_the_grid_are_refused_before_any_attack(options, match):
    model = LinearCoder()
    with pytest.raises(RcertError, match=match):
        _attack(model, _inputs(4), **options)
    assert all(len(z) <= 8 for z in model.calls)  # only the model checks' probe ran


def test_a_target_pool_must_match_the_inputs():
    model, x = LinearCoder(), _inputs(4)
    targeted = {"goal": "targeted", "target": "other", "steps": 1}
    with pytest.raises(RcertError, match=r"targets have shape \(3, 1, 8, 8\)"):
        _attack(model, x, targets=np.zeros((3, 1, 8, 8)), **targeted)
    with pytest.raises(RcertError, match=r"targets apply to a targeted attack"):
        _attack(model, x, targets=np.zeros((3, 1, 4, 4)), steps=1)
    pool = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(9), dtype=D)
    df = _attack(model, x, targets=pool, **targeted)
    clean = model.images(model.mu(x))
    to_pool = ((clean[:, None] - pool.numpy()[None]) ** 2).mean(axis=(2, 3, 4))
    start = df[df["epsilon"] == 0].sort_values("index")["target_mse"].to_numpy()
    # Each input's target is one image of the pool.
    assert np.isclose(to_pool, start[:, None], rtol=1e-9, atol=0).any(axis=1).all()


def test_summary_curves_are_the_means_and_aaddc_the_trapezoid():
    model, x = LinearCoder(), _inputs(6)
    fidelity = FidelityConfig(ssim_window=3, ssim_sigma=0.4, limits=("ssim=-1", "psnr=5"),
                              batch=2)
    df = _attack(model, x, seeds=[0, 1], fidelity=fidelity, steps=3)
    summary = df.attrs["summary"]
    assert summary["epsilons"] == list(GRID)
    eps = np.asarray(GRID)
    for score in ("mse", "l2", "ssim", "psnr"):
        curve = summary["curves"][score]
        np.testing.assert_allclose(curve["mean"], df.groupby("epsilon")[score].mean(),
                                   rtol=1e-12)
        per = df.groupby(["seed", "batch", "epsilon"])[score].mean().unstack("epsilon")
        np.testing.assert_allclose(curve["std"], per.std(ddof=1), rtol=1e-9)
        assert curve["n_curves"] == 6
    for score, limit in (("ssim", -1.0), ("psnr", 5.0)):
        per = df.groupby(["seed", "batch", "epsilon"])[score].mean().unstack("epsilon")
        areas = [np.trapezoid(row - limit, eps) for row in per.to_numpy()]
        got = summary["aaddc"][score]
        assert got["limit"] == limit and got["n_curves"] == 6
        assert got["mean"] == pytest.approx(np.mean(areas), rel=1e-9)
        assert got["std"] == pytest.approx(np.std(areas, ddof=1), rel=1e-9)
        mean_curve = df.groupby("epsilon")[score].mean().to_numpy()
        assert got["of_mean_curve"] == pytest.approx(np.trapezoid(mean_curve - limit, eps),
                                                     rel=1e-9)
    assert set(summary["aaddc"]) == {"ssim", "psnr"}


def test_limit_lines_warn_when_crossed_and_refuse_the_wrong_side():
    model, x = LinearCoder(), _inputs(4)
    crossing = FidelityConfig(ssim_window=3, ssim_sigma=0.4, limits=("ssim=0.5",))
    with pytest.warns(ReliabilityWarning, match=r"limit-crossing: .*ssim"):
        _attack(model, x, fidelity=crossing, **STRONG)
    wrong = FidelityConfig(ssim_window=3, ssim_sigma=0.4, limits=("ssim=1.5",))
    with pytest.raises(RcertError, match=r"ssim limit line 1\.5 lies above its whole"):
        _attack(model, x, fidelity=wrong, steps=1)


@pytest.mark.parametrize(("options", "match"), [
    ({"r": -1.0}, r"\br must be a finite number > 0"),
    ({"r": math.nan}, r"\br must be a finite number > 0"),
    ({"seeds": []}, r"seeds needs at least one seed"),
    ({"seeds": [1.5]}, r"seeds must be an integer"),
    ({"seeds": [-1]}, r"seeds must be an integer"),
    ({"epsilons": (-0.5, 1.0)}, r"epsilons must be finite numbers >= 0"),
])
def test_bad_arguments_are_one_line_errors(options, match):
    with pytest.raises(RcertError, match=match) as info:
        _attack(LinearCoder(), _inputs(3), steps=1, **options)
    assert "\n" not in str(info.value)


def test_the_shipped_digits_model_degrades_with_epsilon():
    """Claims C1 and C2 of spec section 8 in direction, on 8 test digits."""
    model = rcert.load("models/vae-digits.safetensors")
    data = rcert.load_data("digits:test").subset(8)
    fidelity = FidelityConfig(ssim_window=7)
    untargeted = latent_attack(model, data.x, epsilons=(0.0, 0.5, 1.0), fidelity=fidelity,
                               index=data.index, run=QUIET)
    means = untargeted.groupby("epsilon")[["mse", "ssim"]].mean()
    assert means["ssim"].iloc[0] == pytest.approx(1.0) and means["mse"].iloc[0] == 0
    assert (np.diff(means["ssim"]) < 0).all() and (np.diff(means["mse"]) > 0).all()
    black = latent_attack(model, data.x, epsilons=(0.0, 0.5, 1.0), goal="targeted",
                          fidelity=fidelity, index=data.index, run=QUIET)
    towards = black.groupby("epsilon")[["target_mse", "output_mean"]].mean()
    assert (np.diff(towards["target_mse"]) < 0).all()
    assert (np.diff(towards["output_mean"]) < 0).all()
