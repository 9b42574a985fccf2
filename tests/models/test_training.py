import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from rcert.errors import RcertError
from rcert.models import training
from rcert.models.adapters import wrap
from rcert.models.architectures import build_model
from rcert.models.objectives import elbo
from rcert.models.training import fit
from rcert.settings import TrainConfig


def _rand(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Uniform test data from a seeded generator (reproducible under -k)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), **kw)


def _seeded(build, seed: int = 0):
    """``build()`` with the global RNG seeded for the weights, and restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _linear_gaussian(fixed_sigma=0.5, scale=1.0):
    """Affine encoder and decoder (no hidden layers): the ELBO has a closed form."""
    return _seeded(lambda: build_model(
        "mlp",
        input_shape=[4],
        latent_dim=2,
        hidden=[],
        sigma_mode="fixed",
        fixed_sigma=fixed_sigma,
        likelihood="gaussian",
        gaussian_scale=scale,
    ).eval())


def test_kl_term_matches_torch_distributions():
    model = _seeded(lambda: build_model("mlp", input_shape=[4], latent_dim=3, hidden=[8]).eval())
    x = _rand(5, 4)
    with torch.no_grad():
        full = elbo(model, x, beta=1.0, generator=torch.Generator().manual_seed(1))
        # beta must be > 0, so the reconstruction term is 2 ELBO_1 - ELBO_2 (same noise).
        recon = (2 * elbo(model, x, beta=1.0, generator=torch.Generator().manual_seed(1))
                 - elbo(model, x, beta=2.0, generator=torch.Generator().manual_seed(1)))
        mu, sigma = model.encode(x)
    expected = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(recon - full, expected, rtol=1e-5, atol=1e-5)
    beta_half = elbo(model, x, beta=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(beta_half.detach(), recon - 0.5 * expected, rtol=1e-5, atol=1e-5)


def test_reconstruction_term_matches_the_linear_gaussian_closed_form():
    # E_q[log N(x; W z + b, s^2)] = log N(x; W mu + b, s^2) - tr(W diag(sigma^2) W^T) / (2 s^2)
    sigma, scale = 0.5, 1.0
    model = _linear_gaussian(sigma, scale)
    x = _rand(1, 4, dtype=torch.float64)
    model = model.double()
    weight = model.decoder[0].weight
    with torch.no_grad():
        mu, _ = model.encode(x)
        mean = model.decode(mu)
        exact = Normal(mean, scale).log_prob(x).sum() - sigma**2 * weight.square().sum() / (
            2 * scale**2
        )
        n = 20000
        xs = x.expand(n, 4)
        samples = (2 * elbo(model, xs, beta=1.0, generator=torch.Generator().manual_seed(0))
                   - elbo(model, xs, beta=2.0, generator=torch.Generator().manual_seed(0)))
    stderr = samples.std() / math.sqrt(n)
    assert abs(samples.mean() - exact) < 4 * stderr
    assert stderr < 0.01


def test_elbo_rejects_bad_arguments():
    model = _linear_gaussian()
    with pytest.raises(RcertError, match="beta"):
        elbo(model, _rand(2, 4), beta=-1.0)
    with pytest.raises(RcertError, match="rcert architecture"):
        elbo(wrap(model), _rand(2, 4))


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
    return _seeded(lambda: build_model("mlp", input_shape=[1, 6, 6], latent_dim=2, hidden=[16],
                                       **kw))


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
        _, sigma = model.encode(torch.cat([X_TRAIN, X_VAL, _rand(64, 1, 6, 6)]))
    assert (sigma >= tau).all()
    # Training pushed sigma onto the floor, so the bound is exercised, not vacuous.
    assert sigma.min() < tau + 0.01


def _held_out(model, beta: float, seed: int = 0, batch_size: int = 32) -> float:
    """Mean held-out beta-ELBO with the noise ``fit`` uses for ``X_VAL`` (one generator seeded
    ``seed + VAL_STREAM``, drawn batch after batch), from :func:`elbo` alone."""
    generator = torch.Generator().manual_seed(seed + training.VAL_STREAM)
    model.eval()
    with torch.no_grad():
        values = [elbo(model, batch, beta=beta, generator=generator)
                  for batch in X_VAL.split(batch_size)]
    return float(torch.cat(values).mean())


def _trained_for(epochs: int, beta: float, **kw):
    """The model after exactly ``epochs`` epochs (patience never reached); training is
    deterministic, so these are the weights of that epoch of any longer run whose held-out
    objective rose up to it."""
    model = _small()
    result = fit(model, X_TRAIN, X_VAL, beta=beta, epochs=epochs, patience=epochs, **kw)
    return model, result


def test_small_beta_is_not_stopped_by_the_true_elbo():
    # With a small beta the KL grows while the reconstruction improves: the held-out beta-ELBO
    # rises for many epochs while the true ELBO (beta = 1) peaks early and falls. Early
    # stopping must follow the objective being maximised.
    beta, patience = 0.02, 3
    kw = {"batch_size": 32, "lr": 1e-2, "progress": False}
    model = _small()
    result = fit(model, X_TRAIN, X_VAL, beta=beta, epochs=40, patience=patience, **kw)

    # The true held-out ELBO per epoch, each from a run of exactly that many epochs, until
    # a stopper that followed it would have stopped.
    true_elbo, objective = [], []
    while True:
        epoch = len(true_elbo) + 1
        trained, short = _trained_for(epoch, beta, **kw)
        assert short["best_epoch"] == epoch  # the objective rose: these are epoch e's weights
        true_elbo.append(_held_out(trained, beta=1.0))
        objective.append(_held_out(trained, beta=beta))
        true_best = int(np.argmax(true_elbo)) + 1
        if epoch - true_best >= patience:
            break
    true_stop = epoch
    # The construction works: the true ELBO fell for `patience` epochs while the objective
    # rose on every one of them.
    assert true_elbo[-1] < max(true_elbo)
    assert all(np.diff(objective) > 0)
    # The history is the objective, recomputed independently (same noise, same weights).
    history = [h["val_objective"] for h in result["history"]]
    np.testing.assert_allclose(history[:true_stop], objective, rtol=1e-5)

    # Training went on past the true ELBO's stop, and stopped on the objective's patience.
    assert result["epochs_run"] > true_stop
    best = result["best_epoch"]
    assert best > true_stop
    assert result["epochs_run"] - best == patience or result["epochs_run"] == 40
    assert max(history[best:], default=-math.inf) <= history[best - 1]

    # The restored weights are those of the best objective epoch: bit-identical to a run of
    # exactly that many epochs, and their held-out beta-ELBO is the reported best.
    at_best, _ = _trained_for(best, beta, **kw)
    assert all(torch.equal(v, at_best.state_dict()[k]) for k, v in model.state_dict().items())
    assert _held_out(model, beta=beta) == pytest.approx(result["best_val_objective"], rel=1e-5)
    assert _held_out(model, beta=1.0) == pytest.approx(result["best_val_elbo"], rel=1e-5)


# --- the beta-TCVAE family ------------------------------------------------------------------


def _tc(model, x) -> float:
    """MWS total correlation of the aggregate posterior over all of ``x``, less its constant
    (:mod:`rcert.models.total_correlation`): the exact-mixture TC at the samples."""
    from rcert.models.total_correlation import total_correlation

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, sigma = model.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=g)
        tc = total_correlation(z.double(), mu.double(), sigma.double(), len(x))
    return float(tc) - (mu.shape[1] - 1) * math.log(len(x))


def test_beta_tcvae_at_beta_one_trains_exactly_as_the_vae():
    # Spec C11 (c), end to end: same objective, so bit-identical weights.
    states = []
    for family in ("vae", "beta-tcvae"):
        model = _small()
        fit(model, X_TRAIN, X_VAL, TrainConfig(family=family, beta=1.0, epochs=3,
                                               batch_size=32), progress=False)
        states.append(model.state_dict())
    assert len(X_TRAIN) % 32 != 1  # no merged batch: the two runs see the same batches
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)


def test_beta_tcvae_lowers_the_total_correlation_it_penalises():
    tcs = {}
    for beta in (1.0, 8.0):
        model = _small()
        fit(model, X_TRAIN, X_VAL, TrainConfig(family="beta-tcvae", beta=beta, epochs=30,
                                               batch_size=64, lr=1e-2), progress=False)
        tcs[beta] = _tc(model, X_TRAIN)
    assert tcs[8.0] < tcs[1.0]


@pytest.mark.parametrize(("n", "size", "min_batch", "lengths"), [
    (65, 32, 2, [32, 33]), (65, 32, 1, [32, 32, 1]), (64, 32, 2, [32, 32]), (1, 32, 2, [1]),
])
def test_a_last_batch_too_small_for_the_objective_joins_the_one_before(n, size, min_batch,
                                                                     lengths):
    parts = training.batches(torch.arange(n), size, min_batch)
    assert [len(p) for p in parts] == lengths
    assert torch.equal(torch.cat(parts), torch.arange(n))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"family": "beta-tcvae", "batch_size": 1}, r"batch_size must be at least 2 for family "
                                                r"beta-tcvae"),
    ({"family": "nvae"}, r"unknown family 'nvae'; choose one of: vae, beta-tcvae, seatbelt, "
                         r"dlgm"),
    ({"family": "seatbelt", "batch_size": 1}, r"batch_size must be at least 2 for family "
                                              r"seatbelt"),
    ({"free_bits": -0.5}, r"free_bits must be a finite number >= 0, got -0.5"),
    ({"tc_estimator": "exact"}, r"unknown total-correlation estimator 'exact'"),
])
def test_bad_family_settings_are_one_line(kwargs, message):
    with pytest.raises(RcertError, match=message):
        TrainConfig(**kwargs)
