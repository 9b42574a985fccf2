"""The library loaders read each library's own file format and convert its conventions.

Every reference here is computed independently of rcert's re-implementations: pythae's
own model, and for PyTorch-VAE and beta-TCVAE state dicts written key by key from the
repositories' layouts and evaluated with torch.nn.functional.
"""

import argparse
import functools
import json
import math
import os
import pickle
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import SPECIAL_KINDS, make_special

from rcert.errors import RcertError
from rcert.models.foreign import load_model
from rcert.models.libraries import beta_tcvae, loader, pytorch_vae
from rcert.models.libraries import pythae as pythae_loader
from rcert.models.statedict import SAFE_GLOBALS, read_torch_file
from rcert.source import ModelSource

META_KEYS = {"format", "library", "sigma", "data_range", "input_shape"}


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _error(load, source: ModelSource, obj=None) -> str:
    with pytest.raises(RcertError) as err:
        load(source, obj)
    message = str(err.value)
    assert "\n" not in message
    return message


class _Payload:
    """Pickles to a call that creates ``marker``: proof that unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


# ---------------------------------------------------------------- pythae


@pytest.fixture
def pythae():
    return pytest.importorskip("pythae.models", reason="pythae is optional: pip install "
                                                       "rcert[pythae]")


def _saved(pythae, folder: Path, name: str = "VAE", **nets) -> torch.nn.Module:
    config_cls = getattr(pythae, f"{name}Config", None) or getattr(pythae, f"{name}_Config")
    config = config_cls(input_dim=(1, 8, 8), latent_dim=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = getattr(pythae, name)(config, **nets)
    model.save(str(folder))
    return model.eval()


@pytest.mark.parametrize("name", ["VAE", "BetaTCVAE", "VAMP", "FactorVAE", "IWAE"])
def test_a_pythae_folder_gives_the_pythae_models_outputs(pythae, tmp_path, name):
    reference = _saved(pythae, tmp_path / "m", name)
    assert pythae_loader.detect(tmp_path / "m", None)
    model = pythae_loader.load(ModelSource(str(tmp_path / "m")), None)
    x, z = _rand(4, 1, 8, 8), _rand(4, 3, seed=1)
    out = reference.encoder(x)
    mu, sigma = model.encode(x)
    assert torch.equal(mu, out.embedding)
    torch.testing.assert_close(sigma, torch.exp(0.5 * out.log_covariance))
    assert torch.equal(model.decode(z), reference.decoder(z).reconstruction)
    assert not model.training
    assert model.input_shape == (1, 8, 8) and model.data_range == (0.0, 1.0)
    assert model.meta.keys() >= META_KEYS | {"config", "model", "unpickled"}
    assert model.meta["sigma"] == "logvar" and model.meta["model"] == name
    assert model.meta["config"] == json.loads((tmp_path / "m" / "model_config.json").read_text())
    assert json.loads(json.dumps(model.meta)) == model.meta


def test_the_model_pt_of_a_pythae_folder_is_read_as_the_folder(pythae, tmp_path):
    reference = _saved(pythae, tmp_path / "m")
    path = tmp_path / "m" / "model.pt"
    obj = read_torch_file(path)
    assert pythae_loader.detect(path, obj)
    assert not pythae_loader.detect(tmp_path, None)
    model = pythae_loader.load(ModelSource(str(path)), obj)
    x = _rand(2, 1, 8, 8)
    assert torch.equal(model.encode(x)[0], reference.encoder(x).embedding)


def test_source_settings_override_the_pythae_defaults(pythae, tmp_path):
    _saved(pythae, tmp_path / "m")
    model = pythae_loader.load(ModelSource(str(tmp_path / "m"), data_range=(-1, 1),
                                           input_shape=(64,)), None)
    assert model.data_range == (-1.0, 1.0) and model.input_shape == (64,)
    assert model.meta["data_range"] == [-1.0, 1.0] and model.meta["input_shape"] == [64]


@pytest.mark.parametrize(("name", "reason"), [
    ("AE", "has a deterministic encoder"), ("RAE_L2", "has a deterministic encoder"),
    ("VAE_IAF", "moves the encoder's Gaussian through a flow"),
    ("HVAE", "moves the encoder's Gaussian through a flow"), ("SVAE", "has a von Mises-Fisher")])
def test_pythae_models_without_a_gaussian_posterior_are_refused(pythae, tmp_path, name, reason):
    _saved(pythae, tmp_path / "m", name)
    message = _error(pythae_loader.load, ModelSource(str(tmp_path / "m")))
    assert f"holds a pythae {name}, which {reason}" in message


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "model_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("name", ["BaseAEConfig", "AutoConfig", "VAE", "os.system",
                                  "EnvironmentConfig"])
def test_a_config_name_outside_pythaes_model_configs_is_refused(pythae, tmp_path, name):
    _saved(pythae, tmp_path / "m")
    _edit_config(tmp_path / "m", name=name)
    message = _error(pythae_loader.load, ModelSource(str(tmp_path / "m")))
    assert f"names {name!r}, not a pythae model rcert reads" in message


@pytest.mark.parametrize(("changes", "expected"), [
    ({"latent_dim": "three"}, "is not a valid VAEConfig (1 validation error"),
    ({"input_dim": [1, 0, 8]}, "has input_dim [1, 0, 8], not positive integers"),
    ({"latent_dim": 4}, "shapes differ for decoder.layers.0.0.weight"),
    ({"input_dim": [1, 100000, 100000]}, "does not fit the architecture"),
    ({"latent_dim": -3}, "model_config.json describes an invalid model (Trying"),
])
def test_invalid_or_mismatching_pythae_configs_are_named(pythae, tmp_path, changes, expected):
    _saved(pythae, tmp_path / "m")
    _edit_config(tmp_path / "m", **changes)
    assert expected in _error(pythae_loader.load, ModelSource(str(tmp_path / "m")))


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"latent_dim": 3}',
                                  '{"name": "VAEConfig", "latent_dim": NaN}',
                                  '{"name": ' + "[" * 100_000])
def test_a_config_that_is_no_pythae_config_is_refused_without_pythae(tmp_path, text):
    (tmp_path / "model_config.json").write_text(text)
    message = _error(pythae_loader.load, ModelSource(str(tmp_path)))
    assert "model_config.json" in message


def test_reading_a_pythae_folder_without_pythae_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "model_config.json").write_text('{"name": "VAEConfig", "latent_dim": 3}')
    monkeypatch.setitem(sys.modules, "pythae", None)
    monkeypatch.setitem(sys.modules, "pythae.models", None)
    assert _error(pythae_loader.load, ModelSource(str(tmp_path))) == (
        "reading pythae folders needs pythae: pip install rcert[pythae]")


def test_a_hostile_pythae_model_pt_never_runs_code(pythae, tmp_path):
    _saved(pythae, tmp_path / "m")
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)},
               tmp_path / "m" / "model.pt")
    assert "never unpickles code" in _error(pythae_loader.load, ModelSource(str(tmp_path / "m")))
    assert not marker.exists()


def _custom_encoder(pythae) -> torch.nn.Module:
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseEncoder

    class TwoHeaded(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(64, 6)

        def forward(self, x):
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=h[:, :3], log_covariance=h[:, 3:])

    return TwoHeaded()


def test_a_pickled_network_is_refused_without_trust_and_never_unpickled(pythae, tmp_path):
    _saved(pythae, tmp_path / "m", encoder=_custom_encoder(pythae))
    marker = tmp_path / "pwned"
    (tmp_path / "m" / "encoder.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    message = _error(pythae_loader.load, ModelSource(str(tmp_path / "m")))
    assert message == (f"{tmp_path / 'm' / 'encoder.pkl'} is a pickled network: unpickling "
                       "runs code from the folder; pass --trust-pickles only if you trust it")
    assert not marker.exists()
    # The payload is live: trusting the folder runs it, and what it gives is no network.
    trusted = ModelSource(str(tmp_path / "m"), trust_pickles=True)
    assert "unpickles to a NoneType, not a network" in _error(pythae_loader.load, trusted)
    assert marker.exists()


def test_a_trusted_folder_with_custom_networks_loads(pythae, tmp_path):
    reference = _saved(pythae, tmp_path / "m", encoder=_custom_encoder(pythae))
    model = pythae_loader.load(ModelSource(str(tmp_path / "m"), trust_pickles=True), None)
    x = _rand(3, 1, 8, 8)
    out = reference.encoder(x)
    mu, sigma = model.encode(x)
    assert torch.equal(mu, out.embedding)
    torch.testing.assert_close(sigma, torch.exp(0.5 * out.log_covariance))
    assert model.meta["unpickled"] == ["encoder"] and model.data_range == (0.0, 1.0)


def test_a_custom_decoder_leaves_the_data_range_to_the_user(pythae, tmp_path):
    from pythae.models.nn.default_architectures import Decoder_AE_MLP

    config = pythae.VAEConfig(input_dim=(1, 8, 8), latent_dim=3)
    _saved(pythae, tmp_path / "m", decoder=Decoder_AE_MLP(config))
    model = pythae_loader.load(ModelSource(str(tmp_path / "m"), trust_pickles=True), None)
    assert model.data_range is None and model.meta["data_range"] is None
    given = ModelSource(str(tmp_path / "m"), trust_pickles=True, data_range=(0, 1))
    assert pythae_loader.load(given, None).data_range == (0.0, 1.0)


# ---------------------------------------------------------------- PyTorch-VAE


class _Tensors:
    """A state dict written key by key, seeded; batch norms get non-trivial statistics."""

    def __init__(self, seed: int = 0) -> None:
        self.state: dict[str, torch.Tensor] = {}
        self.gen = torch.Generator().manual_seed(seed)

    def rand(self, *shape: int, scale: float = 0.3) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=self.gen)

    def layer(self, name: str, weight: tuple[int, ...], bias: int) -> None:
        self.state[f"{name}.weight"] = self.rand(*weight)
        self.state[f"{name}.bias"] = self.rand(bias)

    def batch_norm(self, name: str, n: int) -> None:
        self.state.update({
            f"{name}.weight": 1 + self.rand(n, scale=0.1), f"{name}.bias": self.rand(n),
            f"{name}.running_mean": self.rand(n), f"{name}.running_var": 1 + self.rand(n).abs(),
            f"{name}.num_batches_tracked": torch.tensor(7)})


def _vanilla_state(in_channels: int, latent: int, hidden: list[int]) -> dict:
    """The state dict of PyTorch-VAE's VanillaVAE (models/vanilla_vae.py), key by key."""
    t = _Tensors()
    widths = [in_channels, *hidden]
    for i in range(len(hidden)):
        t.layer(f"encoder.{i}.0", (widths[i + 1], widths[i], 3, 3), widths[i + 1])
        t.batch_norm(f"encoder.{i}.1", widths[i + 1])
    flat = hidden[-1] * 4
    t.layer("fc_mu", (latent, flat), latent)
    t.layer("fc_var", (latent, flat), latent)
    t.layer("decoder_input", (flat, latent), flat)
    back = hidden[::-1]
    for i in range(len(hidden) - 1):
        t.layer(f"decoder.{i}.0", (back[i], back[i + 1], 3, 3), back[i + 1])
        t.batch_norm(f"decoder.{i}.1", back[i + 1])
    t.layer("final_layer.0", (back[-1], back[-1], 3, 3), back[-1])
    t.batch_norm("final_layer.1", back[-1])
    t.layer("final_layer.3", (3, back[-1], 3, 3), 3)
    return t.state


def _bn(h: torch.Tensor, s: dict, name: str) -> torch.Tensor:
    return F.batch_norm(h, s[f"{name}.running_mean"], s[f"{name}.running_var"],
                        s[f"{name}.weight"], s[f"{name}.bias"], training=False)


def _vanilla_reference(s: dict, x: torch.Tensor, z: torch.Tensor, hidden: list[int]):
    """(mu, log_var, decoder output) of VanillaVAE in eval mode, from the state dict."""
    h = x
    for i in range(len(hidden)):
        h = F.conv2d(h, s[f"encoder.{i}.0.weight"], s[f"encoder.{i}.0.bias"], 2, 1)
        h = F.leaky_relu(_bn(h, s, f"encoder.{i}.1"))
    h = h.flatten(1)
    mu = F.linear(h, s["fc_mu.weight"], s["fc_mu.bias"])
    log_var = F.linear(h, s["fc_var.weight"], s["fc_var.bias"])
    g = F.linear(z, s["decoder_input.weight"], s["decoder_input.bias"]).view(-1, hidden[-1], 2, 2)
    for name in [f"decoder.{i}" for i in range(len(hidden) - 1)] + ["final_layer"]:
        g = F.conv_transpose2d(g, s[f"{name}.0.weight"], s[f"{name}.0.bias"], 2, 1, 1)
        g = F.leaky_relu(_bn(g, s, f"{name}.1"))
    g = torch.tanh(F.conv2d(g, s["final_layer.3.weight"], s["final_layer.3.bias"], padding=1))
    return mu, log_var, g


def _lightning(state: dict, **extra) -> dict:
    """What VAEXperiment's Lightning checkpoint holds: the VAE is its ``self.model``."""
    return {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 3,
            "global_step": 120, "pytorch-lightning_version": "1.5.6", **extra}


HIDDEN = [4, 8, 16]


def _pytorch_vae_file(tmp_path: Path, **extra) -> tuple[Path, dict]:
    state = _vanilla_state(3, 5, HIDDEN)
    path = tmp_path / "last.ckpt"
    torch.save(_lightning(state, **extra), path)
    return path, state


def test_a_lightning_checkpoint_gives_vanilla_vaes_outputs(tmp_path):
    path, state = _pytorch_vae_file(tmp_path)
    obj = read_torch_file(path)
    assert pytorch_vae.detect(path, obj)
    model = pytorch_vae.load(ModelSource(str(path)), obj)
    x, z = _rand(4, 3, 16, 16), torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    mu_ref, log_var, g_ref = _vanilla_reference(state, x, z, HIDDEN)
    mu, sigma = model.encode(x)
    torch.testing.assert_close(mu, mu_ref)
    torch.testing.assert_close(sigma, torch.exp(0.5 * log_var))
    torch.testing.assert_close(model.decode(z), g_ref)
    assert not model.training and model.input_shape == (3, 16, 16)
    assert model.meta.keys() >= META_KEYS | {"model", "architecture", "lightning_version"}
    assert model.meta["architecture"] == {"in_channels": 3, "latent_dim": 5,
                                          "hidden_dims": HIDDEN, "out_channels": 3}
    assert model.meta["sigma"] == "logvar" and model.meta["format"] == "pytorch-vae"


@pytest.mark.parametrize(("version", "expected"), [
    ("1.5.6", (0.0, 1.0)), ("2.1.0", (0.0, 1.0)), ("0.7.1", (-1.0, 1.0)), (None, None)])
def test_the_data_range_follows_the_repositorys_lightning_era(tmp_path, version, expected):
    obj = _lightning(_vanilla_state(3, 5, HIDDEN), **{"pytorch-lightning_version": version})
    if version is None:
        obj = obj["state_dict"]
    model = pytorch_vae.load(ModelSource(str(tmp_path / "x.ckpt")), obj)
    assert model.data_range == expected
    given = pytorch_vae.load(ModelSource(str(tmp_path / "x.ckpt"), data_range=(0, 255)), obj)
    assert given.data_range == (0.0, 255.0)


def test_hyper_parameters_are_checked_against_the_weights(tmp_path):
    params = {"name": "BetaVAE", "in_channels": 3, "latent_dim": 5, "hidden_dims": HIDDEN}
    path, _ = _pytorch_vae_file(tmp_path, hyper_parameters={"model_params": params})
    assert pytorch_vae.load(ModelSource(str(path)), None).meta["model"] == "BetaVAE"
    wrong = _lightning(_vanilla_state(3, 5, HIDDEN),
                       hyper_parameters={"model_params": {**params, "latent_dim": 7}})
    message = _error(pytorch_vae.load, ModelSource(str(path)), wrong)
    assert "hyper-parameter latent_dim=7 but weights for latent_dim=5" in message
    # A tensor saved as a hyper-parameter has no truth value: it disagrees, on one line.
    tensor = _lightning(_vanilla_state(3, 5, HIDDEN), hyper_parameters={
        "model_params": {**params, "latent_dim": torch.tensor([5, 5])}})
    message = _error(pytorch_vae.load, ModelSource(str(path)), tensor)
    assert "hyper-parameter latent_dim=tensor([5, 5]) but weights for latent_dim=5" in message


def test_other_pytorch_vae_models_are_refused_with_the_factory_way(tmp_path):
    state = _vanilla_state(3, 5, HIDDEN)
    vamp = {**state, "embed_pseudo.0.weight": torch.zeros(3, 4)}
    message = _error(pytorch_vae.load, ModelSource(str(tmp_path / "v.ckpt")), _lightning(vamp))
    assert "unexpected keys embed_pseudo.0.weight" in message
    assert "--factory models:<Class>" in message and "--sigma logvar" in message
    named = _lightning(state, hyper_parameters={"name": "BetaTCVAE", "latent_dim": 5})
    message = _error(pytorch_vae.load, ModelSource(str(tmp_path / "v.ckpt")), named)
    assert "is a PyTorch-VAE BetaTCVAE, not a VanillaVAE" in message and "--factory" in message


def test_mismatching_pytorch_vae_shapes_are_named(tmp_path):
    state = _vanilla_state(3, 5, HIDDEN)
    state["fc_var.weight"] = torch.zeros(6, 64)
    message = _error(pytorch_vae.load, ModelSource(str(tmp_path / "v.ckpt")), _lightning(state))
    assert "shapes differ for fc_var.weight (6, 64) != (5, 64)" in message


def test_pytorch_vae_detection_needs_its_layout(tmp_path):
    state = _vanilla_state(3, 5, HIDDEN)
    assert pytorch_vae.detect(tmp_path, state)
    assert not pytorch_vae.detect(tmp_path, {k: v for k, v in state.items()
                                             if not k.startswith("final_layer")})
    assert not pytorch_vae.detect(tmp_path, {"state_dict": {"w": torch.zeros(1)}})
    assert not pytorch_vae.detect(tmp_path, None)


def test_a_hostile_lightning_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({**_lightning(_vanilla_state(3, 5, HIDDEN)), "callbacks": _Payload(marker)},
               tmp_path / "last.ckpt")
    message = _error(pytorch_vae.load, ModelSource(str(tmp_path / "last.ckpt")))
    assert "a pickled " in message and "mkdir" in message and not marker.exists()


ATTRIBUTE_DICT = "pytorch_lightning.utilities.parsing.AttributeDict"


def _fake_lightning(monkeypatch) -> type:
    """Lightning 1.x's AttributeDict under its real name, for writing a file only."""
    cls = type("AttributeDict", (dict,), {"__module__": "pytorch_lightning.utilities.parsing"})
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", cls.__module__):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[cls.__module__].AttributeDict = cls
    return cls


def test_lightning_attribute_dicts_read_as_plain_dicts_with_a_dict_stand_in(tmp_path,
                                                                            monkeypatch):
    with monkeypatch.context() as patch:
        attribute_dict = _fake_lightning(patch)
        params = attribute_dict(model_params=attribute_dict(name="VanillaVAE", latent_dim=5))
        torch.save(_lightning(_vanilla_state(3, 5, HIDDEN), hyper_parameters=params),
                   tmp_path / "last.ckpt")
    assert "pytorch_lightning" not in sys.modules
    # weights_only sets items on exact dicts only, so the stand-in is dict itself.
    with torch.serialization.safe_globals([*SAFE_GLOBALS, (dict, ATTRIBUTE_DICT)]):
        obj = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert type(obj["hyper_parameters"]["model_params"]) is dict
    assert pytorch_vae.load(ModelSource(str(tmp_path / "last.ckpt")), obj).meta["model"] == (
        "VanillaVAE")
    assert "pytorch_lightning" not in sys.modules


def test_the_dict_stand_in_builds_no_object_state(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        attribute_dict = _fake_lightning(patch)
        hostile = attribute_dict(a=1)
        hostile.__dict__["x"] = "object state, which unpickling sets through BUILD"
        torch.save({"hyper_parameters": hostile}, tmp_path / "h.ckpt")
    with torch.serialization.safe_globals([(dict, ATTRIBUTE_DICT)]), pytest.raises(
            AttributeError):
        torch.load(tmp_path / "h.ckpt", weights_only=True)


# ---------------------------------------------------------------- beta-TCVAE

#: (stride, padding) of vae_quant.py's ConvEncoder conv1..conv5 and ConvDecoder conv1..conv5.
ENCODER_STEPS = [(2, 1)] * 4 + [(1, 0)]
DECODER_STEPS = [(1, 0), (1, 0), (2, 1), (2, 1), (2, 1)]


@functools.cache  # the MLP's 13M weights take a second to draw; no test changes them
def _btc_state(z: int, conv: bool) -> dict:
    """The state dict of vae_quant.py's VAE(z_dim=z, conv=conv), key by key."""
    t = _Tensors(seed=2)
    if conv:
        channels = [1, 32, 32, 64, 64, 512]
        for i in range(5):
            t.layer(f"encoder.conv{i + 1}", (channels[i + 1], channels[i], 4, 4), channels[i + 1])
            t.batch_norm(f"encoder.bn{i + 1}", channels[i + 1])
        t.layer("encoder.conv_z", (2 * z, 512, 1, 1), 2 * z)
        channels = [z, 512, 64, 64, 32, 32]
        for i, k in enumerate([1, 4, 4, 4, 4]):
            t.layer(f"decoder.conv{i + 1}", (channels[i], channels[i + 1], k, k), channels[i + 1])
            t.batch_norm(f"decoder.bn{i + 1}", channels[i + 1])
        t.layer("decoder.conv_final", (32, 1, 4, 4), 1)
    else:
        t.layer("encoder.fc1", (1200, 4096), 1200)
        t.layer("encoder.fc2", (1200, 1200), 1200)
        t.layer("encoder.fc3", (2 * z, 1200), 2 * z)
        t.layer("encoder.conv_z", (2 * z, 64, 4, 4), 2 * z)  # unused by the repository too
        for i, (n_in, n_out) in enumerate([(z, 1200), (1200, 1200), (1200, 1200), (1200, 4096)]):
            t.layer(f"decoder.net.{2 * i}", (n_out, n_in), n_out)
    t.state["prior_params"] = torch.zeros(z, 2)
    return t.state


def _btc_reference(s: dict, x: torch.Tensor, z: torch.Tensor, conv: bool):
    """(raw encoder output (batch, 2 z), decoder logits (batch, 1, 64, 64)) in eval mode."""
    if conv:
        h = x
        for i, (stride, pad) in enumerate(ENCODER_STEPS, 1):
            h = F.conv2d(h, s[f"encoder.conv{i}.weight"], s[f"encoder.conv{i}.bias"], stride, pad)
            h = F.relu(_bn(h, s, f"encoder.bn{i}"))
        raw = F.conv2d(h, s["encoder.conv_z.weight"], s["encoder.conv_z.bias"]).flatten(1)
        g = z[:, :, None, None]
        for i, (stride, pad) in enumerate(DECODER_STEPS, 1):
            g = F.conv_transpose2d(g, s[f"decoder.conv{i}.weight"], s[f"decoder.conv{i}.bias"],
                                   stride, pad)
            g = F.relu(_bn(g, s, f"decoder.bn{i}"))
        logits = F.conv_transpose2d(g, s["decoder.conv_final.weight"],
                                    s["decoder.conv_final.bias"], 2, 1)
        return raw, logits
    h = x.reshape(x.shape[0], 4096)
    for name in ("fc1", "fc2"):
        h = F.relu(F.linear(h, s[f"encoder.{name}.weight"], s[f"encoder.{name}.bias"]))
    raw = F.linear(h, s["encoder.fc3.weight"], s["encoder.fc3.bias"])
    g = z
    for i in range(4):
        g = F.linear(g, s[f"decoder.net.{2 * i}.weight"], s[f"decoder.net.{2 * i}.bias"])
        g = torch.tanh(g) if i < 3 else g
    return raw, g.reshape(-1, 1, 64, 64)


def _btc_file(tmp_path: Path, state: dict, **args) -> Path:
    """A checkpt-0000.pth as vae_quant.py saves it, with ``args`` overriding its defaults."""
    args = argparse.Namespace(**{"latent_dim": 4, "conv": False, "dist": "normal", "beta": 6.0,
                                 "tcvae": True, "dataset": "shapes", **args})
    path = tmp_path / "checkpt-0000.pth"
    torch.save({"state_dict": state, "args": args}, path)
    return path


@pytest.mark.parametrize("conv", [False, True])
def test_a_beta_tcvae_checkpoint_gives_mu_and_log_sigma_pairs(tmp_path, conv):
    path = _btc_file(tmp_path, _btc_state(4, conv), conv=conv)
    obj = read_torch_file(path)
    assert beta_tcvae.detect(path, obj) and not pytorch_vae.detect(path, obj)
    model = beta_tcvae.load(ModelSource(str(path)), obj)
    assert set(beta_tcvae.build(obj["args"]).state_dict()) == set(obj["state_dict"])
    x = (_rand(3, 1, 64, 64) > 0.5).float()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(4))
    raw, logits = _btc_reference(obj["state_dict"], x, z, conv)
    mu, sigma = model.encode(x)
    torch.testing.assert_close(mu, raw[:, 0::2])  # pairs (mu_j, log sigma_j), interleaved
    torch.testing.assert_close(sigma, torch.exp(raw[:, 1::2]))
    torch.testing.assert_close(model.decode(z), torch.sigmoid(logits))
    assert not model.training
    assert model.input_shape == (1, 64, 64) and model.data_range == (0.0, 1.0)
    assert model.meta.keys() >= META_KEYS | {"architecture", "latent_dim", "dist", "args"}
    assert model.meta["sigma"] == "logsigma" and model.meta["latent_dim"] == 4
    assert model.meta["architecture"] == ("conv" if conv else "mlp")
    assert model.meta["args"]["beta"] == 6.0 and json.loads(json.dumps(model.meta))


def test_a_laplace_encoder_is_refused(tmp_path):
    path = _btc_file(tmp_path, _btc_state(4, False), dist="laplace")
    message = _error(beta_tcvae.load, ModelSource(str(path)))
    assert "trained with -dist laplace: its encoder is a Laplace distribution" in message


def test_a_flow_prior_is_set_aside(tmp_path):
    state = {**_btc_state(4, False), "prior_dist.scale": torch.zeros(32, 4),
             "prior_dist.weight": torch.zeros(32, 4), "prior_dist.bias": torch.zeros(32, 4)}
    path = _btc_file(tmp_path, state, dist="flow")
    assert beta_tcvae.load(ModelSource(str(path)), None).meta["dist"] == "flow"
    normal = _btc_file(tmp_path, state)
    assert "unexpected keys prior_dist.bias" in _error(beta_tcvae.load, ModelSource(str(normal)))


@pytest.mark.parametrize(("args", "expected"), [
    ({"latent_dim": 6}, "shapes differ for prior_params (4, 2) != (6, 2), encoder.fc3.weight"),
    ({"conv": True}, "missing keys decoder.bn1.bias"),
    ({"latent_dim": 10**12}, "does not fit the architecture"),
    ({"latent_dim": 0}, "args.latent_dim=0"),
    ({"conv": "yes"}, "args.conv='yes'"),
    ({"dist": "cauchy"}, "args.dist='cauchy'"),
])
def test_beta_tcvae_args_that_do_not_fit_are_named(tmp_path, args, expected):
    path = _btc_file(tmp_path, _btc_state(4, False), **args)
    assert expected in _error(beta_tcvae.load, ModelSource(str(path)))


def test_old_checkpoints_without_conv_are_mlps(tmp_path):
    path = _btc_file(tmp_path, _btc_state(4, False))
    obj = read_torch_file(path)
    del obj["args"].conv
    assert beta_tcvae.load(ModelSource(str(path)), obj).meta["architecture"] == "mlp"


def test_beta_tcvae_detection_needs_args_with_a_latent_size(tmp_path):
    state = _btc_state(2, False)
    assert not beta_tcvae.detect(tmp_path, {"state_dict": state})
    assert not beta_tcvae.detect(tmp_path, {"state_dict": state, "args": {"latent_dim": 2}})
    assert not beta_tcvae.detect(tmp_path, {"state_dict": state,
                                            "args": argparse.Namespace(beta=1)})
    assert not beta_tcvae.detect(tmp_path, None)


def test_a_hostile_beta_tcvae_args_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _btc_state(2, False),
                "args": argparse.Namespace(latent_dim=2, conv=False, hook=_Payload(marker))},
               tmp_path / "checkpt-0000.pth")
    message = _error(beta_tcvae.load, ModelSource(str(tmp_path / "checkpt-0000.pth")))
    assert "never unpickles code" in message and not marker.exists()


@pytest.mark.parametrize("name", ["pythae", "pytorch-vae", "beta-tcvae"])
def test_every_library_is_registered(name):
    module = loader(name)
    assert callable(module.detect) and callable(module.load)


# ---------------------------------------------------------------- hostile files, every library


def _refusal(path: Path, name: str) -> str:
    return (rf"^model {re.escape(str(path))}: tensor {re.escape(name)} holds NaN; the "
            "checkpoint is damaged or training diverged$")


def _poisoned(state: dict, name: str) -> dict:
    state = {key: tensor.clone() for key, tensor in state.items()}
    state[name].view(-1)[0] = math.nan
    return state


def test_nonfinite_weights_of_library_checkpoints_are_refused(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save(_lightning(_poisoned(_vanilla_state(3, 5, HIDDEN), "fc_var.weight")), path)
    with pytest.raises(RcertError, match=_refusal(path, "fc_var.weight")):
        load_model(ModelSource(str(path)))
    state = _poisoned(_btc_state(4, True), "decoder.conv_final.bias")
    path = _btc_file(tmp_path, state, conv=True)
    with pytest.raises(RcertError, match=_refusal(path, "decoder.conv_final.bias")):
        load_model(ModelSource(str(path)))


def test_nonfinite_weights_of_a_pythae_folder_are_refused(pythae, tmp_path):
    _saved(pythae, tmp_path / "m")
    saved = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    name = next(k for k in saved["model_state_dict"] if k.startswith("decoder."))
    torch.save({"model_state_dict": _poisoned(saved["model_state_dict"], name)},
               tmp_path / "m" / "model.pt")
    with pytest.raises(RcertError, match=_refusal(tmp_path / "m", name)):
        load_model(ModelSource(str(tmp_path / "m")))




@pytest.mark.parametrize("what", list(SPECIAL_KINDS))
@pytest.mark.parametrize(("file", "words"), [("model_config.json", "pythae model config"),
                                             ("model.pt", "model")])
def test_a_pythae_folder_file_that_is_no_regular_file_says_what_it_is(pythae, tmp_path, file,
                                                                      words, what):
    _saved(pythae, tmp_path / "m")
    make_special(tmp_path / "m" / file, what)
    with pytest.raises(RcertError, match=rf"^{words} {re.escape(str(tmp_path / 'm' / file))} "
                                         rf"is {SPECIAL_KINDS[what]}, not a regular file"):
        load_model(ModelSource(str(tmp_path / "m")))


@pytest.mark.parametrize("file", ["encoder.pkl", "environment.json"])
def test_a_trusted_pickle_that_is_no_regular_file_is_never_opened(pythae, tmp_path, file):
    _saved(pythae, tmp_path / "m", encoder=_custom_encoder(pythae))
    make_special(tmp_path / "m" / file, "pipe")
    with pytest.raises(RcertError, match=rf"^pythae file .*{file} is a named pipe"):
        load_model(ModelSource(str(tmp_path / "m"), trust_pickles=True))
