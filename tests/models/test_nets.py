import json
import math

import pytest
import torch

from rcert.errors import RcertError
from rcert.models.architectures import ARCHITECTURES, build_model
from rcert.models.nets import LEARNED_SIGMA_MIN, MLPVAE, ConvVAE


def _rand(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Uniform test data from a seeded generator (reproducible under -k)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), **kw)


def _randn(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Standard normal test data from a seeded generator (reproducible under -k)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), **kw)


def _model(arch: str, **kw):
    defaults = {"input_shape": (1, 8, 8), "latent_dim": 3}
    defaults.update({"hidden": (16,)} if arch == "mlp" else {"channels": (4, 8)})
    with torch.random.fork_rng(devices=[]):  # seeded weights; the global RNG is left alone
        torch.manual_seed(0)
        return build_model(arch, **{**defaults, **kw}).eval()


@pytest.mark.parametrize("side", [8, 28, 32, 64])
@pytest.mark.parametrize("channels", [(4, 8), (2, 4, 4)])
@pytest.mark.parametrize("c_in", [1, 3])
def test_conv_output_shape_equals_input_shape(side, channels, c_in):
    model = _model("conv", input_shape=(c_in, side, side), channels=channels)
    x = _rand(2, c_in, side, side)
    mu, sigma = model.encode(x)
    assert mu.shape == sigma.shape == (2, 3)
    assert model.decode(mu).shape == x.shape
    assert model.decode_logits(mu).shape == x.shape


def test_conv_default_channels_on_mnist_and_non_square_inputs():
    assert _model("conv", input_shape=(1, 28, 28), channels=(32, 64)).decode(
        torch.zeros(1, 3)
    ).shape == (1, 1, 28, 28)
    # 28 -> 14 -> 7 -> 3 needs output_padding 1 on the way back up; 21 is odd from the start.
    model = _model("conv", input_shape=(2, 28, 21), channels=(2, 2, 2))
    assert model.decode(torch.zeros(1, 3)).shape == (1, 2, 28, 21)


@pytest.mark.parametrize("shape", [(10,), (1, 8, 8), (2, 3, 5)])
def test_mlp_shapes(shape):
    model = _model("mlp", input_shape=shape)
    x = _rand(4, *shape)
    mu, sigma = model.encode(x)
    assert mu.shape == sigma.shape == (4, 3)
    assert model.decode(mu).shape == x.shape


def test_mlp_has_shared_trunk_and_two_heads():
    names = {n for n, _ in _model("mlp", hidden=(16, 8)).named_parameters()}
    assert {"mu_head.weight", "sigma_head.weight"} <= names
    assert any(n.startswith("trunk.") for n in names)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_learned_sigma_is_positive_even_when_softplus_underflows(arch):
    model = _model(arch)
    _, sigma = model.encode(_rand(5, 1, 8, 8))
    assert (sigma > 0).all()
    head = model.sigma_head if arch == "mlp" else model.encoder_head
    with torch.no_grad():
        head.bias.fill_(-1e4)
        head.weight.zero_()
    _, sigma = model.encode(_rand(5, 1, 8, 8, seed=1))
    torch.testing.assert_close(sigma, torch.full_like(sigma, LEARNED_SIGMA_MIN))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_floor_sigma_is_at_least_tau(arch):
    model = _model(arch, sigma_mode="floor", tau=0.05)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 3, generator=g)
    _, sigma = model.encode(_rand(16, 1, 8, 8))
    assert (sigma >= 0.05).all()
    assert sigma.min() < 0.2  # the floor is actually reached for strongly negative s


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_fixed_sigma_is_constant_and_has_no_head(arch):
    model = _model(arch, sigma_mode="fixed", fixed_sigma=0.3)
    mu, sigma = model.encode(_rand(4, 1, 8, 8))
    assert torch.equal(sigma, torch.full_like(mu, 0.3))
    assert not any("sigma" in n for n, _ in model.named_parameters())
    if arch == "conv":
        assert model.encoder_head.out_features == 3


def test_decode_is_sigmoid_for_bernoulli_and_identity_for_gaussian():
    z = _randn(4, 3)
    bern = _model("mlp")
    torch.testing.assert_close(bern.decode(z), torch.sigmoid(bern.decode_logits(z)))
    gauss = _model("mlp", likelihood="gaussian")
    torch.testing.assert_close(gauss.decode(z), gauss.decode_logits(z))


def test_bernoulli_log_likelihood_matches_distribution_and_handles_grey_values():
    model = _model("mlp")
    z = _randn(6, 3)
    logits = model.decode_logits(z)
    x_bin = (_rand(6, 1, 8, 8) > 0.5).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x_bin).flatten(1).sum(1)
    torch.testing.assert_close(model.log_likelihood(x_bin, z), expected)
    x_grey = _rand(6, 1, 8, 8, seed=1)
    p = torch.sigmoid(logits.double())
    grey = (x_grey * p.log() + (1 - x_grey) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(model.log_likelihood(x_grey, z).double(), grey, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_likelihood_is_finite_for_saturated_logits():
    model = _model("mlp", hidden=())
    with torch.no_grad():
        model.decoder[0].bias.fill_(200.0)
    ll = model.log_likelihood(torch.zeros(2, 1, 8, 8), torch.zeros(2, 3))
    torch.testing.assert_close(ll, torch.full((2,), -200.0 * 64))


def test_gaussian_log_likelihood_includes_the_constant():
    model = _model("mlp", likelihood="gaussian", gaussian_scale=0.2)
    z, x = _randn(5, 3), _rand(5, 1, 8, 8)
    expected = torch.distributions.Normal(model.decode(z), 0.2).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.log_likelihood(x, z), expected)


@pytest.mark.parametrize("activation", ["relu", "elu", "softplus", "tanh"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_every_activation_builds_and_runs(arch, activation):
    model = _model(arch, activation=activation)
    kinds = {type(m).__name__.lower() for m in model.modules()}
    assert activation in kinds
    mu, _ = model.encode(_rand(2, 1, 8, 8))
    assert torch.isfinite(model.decode(mu)).all()


@pytest.mark.parametrize(
    "arch,kw",
    [
        ("mlp", {"hidden": [8, 4], "activation": "tanh", "sigma_mode": "floor", "tau": 0.1}),
        (
            "mlp",
            {"hidden": [], "sigma_mode": "fixed", "fixed_sigma": 0.5, "likelihood": "gaussian"},
        ),
        ("conv", {"channels": [4], "gaussian_scale": 0.3, "likelihood": "gaussian"}),
    ],
)
def test_config_is_json_and_rebuilds_the_same_architecture(arch, kw):
    model = _model(arch, **kw)
    config = json.loads(json.dumps(model.config()))
    assert config == model.config()
    assert config["arch"] == arch
    rebuilt = build_model(**config)
    assert type(rebuilt) is ARCHITECTURES[arch]
    assert rebuilt.config() == model.config()
    rebuilt.load_state_dict(model.state_dict())
    x = _rand(3, 1, 8, 8)
    for a, b in zip(model.eval().encode(x), rebuilt.eval().encode(x), strict=True):
        assert torch.equal(a, b)


def test_defaults_match_the_spec():
    mlp = build_model("mlp", input_shape=[4], latent_dim=2)
    assert isinstance(mlp, MLPVAE)
    assert mlp.config()["hidden"] == [256, 256]
    conv = build_model("conv", input_shape=[1, 8, 8], latent_dim=2)
    assert isinstance(conv, ConvVAE)
    config = conv.config()
    assert config["channels"] == [32, 64]
    assert (config["activation"], config["sigma_mode"], config["likelihood"]) == (
        "relu",
        "learned",
        "bernoulli",
    )
    assert config["gaussian_scale"] == 0.1
    assert conv.data_range == (0.0, 1.0)
    assert conv.input_shape == (1, 8, 8)
    assert conv.latent_dim == 2


@pytest.mark.parametrize(
    "arch,kw,match",
    [
        ("transformer", {}, "unknown architecture"),
        ("mlp", {"hiden": (4,)}, "unknown"),
        ("conv", {"hidden": (4,)}, "unknown"),
        ("mlp", {"input_shape": None}, "input_shape"),
        ("mlp", {"latent_dim": 0}, "latent_dim"),
        ("mlp", {"latent_dim": True}, "latent_dim"),
        ("mlp", {"latent_dim": 2.5}, "latent_dim"),
        ("mlp", {"hidden": (4, -1)}, "hidden"),
        ("mlp", {"hidden": "256"}, "hidden"),
        ("mlp", {"activation": "gelu"}, "activation"),
        ("mlp", {"sigma_mode": "log"}, "sigma_mode"),
        ("mlp", {"sigma_mode": "floor"}, "tau"),
        ("mlp", {"sigma_mode": "floor", "tau": 0.0}, "tau"),
        ("mlp", {"sigma_mode": "floor", "tau": -0.1}, "tau"),
        ("mlp", {"sigma_mode": "floor", "tau": math.nan}, "tau"),
        ("mlp", {"tau": 0.1}, "tau only applies"),
        ("mlp", {"sigma_mode": "fixed"}, "fixed_sigma"),
        ("mlp", {"sigma_mode": "fixed", "fixed_sigma": 0}, "fixed_sigma"),
        ("mlp", {"fixed_sigma": 0.1}, "fixed_sigma only applies"),
        ("mlp", {"likelihood": "poisson"}, "likelihood"),
        ("mlp", {"gaussian_scale": 0}, "gaussian_scale"),
        ("conv", {"input_shape": (64,)}, r"\(C, H, W\)"),
        ("conv", {"input_shape": (1, 8, 8), "channels": (2, 2, 2, 2)}, "too small"),
        ("conv", {"channels": ()}, "channels"),
    ],
)
def test_bad_hyperparameters_raise_rcert_error(arch, kw, match):
    base = {"input_shape": (1, 8, 8), "latent_dim": 2}
    with pytest.raises(RcertError, match=match):
        build_model(arch, **{**base, **kw})


def test_missing_hyperparameter_raises_rcert_error():
    with pytest.raises(RcertError, match=r"missing.*latent_dim"):
        build_model("mlp", input_shape=(4,))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_bad_inputs_raise_rcert_error(arch):
    model = _model(arch)
    with pytest.raises(RcertError, match="shape"):
        model.encode(_rand(2, 1, 9, 8))
    with pytest.raises(RcertError, match="shape"):
        model.encode(_rand(1, 8, 8))
    with pytest.raises(RcertError, match="float64"):
        model.encode(_rand(2, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(RcertError, match="latent"):
        model.decode(torch.zeros(2, 4))
    with pytest.raises(RcertError, match="latent"):
        model.decode(torch.zeros(3))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_rows_are_independent_and_vmap_jacobians_work(arch):
    model = _model(arch, activation="tanh")
    x = _rand(4, 1, 8, 8)
    mu, sigma = model.encode(x)
    mu_1, sigma_1 = model.encode(x[2:3])
    torch.testing.assert_close(mu[2:3], mu_1)
    torch.testing.assert_close(sigma[2:3], sigma_1)

    def mu_of(xi):
        return model.encode(xi.unsqueeze(0))[0].squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(mu_of))(x)
    assert jac.shape == (4, 3, 1, 8, 8)
    reference = torch.autograd.functional.jacobian(mu_of, x[1])
    torch.testing.assert_close(jac[1], reference)
    dec = torch.func.vmap(torch.func.jacrev(lambda z: model.decode(z.unsqueeze(0))[0]))(mu)
    assert dec.shape == (4, 1, 8, 8, 3)


def test_an_architecture_too_large_to_read_back_is_refused_before_allocating(monkeypatch):
    # 2e16 parameters: allocating them would take the machine down long before training.
    with pytest.raises(RcertError, match=r"has 2e\+16 parameters \(7\.629e\+10 MB\), more than "
                                         r"the 4096 MB of a checkpoint rcert reads; choose "
                                         r"smaller layers"):
        build_model("mlp", input_shape=(64,), latent_dim=2, hidden=(10**8, 10**8))
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "0.1")
    with pytest.raises(RcertError, match="raise RCERT_MAX_FILE_MB"):
        build_model("mlp", input_shape=(64,), latent_dim=2, hidden=(256, 256))
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "1")
    assert sum(p.numel() for p in build_model("mlp", input_shape=(64,), latent_dim=2,
                                              hidden=(256, 256)).parameters()) == 166468


def test_the_chen_architecture_is_conv_with_a_dense_layer():
    # Chen et al. (2018), as Willetts et al. use it: 4 stride-2 convolutions 64 -> 4, then
    # the 4x4 valid convolution to 512 channels, which is a dense layer of width 512.
    model = build_model("conv", input_shape=(1, 64, 64), latent_dim=10,
                        channels=(32, 32, 64, 64), dense=512)
    linears = [m for m in model.encoder_convs if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 4 * 4, 512)]
    assert model.encoder_head.in_features == 512
    assert model.decode(torch.zeros(3, 10)).shape == (3, 1, 64, 64)
    assert build_model(**model.config()).config() == model.config()
    assert "dense" not in build_model("conv", input_shape=(1, 8, 8), latent_dim=2).config()
