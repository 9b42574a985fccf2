"""The targeted attacks of Willetts et al.: closed forms on linear-Gaussian encoders, the
protocol's pairs, grid, box and selection rule, row independence and determinism."""

import math

import numpy as np
import pytest
import torch

import rcert
from rcert.attacks.targeted import draw_pairs, lambdas_of
from rcert.errors import RcertError
from rcert.evaluation.targeted import targeted_attack
from rcert.models.architectures import build_model
from rcert.settings import TargetedConfig

RUN = rcert.RunConfig(allow=("decoder-range",))


def _linear(seed=0, sigma=0.5, d=3, n_in=6):
    """An affine encoder mean with a constant sigma: the KL and W2 attacks are quadratic."""
    torch.manual_seed(seed)
    return build_model("mlp", input_shape=(n_in,), latent_dim=d, hidden=(),
                       sigma_mode="fixed", fixed_sigma=sigma, likelihood="gaussian").eval()


def _x(n=8, n_in=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, n_in, generator=g)


def test_pairs_are_seeded_distinct_and_never_self_targets():
    a = draw_pairs(30, 10, seed=4)
    b = draw_pairs(30, 10, seed=4)
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
    assert len(set(a.inputs)) == 10 and (a.inputs != a.targets).all()
    assert not np.array_equal(a.inputs, draw_pairs(30, 10, seed=5).inputs)
    labels = np.arange(30) % 3
    c = draw_pairs(30, 10, seed=4, labels=labels, different_label=True)
    assert (labels[c.inputs] != labels[c.targets]).all()
    d = draw_pairs(5, 3, seed=0, n_targets=2)
    assert set(d.targets) <= {0, 1}


@pytest.mark.parametrize(("args", "kw", "message"), [
    ((1, 1, 0), {}, r"need at least 2 inputs, but the data has 1"),
    ((0, 1, 0), {}, r"need at least 2 inputs, but the data has 0"),
    ((5, 6, 0), {}, r"6 pairs need 6 distinct inputs, but the data has 5"),
    ((5, 2, 0), {"different_label": True}, r"different_label needs labelled"),
    ((4, 2, 0), {"labels": np.zeros(4), "different_label": True},
     r"has no target of another label"),
])
def test_bad_pairs_are_one_line(args, kw, message):
    with pytest.raises(RcertError, match=message):
        draw_pairs(*args, **kw)


def test_the_grid_is_the_papers_and_explicit_lambdas_replace_it():
    grid = lambdas_of(TargetedConfig())
    assert len(grid) == 50 and grid[0] == 2.0**-20 and grid[-1] == 2.0**20
    np.testing.assert_allclose(grid[1:] / grid[:-1], 2 ** (40 / 49))
    assert list(lambdas_of(TargetedConfig(lambda_values=(0.5, 2.0)))) == [0.5, 2.0]


@pytest.mark.parametrize(("kw", "message"), [
    ({"lambda_values": (1.0, 0.0)}, r"every lambda must be a finite number > 0, got 0.0"),
    ({"lambda_values": (-1.0,)}, r"every lambda must be a finite number > 0, got -1.0"),
    ({"lambda_low": 3.0, "lambda_high": 1.0}, r"finite with low <= high"),
    ({"kind": "l1"}, r"unknown targeted attack 'l1'"),
    ({"pairs": 0}, r"pairs must be an integer >= 1"),
    ({"layers": "middle"}, r"unknown layers 'middle'"),
])
def test_bad_settings_are_one_line(kw, message):
    with pytest.raises(RcertError, match=message):
        TargetedConfig(**kw)


@pytest.mark.parametrize("kind", ["kl", "w2_squared"])
def test_latent_attacks_reach_the_closed_form_optimum(kind):
    """With mu(x) = A x + b, a constant sigma and the squared penalty, Delta is quadratic:
    KL = ||A d - c||^2 / (2 sigma^2), W2^2 = ||A d - c||^2 with c = mu(x_t) - mu(x), so
    d* = (A^T A / s + 2 lam I)^-1 A^T c / s with s = sigma^2 (KL) or 1/2 (W2^2)."""
    model, x = _linear(), _x()
    lam = 0.5
    config = TargetedConfig(kind="kl" if kind == "kl" else "w2", w2_squared=kind != "kl",
                            penalty="l2_squared", pairs=4, lambda_values=(lam,), max_iter=200)
    df = targeted_attack(model, x, config, run=RUN)
    a = model.mu_head.weight.detach().double()
    s = 0.25 if kind == "kl" else 0.5
    for row in df.itertuples():
        c = (model.encode(x[[row.target]])[0] - model.encode(x[[row.input]])[0]).detach()[0]
        c = c.double()
        d = torch.linalg.solve(a.T @ a / s + 2 * lam * torch.eye(6, dtype=torch.float64),
                               a.T @ c / s)
        expected = float(((a @ d - c).square().sum() / (2 * s)) + lam * d.square().sum())
        assert row.loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert row.distortion == pytest.approx(float(d.norm()), rel=1e-3, abs=1e-5)


def test_a_large_penalty_leaves_the_input_alone_and_the_box_holds():
    model = build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,)).eval()
    x = rcert.load_data("digits:test").subset(20).x.reshape(-1, 1, 8, 8)
    df = targeted_attack(model, x, pairs=3, lambda_values=(1e-6, 1e6), max_iter=25, run=RUN)
    big = df[df["lambda"] == 1e6]
    assert (big.distortion == 0).all()
    assert (big.loss == big.attack_loss).all()
    np.testing.assert_allclose(big.l2_input_target, [
        float((x[i] - x[t]).norm()) for i, t in zip(big.input, big.target, strict=True)],
        rtol=1e-6)
    small = df[df["lambda"] == 1e-6]
    assert (small.attack_loss < big.attack_loss.to_numpy()).all()


def test_rows_do_not_depend_on_the_other_rows_and_the_seed_repeats_the_table():
    model = build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,)).eval()
    x = rcert.load_data("digits:test").subset(20).x.reshape(-1, 1, 8, 8)
    both = targeted_attack(model, x, pairs=3, lambda_values=(0.01, 1.0), max_iter=15, run=RUN)
    alone = targeted_attack(model, x, pairs=3, lambda_values=(0.01,), max_iter=15, run=RUN)
    np.testing.assert_allclose(both[both["lambda"] == 0.01].loss, alone.loss, rtol=1e-6)
    again = targeted_attack(model, x, pairs=3, lambda_values=(0.01, 1.0), max_iter=15, run=RUN)
    assert both.equals(again)


def test_one_row_per_pair_is_selected_the_smallest_attack_loss():
    model = build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,)).eval()
    x = rcert.load_data("digits:test").subset(20).x.reshape(-1, 1, 8, 8)
    df = targeted_attack(model, x, pairs=4, lambdas=6, max_iter=10, run=RUN)
    chosen = df[df.selected]
    assert sorted(chosen.pair) == [0, 1, 2, 3]
    assert (chosen.set_index("pair").attack_loss
            == df.groupby("pair").attack_loss.min()).all()


def _seatbelt():
    torch.manual_seed(1)
    return build_model("hierarchical", input_shape=(1, 8, 8), latent_dim=4, upper_dims=(3,),
                       hidden=(16,), conditional_hidden=(8,)).eval()


def test_seatbelt_layers_sum_to_the_all_layer_attack_at_the_start():
    # At d = 0 (lambda huge) each variant's attack_loss is its layers' divergence, and the
    # all-layer attack's is the sum of the bottom and the top layer's (E10).
    model = _seatbelt()
    x = rcert.load_data("digits:test").subset(20).x.reshape(-1, 1, 8, 8)
    loss = {layers: targeted_attack(model, x, pairs=3, lambda_values=(1e9,), layers=layers,
                                    max_iter=5, run=RUN).attack_loss.to_numpy()
            for layers in ("all", "bottom", "top")}
    np.testing.assert_allclose(loss["all"], loss["bottom"] + loss["top"], rtol=1e-5)
    sampled = targeted_attack(model, x, pairs=3, lambda_values=(1e9,), chain="samples",
                              max_iter=5, run=RUN)
    assert sampled.attrs["config"]["chain"] == "samples"
    assert not np.allclose(sampled.attack_loss, loss["all"])


def test_output_attacks_lower_their_objective():
    model = _seatbelt()
    x = rcert.load_data("digits:test").subset(20).x.reshape(-1, 1, 8, 8)
    for kind in ("output-elbo", "output-l2"):
        df = targeted_attack(model, x, kind=kind, pairs=2, lambda_values=(1e-6, 1e9),
                             max_iter=20, run=RUN)
        free, held = df[df["lambda"] < 1], df[df["lambda"] > 1]
        assert (free.attack_loss.to_numpy() < held.attack_loss.to_numpy()).all()
        assert math.isfinite(df.neg_log_lik_target.sum())


def test_targets_of_the_wrong_shape_are_one_line():
    model = _seatbelt()
    x = rcert.load_data("digits:test").subset(10).x.reshape(-1, 1, 8, 8)
    with pytest.raises(RcertError, match=r"targets: data have input shape \(1, 4, 4\)"):
        targeted_attack(model, x, pairs=2, targets=torch.zeros(3, 1, 4, 4), run=RUN)


def test_output_elbo_needs_a_likelihood():
    lin = _linear()
    wrapped = rcert.wrap(lin, data_range=(0, 1))
    with pytest.raises(RcertError, match="output-elbo attack needs the model's likelihood"):
        targeted_attack(wrapped, _x(), kind="output-elbo", pairs=2, lambdas=1, run=RUN)
