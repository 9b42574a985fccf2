import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from rcert.errors import RcertError
from rcert.models.adapters import SIGMA_CONVERSIONS, Wrapped, wrap
from rcert.source import SIGMA_KINDS


def _rand(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Uniform test data from a seeded generator (reproducible under -k)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), **kw)


SIGMA = 0.3


class Foreign(nn.Module):
    """A hand-written VAE whose encoder reports sigma = 0.3 in a chosen convention."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
            torch.manual_seed(0)
            self.lin = nn.Linear(4, 2)
            self.out = nn.Linear(2, 4)
        self.second = {
            "sigma": SIGMA,
            "var": SIGMA**2,
            "logvar": 2 * math.log(SIGMA),
            "logsigma": math.log(SIGMA),
        }[kind]

    def encode(self, x):
        mu = self.lin(x)
        return mu, torch.full_like(mu, self.second)

    def decode(self, z):
        return torch.sigmoid(self.out(z))


@pytest.mark.parametrize("kind", ["sigma", "var", "logvar", "logsigma"])
def test_every_convention_yields_the_standard_deviation(kind):
    module = Foreign(kind)
    model = wrap(module, sigma=kind)
    x = _rand(3, 4)
    mu, sigma = model.encode(x)
    torch.testing.assert_close(mu, module.lin(x))
    torch.testing.assert_close(sigma, torch.full((3, 2), SIGMA), rtol=1e-6, atol=0)
    torch.testing.assert_close(model.decode(mu), module.decode(mu))


def test_conversions_are_exact_in_float64():
    x = _rand(2, 4, dtype=torch.float64)
    for kind in ["var", "logvar", "logsigma"]:
        module = Foreign(kind).double()
        _, sigma = wrap(module, sigma=kind).encode(x)
        assert torch.allclose(sigma, torch.full_like(sigma, SIGMA), rtol=1e-15, atol=0), kind


def test_wrong_convention_is_not_silently_equal():
    # Guards the tests above: reading a log-variance as a std gives a different sigma.
    _, sigma = wrap(Foreign("logvar"), sigma="sigma").encode(_rand(1, 4))
    assert not torch.allclose(sigma, torch.full_like(sigma, SIGMA))


def test_list_output_like_pytorch_vae():
    class PyTorchVAEStyle(Foreign):
        def encode(self, x):
            return list(super().encode(x))

    _, sigma = wrap(PyTorchVAEStyle("logvar"), sigma="logvar").encode(_rand(2, 4))
    torch.testing.assert_close(sigma, torch.full((2, 2), SIGMA))


class ModelOutput(OrderedDict):
    """Stand-in for pythae's ModelOutput: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PythaeStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Foreign("logvar")

    def encoder(self, x):
        mu, log_covariance = self.inner.encode(x)
        return ModelOutput(embedding=mu, log_covariance=log_covariance)

    def decoder(self, z):
        return ModelOutput(reconstruction=self.inner.decode(z))


def test_pythae_model_output_with_custom_callables():
    module = PythaeStyle()
    model = wrap(
        module,
        sigma="logvar",
        encode=lambda m, x: m.encoder(x),
        decode=lambda m, z: m.decoder(z),
    )
    x = _rand(2, 4)
    mu, sigma = model.encode(x)
    torch.testing.assert_close(sigma, torch.full((2, 2), SIGMA))
    torch.testing.assert_close(model.decode(mu), module.inner.decode(mu))


def test_pythae_log_covariance_with_wrong_sigma_kind_is_refused():
    model = wrap(PythaeStyle(), encode=lambda m, x: m.encoder(x), decode=lambda m, z: m.decoder(z))
    with pytest.raises(RcertError, match="sigma='logvar'"):
        model.encode(_rand(2, 4))


def test_wrapped_is_a_module_holding_the_original():
    module = Foreign("sigma")
    model = wrap(module, input_shape=(4,), data_range=(0, 1))
    assert isinstance(model, Wrapped)
    assert model.module is module
    assert set(dict(model.named_parameters())) == {
        f"module.{n}" for n, _ in module.named_parameters()
    }
    assert model.input_shape == (4,)
    assert model.data_range == (0.0, 1.0)
    model.eval()
    assert not module.training
    assert not hasattr(wrap(Foreign("sigma")), "input_shape")


class NotAPair(Foreign):
    def encode(self, x):
        mu = self.lin(x)
        return torch.cat([mu, mu], dim=1)


@pytest.mark.parametrize(
    "make,kwargs,call,match",
    [
        (lambda: NotAPair("sigma"), {}, "encode", "pass encode="),
        (lambda: Foreign("sigma"), {"encode": lambda m, x: (m.lin(x),) * 3}, "encode", "pair"),
        (lambda: Foreign("sigma"), {"encode": lambda m, x: (m.lin(x), 0.3)}, "encode", "tensors"),
        (
            lambda: Foreign("sigma"),
            {"encode": lambda m, x: (m.lin(x), m.lin(x)[:, :1])},
            "encode",
            "both must be",
        ),
        (lambda: Foreign("sigma"), {"decode": lambda m, z: [z]}, "decode", "not a tensor"),
    ],
)
def test_bad_module_outputs_raise_rcert_error(make, kwargs, call, match):
    model = wrap(make(), **kwargs)
    with pytest.raises(RcertError, match=match):
        if call == "encode":
            model.encode(_rand(2, 4))
        else:
            model.decode(_rand(2, 2))


@pytest.mark.parametrize(
    "module,kwargs,match",
    [
        ("not a module", {}, "torch.nn.Module"),
        (nn.Linear(2, 2), {}, "no encode"),
        (nn.Linear(2, 2), {"encode": lambda m, x: (x, x)}, "no decode"),
        (None, {"sigma": "std"}, "unknown sigma kind"),
        (None, {"encode": lambda x: x}, "two arguments"),
        (None, {"encode": "encoder"}, "must be a function"),
        (None, {"decode": lambda m, z, extra: z}, "two arguments"),
        (None, {"input_shape": (0, 4)}, "input_shape"),
        (None, {"input_shape": "4"}, "input_shape"),
        (None, {"data_range": (1, 0)}, "data_range"),
        (None, {"data_range": (0, math.inf)}, "data_range"),
        (None, {"data_range": (0,)}, "data_range"),
    ],
)
def test_bad_wrap_arguments_raise_rcert_error(module, kwargs, match):
    with pytest.raises(RcertError, match=match):
        wrap(Foreign("sigma") if module is None else module, **kwargs)


def test_wrap_converts_every_sigma_kind_a_model_source_names():
    assert tuple(SIGMA_CONVERSIONS) == SIGMA_KINDS


def test_wrapped_encoder_supports_vmap_jacobians():
    module = Foreign("logvar")
    model = wrap(module, sigma="logvar")
    x = _rand(3, 4)
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model.encode(xi[None])[0][0]))(x)
    torch.testing.assert_close(jac, module.lin.weight.expand(3, 2, 4))


class Submodules(nn.Module):
    """No encode/decode methods: an ``encoder`` whose output is chosen by ``style``."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.inner = Foreign("logvar")
        self.decoder = self.inner.out

    def encoder(self, x):
        mu, logvar = self.inner.encode(x)
        if style := {"tuple": tuple, "list": list}.get(self.style):
            return style((mu, logvar))
        if self.style == "pythae":
            return ModelOutput(embedding=mu, log_covariance=logvar)
        return {"mu": mu, self.style: logvar}


@pytest.mark.parametrize("style", ["tuple", "list", "pythae", "log_var", "logvar"])
def test_encoder_and_decoder_submodules_need_no_glue(style):
    module = Submodules(style)
    model = wrap(module, sigma="logvar")
    x = _rand(3, 4)
    mu, sigma = model.encode(x)
    torch.testing.assert_close(mu, module.inner.lin(x))
    torch.testing.assert_close(sigma, torch.full((3, 2), SIGMA))
    torch.testing.assert_close(model.decode(mu), module.inner.out(mu))


@pytest.mark.parametrize("style", ["pythae", "log_var", "logvar"])
def test_named_log_variances_need_sigma_logvar(style):
    model = wrap(Submodules(style), sigma="var")
    with pytest.raises(RcertError, match="sigma='logvar'") as err:
        model.encode(_rand(2, 4))
    assert "\n" not in str(err.value)


def test_pythae_style_modules_need_no_callables():
    module = PythaeStyle()
    model = wrap(module, sigma="logvar")
    x = _rand(2, 4)
    mu, sigma = model.encode(x)
    torch.testing.assert_close(sigma, torch.full((2, 2), SIGMA))
    torch.testing.assert_close(model.decode(mu), module.inner.decode(mu))


def test_encode_method_wins_over_encoder_submodule():
    class Both(Foreign):
        def __init__(self) -> None:
            super().__init__("sigma")
            self.encoder = nn.Linear(4, 2)  # a different map, which must not be called

    module = Both()
    x = _rand(2, 4)
    torch.testing.assert_close(wrap(module).encode(x)[0], module.lin(x))


def test_a_non_callable_encoder_attribute_is_refused():
    module = nn.Linear(2, 2)
    module.encoder = "not callable"
    with pytest.raises(RcertError, match=r"no encode.*no encoder submodule"):
        wrap(module)
