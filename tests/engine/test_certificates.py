"""The certificate registry (``rcert.engine.certificates``) and the model contract
(``rcert.models.contract``): which columns a model gets is decided by its traits alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import UNBOXED, LinearVAE
from torch import nn

import rcert
from rcert.engine.certificates import COLUMNS, columns_for
from rcert.errors import RcertError
from rcert.models.contract import ModelTraits, traits

JACOBIAN_ONLY = ("index", "jacobian_fro", "jacobian_spec")
THEOREM1 = ("bound", "bound_certified", "bound_spectral", "bound_whitened", "latent_margin")
MONTE_CARLO = ("k", "n", "p_hat", "p_lower", "r_min", "r_min_upper", "abstain")
ENCODER = ("sigma_min", "sigma_mean", "jacobian_whitened")
DETERMINISTIC = ModelTraits(stochastic_layers=0, encoder="deterministic")
UPPER_FED = ModelTraits(stochastic_layers=2, input_feeds_upper_layers=True)


def _in_columns_order(cols) -> bool:
    positions = [COLUMNS.index(c) for c in cols]
    return positions == sorted(positions)


def test_a_one_layer_gaussian_vae_gets_every_column():
    assert columns_for(ModelTraits()) == COLUMNS
    assert len(set(COLUMNS)) == len(COLUMNS)
    assert set(JACOBIAN_ONLY + THEOREM1 + MONTE_CARLO + ENCODER) == set(COLUMNS)


def test_a_deterministic_encoder_gets_only_the_jacobian_norms():
    assert columns_for(DETERMINISTIC) == JACOBIAN_ONLY


@pytest.mark.parametrize("layers", [2, 3, 5])
def test_input_feeding_upper_layers_drops_the_first_layer_certificates(layers):
    cols = columns_for(ModelTraits(stochastic_layers=layers, input_feeds_upper_layers=True))
    assert not set(cols) & set(THEOREM1)
    assert set(MONTE_CARLO) <= set(cols)
    assert set(ENCODER + JACOBIAN_ONLY) <= set(cols)
    assert _in_columns_order(cols)


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_first_layer_only_models_keep_theorem1(layers):
    # Without x feeding the upper layers, SPEC section 8 carries the certificates over.
    assert columns_for(ModelTraits(stochastic_layers=layers)) == COLUMNS
    # One layer: nothing above it to feed, whatever the flag says.
    assert columns_for(ModelTraits(stochastic_layers=1, input_feeds_upper_layers=True)) \
        == COLUMNS


@pytest.mark.parametrize("kwargs", [
    {"stochastic_layers": 1, "encoder": "deterministic"},
    {"stochastic_layers": 2, "encoder": "deterministic"},
    {"stochastic_layers": -1, "encoder": "deterministic"},
    {"stochastic_layers": -1},
    {"encoder": "laplace"},
    {"encoder": "Gaussian"},
    {"likelihood": "poisson"},
    {"likelihood": "Bernoulli"},
])
def test_model_traits_refuse_inconsistent_values(kwargs):
    with pytest.raises(RcertError):
        ModelTraits(**kwargs)


@pytest.mark.parametrize("layers", [0, 1.5, True, "2"])
def test_a_gaussian_encoder_needs_a_positive_integer_number_of_layers(layers):
    # "0 for a deterministic encoder" (the contract): a Gaussian encoder with no stochastic
    # layer contradicts itself, and so does a layer count that is not an integer.
    with pytest.raises(RcertError):
        ModelTraits(stochastic_layers=layers, encoder="gaussian")


@pytest.mark.parametrize("likelihood", [None, "bernoulli", "gaussian"])
def test_model_traits_accept_the_known_likelihoods(likelihood):
    assert ModelTraits(likelihood=likelihood).likelihood == likelihood


class _Bare(nn.Module):
    """A model without ``traits``; attributes are set per test."""

    def encode(self, x):
        return x, torch.ones_like(x)

    def decode(self, z):
        return z


def test_traits_of_a_model_without_traits_are_a_one_layer_gaussian_vae():
    bare = _Bare()
    assert traits(bare) == ModelTraits()
    bare.data_range = (0, 1)
    bare.likelihood = "bernoulli"
    got = traits(bare)
    assert got == ModelTraits(stochastic_layers=1, encoder="gaussian",
                              input_feeds_upper_layers=False, data_range=(0.0, 1.0),
                              likelihood="bernoulli")
    assert all(type(v) is float for v in got.data_range)
    # A likelihood attribute that is not a word (a method, say) is not a likelihood.
    bare.likelihood = lambda x, z: 0.0
    assert traits(bare).likelihood is None
    assert traits(bare).data_range == (0.0, 1.0)


def test_traits_attribute_must_be_model_traits():
    bare = _Bare()
    bare.traits = {"stochastic_layers": 0, "encoder": "deterministic"}
    with pytest.raises(RcertError, match="ModelTraits"):
        traits(bare)
    bare.traits = DETERMINISTIC
    assert traits(bare) is DETERMINISTIC


# --- end to end through rcert.certify ---------------------------------------------------------


class LinearAutoencoder(nn.Module):
    """A deterministic autoencoder with ``mu = A x``; ``sigma`` is returned as ``sigma_value``
    (0 by default) and must be ignored."""

    traits = DETERMINISTIC

    def __init__(self, input_size: int = 6, latent_dim: int = 3, seed: int = 0,
                 sigma_value: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(latent_dim, input_size, generator=g,
                                          dtype=torch.float64))
        self.B = nn.Parameter(torch.randn(input_size, latent_dim, generator=g,
                                          dtype=torch.float64))
        self.sigma_value = sigma_value

    def encode(self, x):
        mu = x @ self.A.T
        return mu, torch.full_like(mu, self.sigma_value)

    def decode(self, z):
        return z @ self.B.T


@pytest.mark.parametrize(("seed", "sigma_value"), [(0, 0.0), (1, 0.0), (2, 0.3)])
def test_deterministic_autoencoder_gets_exact_jacobian_norms(seed, sigma_value):
    model = LinearAutoencoder(seed=seed, sigma_value=sigma_value)
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    df = rcert.certify(model, x, r=0.5, n_samples=20, run=UNBOXED)
    assert list(df.columns) == list(JACOBIAN_ONLY)
    assert not any("sigma" in c for c in df.columns)
    a = model.A.detach().numpy()
    assert df["index"].tolist() == list(range(5))
    np.testing.assert_allclose(df["jacobian_fro"], np.linalg.norm(a, "fro"), rtol=1e-10)
    np.testing.assert_allclose(df["jacobian_spec"], np.linalg.svd(a, compute_uv=False)[0],
                               rtol=1e-10)
    assert np.isfinite(df.to_numpy(dtype=np.float64)).all()


def test_deterministic_autoencoder_keeps_given_ids():
    model = LinearAutoencoder()
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    df = rcert.certify(model, x, r=0.5, index=np.array([9, 2, 40]), run=UNBOXED)
    assert df["index"].tolist() == [9, 2, 40]


class _UpperFedLinearVAE(LinearVAE):
    """A LinearVAE that declares two stochastic layers with x feeding the upper one."""

    traits = UPPER_FED


def test_upper_fed_model_gets_no_theorem1_columns_from_certify():
    model = _UpperFedLinearVAE()
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(0))
    df = rcert.certify(model, x, r=2.0, n_samples=50, run=UNBOXED)
    assert list(df.columns) == list(columns_for(UPPER_FED))
    assert not set(df.columns) & set(THEOREM1)
    assert set(MONTE_CARLO) <= set(df.columns)
    # The columns it keeps are the ones a one-layer model would get, unchanged.
    plain = rcert.certify(LinearVAE(), x, r=2.0, n_samples=50, run=UNBOXED)
    for col in df.columns:
        np.testing.assert_array_equal(df[col].to_numpy(), plain[col].to_numpy(), err_msg=col)
