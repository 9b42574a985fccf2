import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from rcert.errors import RcertError
from rcert.models import training
from rcert.models.adapters import wrap
from rcert.models.nets import build_model
from rcert.models.objectives import elbo
from rcert.models.training import fit


def _linear_gaussian(fixed_sigma=0.5, scale=1.0):
    """Affine encoder and decoder (no hidden layers): the ELBO has a closed form."""
    torch.manual_seed(0)
    return build_model(
        "mlp",
        input_shape=[4],
        latent_dim=2,
        hidden=[],
        sigma_mode="fixed",
        fixed_sigma=fixed_sigma,
        likelihood="gaussian",
        gaussian_scale=scale,
    ).eval()


def test_kl_term_matches_torch_distributions():
    model = build_model("mlp", input_shape=[4], latent_dim=3, hidden=[8]).eval()
    x = torch.rand(5, 4)
    with torch.no_grad():
        full = elbo(model, x, beta=1.0, generator=torch.Generator().manual_seed(1))
        recon = elbo(model, x, beta=0.0, generator=torch.Generator().manual_seed(1))
        mu, sigma = model.encode(x)
    expected = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(recon - full, expected, rtol=1e-5, atol=1e-5)
    beta_half = elbo(model, x, beta=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(beta_half.detach(), recon - 0.5 * expected, rtol=1e-5, atol=1e-5)


def test_reconstruction_term_matches_the_linear_gaussian_closed_form():
    # E_q[log N(x; W z + b, s^2)] = log N(x; W mu + b, s^2) - tr(W diag(sigma^2) W^T) / (2 s^2)
    sigma, scale = 0.5, 1.0
    model = _linear_gaussian(sigma, scale)
    x = torch.rand(1, 4, dtype=torch.float64)
    model = model.double()
    weight = model.decoder[0].weight
    with torch.no_grad():
        mu, _ = model.encode(x)
        mean = model.decode(mu)
        exact = Normal(mean, scale).log_prob(x).sum() - sigma**2 * weight.square().sum() / (
            2 * scale**2
        )
        n = 20000
        samples = elbo(model, x.expand(n, 4), beta=0.0, generator=torch.Generator().manual_seed(0))
    stderr = samples.std() / math.sqrt(n)
    assert abs(samples.mean() - exact) < 4 * stderr
    assert stderr < 0.01


def test_elbo_rejects_bad_arguments():
    model = _linear_gaussian()
    with pytest.raises(RcertError, match="beta"):
        elbo(model, torch.rand(2, 4), beta=-1.0)
    with pytest.raises(RcertError, match="rcert architecture"):
        elbo(wrap(model), torch.rand(2, 4))


def _bars(n: int, seed: int) -> torch.Tensor:
    """Binary 6x6 images: one of four horizontal or vertical bars, with 5% pixel noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.zeros(4, 1, 6, 6)
    protos[0, 0, 1, :] = protos[1, 0, 4, :] = protos[2, 0, :, 1] = protos[3, 0, :, 4] = 1
    x = protos[torch.randint(0, 4, (n,), generator=g)]
    flip = torch.rand(x.shape, generator=g) < 0.05
    return torch.where(flip, 1 - x, x)


X_TRAIN, X_VAL = _bars(128, 0), _bars(64, 1)


def _small(**kw):
    torch.manual_seed(0)
    return build_model("mlp", input_shape=[1, 6, 6], latent_dim=2, hidden=[16], **kw)


def test_training_improves_held_out_elbo(capsys):
    model = _small()
    before = training.mean_elbo(model, X_VAL, 64, seed=0)
    result = fit(model, X_TRAIN, X_VAL, epochs=25, batch_size=32, lr=1e-2, progress=True)
    after = training.mean_elbo(model, X_VAL, 64, seed=0)
    assert after > before + 5.0
    assert set(result) == {"best_val_objective", "best_val_elbo", "best_epoch", "epochs_run",
                           "train_elbo", "history"}
    assert result["best_val_objective"] == max(h["val_objective"] for h in result["history"])
    best = result["history"][result["best_epoch"] - 1]["val_objective"]
    assert best == result["best_val_objective"]
    # beta = 1 here, so the objective is the ELBO itself.
    assert result["best_val_elbo"] == pytest.approx(result["best_val_objective"], rel=1e-9)
    assert [h["epoch"] for h in result["history"]] == list(range(1, result["epochs_run"] + 1))
    assert set(result["history"][0]) == {"epoch", "train_loss", "val_objective"}
    assert math.isfinite(result["train_elbo"])
    assert not model.training
    out, err = capsys.readouterr()
    assert out == ""
    assert "(25/25)" in err and "val objective" in err and "best" in err


def test_best_weights_are_restored():
    model = _small()
    result = fit(model, X_TRAIN, X_VAL, epochs=25, batch_size=32, lr=3e-2, progress=False)
    assert result["best_epoch"] < result["epochs_run"]  # the last epoch was not the best
    restored = training.mean_elbo(model, X_VAL, 32, seed=training.VAL_STREAM)
    assert restored == pytest.approx(result["best_val_elbo"], rel=1e-6)


def test_same_seed_gives_identical_weights_and_other_seeds_differ():
    states = []
    for seed in (3, 3, 4):
        model = _small()
        fit(model, X_TRAIN, X_VAL, epochs=3, batch_size=32, seed=seed, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_global_rng_is_untouched():
    model = _small()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, X_TRAIN, X_VAL, epochs=1, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_early_stopping_stops_after_patience_epochs_without_improvement(capsys):
    model = _small()
    # A step far below float32 resolution leaves the weights, hence the held-out ELBO, fixed.
    result = fit(model, X_TRAIN, X_VAL, epochs=100, lr=1e-20, patience=3, progress=False)
    assert result["best_epoch"] == 1
    assert result["epochs_run"] == 4
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("beta", [0.1, 4.0])
def test_any_positive_beta_trains(beta):
    result = fit(_small(), X_TRAIN, X_VAL, beta=beta, epochs=2, progress=False)
    assert math.isfinite(result["best_val_elbo"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": 0.0}, "beta must be a finite number > 0"),
        ({"beta": -1.0}, "beta"),
        ({"beta": math.nan}, "beta"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"patience": 0}, "patience"),
        ({"lr": 0.0}, "lr"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_bad_arguments_raise_rcert_error(kwargs, match):
    with pytest.raises(RcertError, match=match):
        fit(_small(), X_TRAIN, X_VAL, progress=False, **kwargs)


@pytest.mark.parametrize(
    "x_train,match",
    [
        (X_TRAIN * 255, r"^x_train: .*rescale the data"),
        (X_TRAIN[:, :, :5], r"^x_train: .*input shape"),
        (X_TRAIN[:0], r"^x_train: .*at least one input"),
        ([[0.0]], r"^x_train: .*torch\.Tensor or numpy array"),
    ],
)
def test_bad_data_raises_rcert_error(x_train, match):
    with pytest.raises(RcertError, match=match):
        fit(_small(), x_train, X_VAL, progress=False)


def test_numpy_float64_data_is_accepted():
    result = fit(_small(), X_TRAIN.double().numpy(), np.asarray(X_VAL), epochs=1, progress=False)
    assert result["epochs_run"] == 1


def test_divergence_raises_rcert_error_and_restores_weights():
    model = _small(likelihood="gaussian", gaussian_scale=1e-30)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RcertError, match=r"diverged.*lower lr.*initial weights were restored"):
        fit(model, X_TRAIN, X_VAL, epochs=3, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_floor_keeps_sigma_at_least_tau_after_training():
    tau = 0.5
    model = _small(sigma_mode="floor", tau=tau)
    fit(model, X_TRAIN, X_VAL, epochs=30, batch_size=32, lr=1e-2, progress=False)
    with torch.no_grad():
        _, sigma = model.encode(torch.cat([X_TRAIN, X_VAL, torch.rand(64, 1, 6, 6)]))
    assert (sigma >= tau).all()
    # Training pushed sigma onto the floor, so the bound is exercised, not vacuous.
    assert sigma.min() < tau + 0.01


def test_small_beta_is_not_stopped_by_the_true_elbo():
    # With beta < 1 the true held-out ELBO can fall while the beta-ELBO being maximised
    # still rises; early stopping must follow the objective, or training stops at once.
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=[1, 6, 6], latent_dim=2, hidden=[16])
    result = training.fit(model, X_TRAIN, X_VAL, beta=0.1, epochs=40, patience=3, progress=False)
    objective = [h["val_objective"] for h in result["history"]]
    assert result["best_val_objective"] == max(objective)
    assert result["best_val_objective"] >= result["best_val_elbo"]
