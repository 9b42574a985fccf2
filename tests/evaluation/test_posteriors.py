"""The posterior measures and the downstream table against closed forms: a linear-Gaussian
VAE has a Gaussian ELBO and denoising likelihood, and an attack that cannot move changes no
classifier's accuracy."""

import math

import numpy as np
import pytest
import torch

import rcert
from rcert.evaluation.downstream import DOWNSTREAM_ATTACK, downstream_table
from rcert.evaluation.posteriors import posterior_table
from rcert.models.architectures import build_model
from rcert.settings import TargetedConfig

SIGMA, SCALE, D_IN, D_Z = 0.4, 0.5, 5, 2


def _linear():
    torch.manual_seed(3)
    return build_model("mlp", input_shape=(D_IN,), latent_dim=D_Z, hidden=(),
                       sigma_mode="fixed", fixed_sigma=SIGMA, likelihood="gaussian",
                       gaussian_scale=SCALE).eval()


def _closed_form(model, x, a):
    """E log p(x|z), z = A(x + a eps) + b + sigma eta, decoder g(z) = W z + c (Gaussian)."""
    A, W = (w.detach().double() for w in (model.mu_head.weight, model.decoder[0].weight))
    x = x.double()
    with torch.no_grad():
        mean = model.decode(model.encode(x.float())[0]).double()
    spread = (a**2 * (W @ A).square().sum() + SIGMA**2 * W.square().sum()) / (2 * SCALE**2)
    const = D_IN * math.log(SCALE * math.sqrt(2 * math.pi))
    return -((x - mean).square().sum(1) / (2 * SCALE**2)) - spread - const


def test_elbo_and_denoising_match_the_linear_gaussian_closed_form():
    model = _linear()
    x = torch.rand(4, D_IN, generator=torch.Generator().manual_seed(0))
    df = posterior_table(model, x, levels=(0.0, 0.5), draws=20000, seed=1)
    with torch.no_grad():
        mu = model.encode(x)[0].double()
    kl = 0.5 * (mu.square() + SIGMA**2 - 1 - math.log(SIGMA**2)).sum(1)
    for col, a, extra in (("elbo", 0.0, -kl), ("denoise_0", 0.0, 0.0), ("denoise_0.5", 0.5, 0.0)):
        expected = (_closed_form(model, x, a) + extra).numpy()
        np.testing.assert_allclose(df[col].to_numpy(), expected, rtol=0, atol=0.05)
    np.testing.assert_allclose(df.sigma_norm, SIGMA * math.sqrt(D_Z), rtol=1e-6)


def test_rows_depend_on_the_input_id_only():
    model = _linear()
    x = torch.rand(6, D_IN, generator=torch.Generator().manual_seed(0))
    whole = posterior_table(model, x, seed=2, index=np.arange(10, 16))
    part = posterior_table(model, x[3:], seed=2, index=np.arange(13, 16))
    pd_cols = ["elbo", "denoise_0.1", "denoise_0.5", "denoise_1"]
    np.testing.assert_allclose(whole[pd_cols].to_numpy()[3:], part[pd_cols].to_numpy(),
                               rtol=1e-6)


def test_a_model_without_a_likelihood_is_refused():
    wrapped = rcert.wrap(_linear(), data_range=(0, 1))
    with pytest.raises(rcert.RcertError, match="need the model's likelihood"):
        posterior_table(wrapped, torch.rand(2, D_IN))


def test_an_attack_that_cannot_move_costs_no_accuracy():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(32,)).eval()
    train, test = rcert.load_data("digits:train").subset(300), rcert.load_data(
        "digits:test").subset(60)
    frozen = TargetedConfig(**{**rcert.settings.as_dict(DOWNSTREAM_ATTACK),
                               "lambda_values": (1e9,), "pairs": 20, "max_iter": 5})
    df = downstream_table(model, train.x.reshape(-1, 1, 8, 8), train.y,
                          test.x.reshape(-1, 1, 8, 8), test.y, attack=frozen, epochs=2,
                          run=rcert.RunConfig(allow=("decoder-range",)))
    assert list(df.classifier) == ["mlp_recon", "conv_recon", "mlp_latent"]
    assert (df.accuracy_drop == 0).all() and (df.n_attacked == 20).all()
    assert ((df.accuracy_clean >= 0) & (df.accuracy_clean <= 1)).all()


def test_the_downstream_attack_keeps_one_lambda():
    with pytest.raises(rcert.RcertError, match="needs one lambda"):
        downstream_table(_linear(), torch.rand(4, D_IN), np.arange(4) % 2,
                         torch.rand(4, D_IN), np.arange(4) % 2,
                         attack=TargetedConfig(lambdas=3))
