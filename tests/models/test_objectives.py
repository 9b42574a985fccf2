"""The beta-TCVAE objective against the ELBO and an independent total-correlation reference."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from rcert.errors import RcertError
from rcert.models.architectures import build_model
from rcert.models.objectives import beta_tc_elbo, elbo


def _model_and_batch(seed: int = 0, batch: int = 12):
    torch.manual_seed(seed)
    model = build_model("mlp", input_shape=(6,), latent_dim=3, hidden=(8,),
                        likelihood="gaussian").double()
    x = torch.rand(batch, 6, generator=torch.Generator().manual_seed(seed + 1),
                   dtype=torch.float64)
    return model, x


def _seeded(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_beta_one_is_the_elbo_exactly(estimator):
    # Spec C11 (c): one unit of TC is already in the KL, so beta = 1 adds nothing.
    model, x = _model_and_batch()
    tc = beta_tc_elbo(model, x, beta=1.0, dataset_size=100, estimator=estimator,
                      generator=_seeded())
    torch.testing.assert_close(tc, elbo(model, x, generator=_seeded()), rtol=0, atol=0)


def test_beta_weights_an_independently_computed_total_correlation():
    model, x = _model_and_batch(seed=3)
    n, beta = 500, 4.0
    got = beta_tc_elbo(model, x, beta=beta, dataset_size=n, generator=_seeded())
    # The same draw, and the MWS bracket recomputed in numpy/scipy.
    with torch.no_grad():
        mu, sigma = model.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=_seeded(), dtype=mu.dtype)
    dens = stats.norm.logpdf(z.numpy()[:, None, :], loc=mu.numpy()[None],
                             scale=sigma.numpy()[None])
    m = len(x)
    joint = special.logsumexp(dens.sum(axis=2), axis=1) - math.log(n * m)
    marginals = (special.logsumexp(dens, axis=1) - math.log(n * m)).sum(axis=1)
    expected = elbo(model, x, generator=_seeded()).detach().numpy() \
        - (beta - 1) * (joint - marginals)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)


def test_the_objective_trains_the_encoder():
    model, x = _model_and_batch(seed=5)
    (-beta_tc_elbo(model, x, beta=6.0, dataset_size=100, generator=_seeded()).mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"beta": 0.0, "dataset_size": 100}, r"beta must be a finite number > 0"),
    ({"beta": 2.0, "dataset_size": 5}, r"dataset_size must be an integer >= the batch"),
    ({"beta": 2.0, "dataset_size": 100, "estimator": "exact"},
     r"unknown total-correlation estimator"),
])
def test_bad_arguments_are_one_line(kwargs, message):
    model, x = _model_and_batch()
    with pytest.raises(RcertError, match=message):
        beta_tc_elbo(model, x, **kwargs)


def test_a_batch_of_one_is_refused():
    model, x = _model_and_batch(batch=1)
    with pytest.raises(RcertError, match=r"needs a batch of at least 2 inputs, got 1"):
        beta_tc_elbo(model, x, beta=2.0, dataset_size=100)


@pytest.mark.parametrize("family", ["mmd-vae", "swt-vae"])
def test_the_regularised_objectives_replace_the_kl_with_a_batch_penalty(family):
    # Lu & Chen Eqs 2-3: log p(x|z) of one sample, minus beta times the codes' penalty.
    from rcert.models.objectives import regularised_elbo
    from rcert.models.regularisers import mmd_squared, swt_penalty

    model, x = _model_and_batch(batch=16)
    got = regularised_elbo(model, x, family=family, beta=3.0, kernel="imq",
                           generator=_seeded())
    g = _seeded()
    mu, sigma = model.encode(x)
    z = mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
    prior = torch.randn(z.shape, generator=g, dtype=z.dtype)
    penalty = mmd_squared(z, prior, "imq") if family == "mmd-vae" else swt_penalty(z)
    torch.testing.assert_close(got, model.log_likelihood(x, z) - 3.0 * penalty)


def test_the_swt_family_needs_six_codes_a_batch():
    from rcert.models.objectives import regularised_elbo
    from rcert.settings import TrainConfig

    model, x = _model_and_batch(batch=5)
    with pytest.raises(RcertError, match="needs a batch of 6 to 5000 codes"):
        regularised_elbo(model, x, family="swt-vae", generator=_seeded())
    with pytest.raises(RcertError, match="batch_size must be at least 6 for family swt-vae"):
        TrainConfig(family="swt-vae", batch_size=5)
    with pytest.raises(RcertError, match="unknown MMD kernel 'gauss'"):
        TrainConfig(family="mmd-vae", mmd_kernel="gauss")


@pytest.mark.parametrize("family", ["mmd-vae", "swt-vae"])
def test_fit_trains_the_regularised_families_deterministically(family):
    import rcert
    from rcert.settings import TrainConfig

    x = rcert.load_data("digits:train").subset(120).x.reshape(-1, 1, 8, 8)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
        h = rcert.fit(model, x[:100], x[100:], TrainConfig(family=family, epochs=4,
                                                              batch_size=20),
                      progress=False)
        runs.append(h["history"])
    assert runs[0] == runs[1]
    assert runs[0][-1]["val_objective"] > runs[0][0]["val_objective"]
