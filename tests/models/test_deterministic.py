"""Lu & Chen's deterministic autoencoders (``sigma_mode="none"``, families mmd-dae and
swt-dae): the encoder, the objective against an independent assembly, training, the
certificates they get (the Jacobian norms alone, SPEC section 9) and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import rcert
from rcert.errors import RcertError
from rcert.models.architectures import build_model
from rcert.models.objectives import beta_tc_elbo, elbo, regularised_elbo
from rcert.models.training import check_family, family_architecture
from rcert.settings import TrainConfig


def _dae(arch: str = "mlp", **options) -> rcert.models.nets.VAE:
    torch.manual_seed(0)
    sizes = {"hidden": (8,)} if arch == "mlp" else {"channels": (4,)}
    shape = (6,) if arch == "mlp" else (1, 8, 8)
    return build_model(arch, input_shape=shape, latent_dim=3, sigma_mode="none",
                       **sizes, **options).double()


def _batch(n: int = 16, shape: tuple[int, ...] = (6,), seed: int = 1) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def _seeded(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_dae_encodes_deterministically_and_its_traits_say_so(arch):
    model = _dae(arch)
    x = _batch(shape=(6,) if arch == "mlp" else (1, 8, 8))
    mu, sigma = model.encode(x)
    again, _ = model.encode(x)
    assert torch.equal(mu, again)
    assert torch.equal(sigma, torch.zeros_like(mu))  # the contract's pair; sigma ignored
    traits = model.traits
    assert (traits.encoder, traits.stochastic_layers, traits.stochastic) == \
        ("deterministic", 0, False)
    assert traits.data_range == (0.0, 1.0) and traits.likelihood == "bernoulli"
    assert rcert.models.contract.traits(model) == traits
    # No sigma head: the encoder outputs d_z numbers, not 2 d_z.
    assert not any("sigma" in name for name, _ in model.named_parameters())
    if arch == "conv":
        assert model.encoder_head.out_features == 3


def test_a_gaussian_vae_keeps_its_traits():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(6,), latent_dim=3, hidden=(8,))
    assert (model.traits.encoder, model.traits.stochastic_layers) == ("gaussian", 1)
    hier = build_model("hierarchical", input_shape=(6,), latent_dim=3, upper_dims=(2,),
                       hidden=(8,), conditional_hidden=(4,))
    assert (hier.traits.encoder, hier.traits.stochastic_layers) == ("gaussian", 2)


def test_the_elbo_terms_of_a_dae_draw_nothing_and_have_no_kl():
    model = _dae()
    x = _batch()
    a = model.elbo_terms(x, _seeded(1))
    b = model.elbo_terms(x, _seeded(2))
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, rtol=0, atol=0)
    assert a.kl.shape == (1, len(x)) and not a.kl.any()
    z, mu, _ = a.top
    torch.testing.assert_close(z, model.encode(x)[0], rtol=0, atol=0)
    torch.testing.assert_close(mu, z, rtol=0, atol=0)
    torch.testing.assert_close(a.elbo, a.log_likelihood, rtol=0, atol=0)


def test_the_kl_and_tc_objectives_refuse_a_dae():
    model, x = _dae(), _batch()
    with pytest.raises(RcertError, match=r"^the KL needs sigma; a deterministic autoencoder "
                                         r"trains with family mmd-dae or swt-dae$"):
        elbo(model, x)
    with pytest.raises(RcertError, match=r"the total correlation needs sigma"):
        beta_tc_elbo(model, x, beta=2.0, dataset_size=100)


def _independent_log_likelihood(model, x: torch.Tensor) -> np.ndarray:
    """``log p(x | f_enc(x))`` of the MLP DAE, its layers applied by hand in numpy."""
    p = {name: t.detach().numpy() for name, t in model.named_parameters()}
    h = np.maximum(x.numpy() @ p["trunk.0.weight"].T + p["trunk.0.bias"], 0.0)
    z = h @ p["mu_head.weight"].T + p["mu_head.bias"]
    h = np.maximum(z @ p["decoder.0.weight"].T + p["decoder.0.bias"], 0.0)
    logits = h @ p["decoder.2.weight"].T + p["decoder.2.bias"]
    xn = x.numpy()
    # log sigmoid(l) = -log(1 + e^-l), log(1 - sigmoid(l)) = -log(1 + e^l)
    ll = -xn * np.logaddexp(0, -logits) - (1 - xn) * np.logaddexp(0, logits)
    return ll.sum(axis=1), z


def _mmd_double_loop(z: np.ndarray, s: np.ndarray) -> float:
    n, d = z.shape

    def k(a, b):
        return 2 * d / (2 * d + float(np.sum((a - b) ** 2)))
    within = sum(k(z[i], z[j]) + k(s[i], s[j]) for i in range(n) for j in range(n) if i != j)
    across = sum(k(z[i], s[j]) for i in range(n) for j in range(n))
    return within / (n * (n - 1)) - 2 * across / n**2


@pytest.mark.parametrize("family", ["mmd-dae", "swt-dae"])
def test_the_dae_objective_is_log_p_of_the_code_minus_beta_penalty(family):
    # Lu & Chen section 2.2: the VAE's objective with z = f_enc(x), assembled here anew.
    model, x, beta = _dae(), _batch(), 2.5
    got = regularised_elbo(model, x, family=family, beta=beta, kernel="imq",
                           generator=_seeded())
    ll, z = _independent_log_likelihood(model, x)
    if family == "mmd-dae":
        # A DAE draws no encoder noise: the prior draws are the generator's first.
        prior = torch.randn(z.shape, generator=_seeded(), dtype=torch.float64).numpy()
        penalty = _mmd_double_loop(z, prior)
    else:
        penalty = 1 - np.mean([stats.shapiro(z[:, j]).statistic for j in range(z.shape[1])])
    np.testing.assert_allclose(got.detach().numpy(), ll - beta * penalty, rtol=1e-7,
                               atol=1e-7)


def _digits(n: int = 120) -> torch.Tensor:
    return rcert.load_data("digits:train").subset(n).x.reshape(-1, 1, 8, 8)


def _trained(family: str, seed: int = 0, epochs: int = 4):
    x = _digits()
    torch.manual_seed(seed)
    model = build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,),
                        sigma_mode="none")
    history = rcert.fit(model, x[:100], x[100:], TrainConfig(family=family, epochs=epochs,
                                                             batch_size=20, seed=seed),
                        progress=False)
    return model, history


@pytest.mark.parametrize("family", ["mmd-dae", "swt-dae"])
def test_training_a_dae_lowers_its_loss_and_is_seed_reproducible(family):
    model, history = _trained(family)
    losses = [h["train_loss"] for h in history["history"]]
    assert losses[-1] < losses[0]
    assert history["history"][-1]["val_objective"] > history["history"][0]["val_objective"]
    # No ELBO for a DAE: its reconstruction's log-likelihood stands in.
    assert "best_val_elbo" not in history and "train_elbo" not in history
    assert math.isfinite(history["best_val_log_likelihood"])
    again, _ = _trained(family)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name  # bit-identical weights for the same seed
    other, _ = _trained(family, seed=1)
    assert not torch.equal(model.mu_head.weight, other.mu_head.weight)


def test_certify_gives_a_dae_its_exact_jacobian_norms_only():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(6,), latent_dim=3, hidden=(8,),
                        activation="tanh", sigma_mode="none").double()
    x = _batch(n=4)
    df = rcert.certify(model, x, r=0.5, n_samples=20)
    assert list(df.columns) == ["index", "jacobian_fro", "jacobian_spec"]
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0][0], x[i])
        svd = np.linalg.svd(jac.numpy(), compute_uv=False)
        assert df["jacobian_fro"][i] == pytest.approx(np.linalg.norm(jac.numpy()), rel=1e-10)
        assert df["jacobian_spec"][i] == pytest.approx(svd[0], rel=1e-10)
        # Central differences agree to their truncation error.
        h = 1e-6
        fd = np.stack([((model.encode((x[i] + h * e)[None])[0]
                         - model.encode((x[i] - h * e)[None])[0])[0] / (2 * h))
                       .detach().numpy() for e in torch.eye(6, dtype=torch.float64)], axis=1)
        np.testing.assert_allclose(fd, jac.numpy(), rtol=1e-6, atol=1e-8)


def test_the_families_refuse_the_wrong_encoder():
    dae = _dae()
    torch.manual_seed(0)
    gaussian = build_model("mlp", input_shape=(6,), latent_dim=3, hidden=(8,))
    for family in ("vae", "beta-tcvae", "mmd-vae"):
        with pytest.raises(RcertError, match=rf"family {family} trains Gaussian encoders"):
            check_family(dae, family)
    with pytest.raises(RcertError, match=r"use family swt-dae"):
        check_family(dae, "swt-vae")
    for family in ("mmd-dae", "swt-dae"):
        check_family(dae, family)
        with pytest.raises(RcertError, match=rf"family {family} trains deterministic "
                                             rf"autoencoders .*sigma_mode 'learned'"):
            check_family(gaussian, family)


def test_family_architecture_makes_a_dae_and_refuses_another_sigma():
    arch, hparams = family_architecture("mmd-dae", "conv", {"latent_dim": 4})
    assert arch == "conv" and hparams["sigma_mode"] == "none"
    assert family_architecture("swt-dae", "mlp", {"sigma_mode": "none"})[1]["sigma_mode"] \
        == "none"
    with pytest.raises(RcertError, match=r"^family swt-dae is a deterministic autoencoder: "
                                         r"sigma 'fixed' does not apply"):
        family_architecture("swt-dae", "mlp", {"sigma_mode": "fixed"})
    assert "sigma_mode" not in family_architecture("mmd-vae", "mlp", {})[1]


@pytest.mark.parametrize(("options", "message"), [
    ({"tau": 0.1}, r"tau only applies to sigma_mode='floor'"),
    ({"fixed_sigma": 0.5}, r"fixed_sigma only applies to sigma_mode='fixed'"),
])
def test_a_dae_refuses_sigma_parameters(options, message):
    with pytest.raises(RcertError, match=message):
        _dae(**options)


def test_a_hierarchical_vae_refuses_a_deterministic_first_layer():
    with pytest.raises(RcertError, match=r"^a hierarchical VAE needs Gaussian layers: "
                                         r"sigma_mode 'none'"):
        build_model("hierarchical", input_shape=(6,), latent_dim=3, upper_dims=(2,),
                    hidden=(8,), sigma_mode="none")


def test_a_dae_round_trips_through_a_checkpoint(tmp_path):
    model = _dae()
    rcert.save(model, tmp_path / "dae.safetensors", data="digits:train")
    loaded = rcert.load(tmp_path / "dae.safetensors")
    assert loaded.sigma_mode == "none" and loaded.traits == model.traits.__class__(
        stochastic_layers=0, encoder="deterministic", data_range=(0.0, 1.0),
        likelihood="bernoulli")
    x = _batch()
    torch.testing.assert_close(loaded.double().encode(x)[0], model.encode(x)[0])


def test_no_r_is_recommended_for_a_dae():
    with pytest.raises(RcertError, match=r"^cannot recommend r for a deterministic "
                                         r"autoencoder"):
        rcert.recommend_r(_dae(), _batch())
