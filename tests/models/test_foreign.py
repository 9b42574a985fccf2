import hashlib
import json
import math
import pickle
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch
from conftest import SPECIAL_KINDS, assert_one_error_line, make_special
from torch import nn

from rcert.errors import RcertError
from rcert.models import checkpoint, foreign
from rcert.models.architectures import build_model
from rcert.models.factory import call_factory
from rcert.models.foreign import describe, load_model
from rcert.source import ModelSource

MODELS = '''
import torch
from torch import nn


class TinyVAE(nn.Module):
    """encoder -> (mu, log-variance); decoder -> probabilities; no encode/decode methods."""

    def __init__(self, latent_dim):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 5), nn.Tanh())
        self.mu = nn.Linear(5, latent_dim)
        self.logvar = nn.Linear(5, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 6), nn.Sigmoid())

    def encoder(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)


def build_vae(latent_dim):
    return TinyVAE(latent_dim)


def build_declared(latent_dim, kind="logvar"):
    module = TinyVAE(latent_dim)
    module.sigma_kind = kind
    return module


def build_rcert(latent_dim):
    from rcert.models.architectures import build_model
    return build_model("mlp", input_shape=[6], latent_dim=latent_dim, hidden=[5])
'''
FACTORY = "mypkg.models:build_vae"


def _x(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 6, generator=torch.Generator().manual_seed(1))


def _seeded(module: nn.Module) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
        torch.manual_seed(0)
        for p in module.parameters():
            nn.init.normal_(p, std=0.5)
    return module.eval()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error(source: ModelSource, **kwargs) -> str:
    with pytest.raises(RcertError) as err:
        load_model(source, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture
def project(make_project) -> Path:
    """The working directory, a project folder whose ``mypkg/models.py`` is :data:`MODELS`."""
    return make_project(MODELS)


@pytest.fixture
def reference(project) -> nn.Module:
    """The factory's module with seeded weights: what a user trained and saved."""
    return _seeded(call_factory(FACTORY, {"latent_dim": 2}))


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


CONTAINERS = {
    "plain.pt": (lambda sd: sd, "torch.save"),
    "train.pth": (lambda sd: {"model_state_dict": sd, "epoch": 3}, "torch.save"),
    "lightning.ckpt": (lambda sd: {"state_dict": _prefixed(sd, "model."), "epoch": 1,
                                   "pytorch-lightning_version": "2.1.0"}, "lightning"),
    "parallel.bin": (lambda sd: _prefixed(sd, "module."), "torch.save"),
}


@pytest.mark.parametrize("name", CONTAINERS)
def test_a_state_dict_and_a_factory_give_the_modules_outputs(project, reference, name):
    make, container = CONTAINERS[name]
    path = project / name
    torch.save(make(reference.state_dict()), path)
    source = ModelSource(str(path), factory=FACTORY, factory_args={"latent_dim": 2},
                         sigma="logvar", data_range=(0, 1), input_shape=(6,))
    model = load_model(source)
    x = _x()
    mu, sigma = model.encode(x)
    ref_mu, ref_logvar = reference.encoder(x)
    torch.testing.assert_close(mu, ref_mu)
    torch.testing.assert_close(sigma, torch.exp(0.5 * ref_logvar))
    torch.testing.assert_close(model.decode(mu), reference.decoder(mu))
    assert not model.training and model.data_range == (0.0, 1.0) and model.input_shape == (6,)
    assert model.meta == {
        "format": container, "library": None, "sigma": "logvar", "factory": FACTORY,
        "factory_args": {"latent_dim": 2}, "data_range": [0.0, 1.0], "input_shape": [6],
        "sha256": _sha256(path), "foreign": True}
    described = describe(model, source)
    assert described == {"path": str(path), **model.meta}
    assert json.loads(json.dumps(described)) == described


def test_a_factory_without_a_sigma_convention_is_refused(project, reference):
    torch.save(reference.state_dict(), project / "w.pt")
    message = _error(ModelSource("w.pt", factory=FACTORY, factory_args={"latent_dim": 2}))
    assert message.endswith("say what the encoder's second output is: "
                            "--sigma sigma|var|logvar|logsigma")


def test_a_declared_sigma_kind_needs_no_option(project, reference):
    torch.save(reference.state_dict(), project / "w.pt")
    source = ModelSource("w.pt", factory="mypkg.models:build_declared",
                         factory_args={"latent_dim": 2})
    model = load_model(source)
    assert model.meta["sigma"] == "logvar"
    torch.testing.assert_close(model.encode(_x())[1], torch.exp(0.5 * reference.encoder(_x())[1]))
    assert "declares sigma_kind 'logvar' but --sigma var was given; drop --sigma" in _error(
        ModelSource("w.pt", factory="mypkg.models:build_declared", sigma="var",
                    factory_args={"latent_dim": 2}))
    assert "sigma_kind 'std', not one of" in _error(
        ModelSource("w.pt", factory="mypkg.models:build_declared",
                    factory_args={"latent_dim": 2, "kind": "std"}))


def test_a_factory_returning_an_rcert_vae_is_not_wrapped(project):
    vae = _seeded(build_model("mlp", input_shape=[6], latent_dim=2, hidden=[5]))
    torch.save(vae.state_dict(), project / "vae.pt")
    source = ModelSource("vae.pt", factory="mypkg.models:build_rcert",
                         factory_args={"latent_dim": 2})
    model = load_model(source)
    assert type(model) is type(vae) and model.meta["sigma"] == "sigma"
    torch.testing.assert_close(model.encode(_x()), vae.encode(_x()))
    assert "drop --sigma logvar" in _error(
        ModelSource("vae.pt", factory="mypkg.models:build_rcert", sigma="logvar",
                    factory_args={"latent_dim": 2}))
    assert "--data-range -1.0,1.0 disagrees with the rcert VAE read from vae.pt (0.0,1.0)" in (
        _error(ModelSource("vae.pt", factory="mypkg.models:build_rcert", data_range=(-1, 1),
                           factory_args={"latent_dim": 2})))


ARCH_TOML = 'arch = "mlp"\ninput_shape = [1, 2, 3]\nlatent_dim = 2\nhidden = [5]\n'


@pytest.mark.parametrize("suffix", ["json", "toml"])
def test_a_state_dict_and_an_architecture_description(tmp_path, suffix):
    vae = _seeded(build_model("mlp", input_shape=[1, 2, 3], latent_dim=2, hidden=[5]))
    torch.save({"state_dict": _prefixed(vae.state_dict(), "model.")}, tmp_path / "w.ckpt")
    arch = tmp_path / f"arch.{suffix}"
    arch.write_text(json.dumps(vae.config()) if suffix == "json" else ARCH_TOML)
    model = load_model(ModelSource(str(tmp_path / "w.ckpt"), arch=str(arch)))
    x = _x().view(3, 1, 2, 3)
    torch.testing.assert_close(model.encode(x), vae.encode(x))
    torch.testing.assert_close(model.decode(vae.encode(x)[0]), vae.decode(vae.encode(x)[0]))
    assert model.meta["format"] == "lightning" and model.meta["architecture"] == vae.config()
    assert model.meta["arch"] == str(arch) and model.meta["input_shape"] == [1, 2, 3]
    path = str(tmp_path / "w.ckpt")
    assert "drop --sigma var" in _error(ModelSource(path, arch=str(arch), sigma="var"))
    assert "--input-shape 6 disagrees with the rcert VAE read from" in _error(
        ModelSource(path, arch=str(arch), input_shape=(6,)))
    assert load_model(ModelSource(path, arch=str(arch), data_range=(0, 1))).data_range == (0, 1)


def test_missing_unexpected_and_misshapen_weights_are_named(project, reference):
    state = reference.state_dict()
    state["extra.weight"] = state.pop("mu.bias")
    torch.save(state, project / "renamed.pt")
    message = _error(ModelSource("renamed.pt", factory=FACTORY, sigma="logvar",
                                 factory_args={"latent_dim": 2}))
    assert "missing keys mu.bias, unexpected keys extra.weight" in message
    torch.save(reference.state_dict(), project / "w.pt")
    message = _error(ModelSource("w.pt", factory=FACTORY, sigma="logvar",
                                 factory_args={"latent_dim": 3}))
    assert "shapes differ for mu.weight (2, 5) != (3, 5)" in message


class Payload:
    """Unpickling this would create ``marker``: the attack a weights-only read must stop."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


HOSTILE = {
    "evil.pt": lambda p, m: torch.save({"w": torch.zeros(2), "x": Payload(m)}, p),
    "evil.ckpt": lambda p, m: torch.save({"state_dict": {"model.w": torch.zeros(2)},
                                          "pytorch-lightning_version": "2.1.0",
                                          "callbacks": Payload(m)}, p),
    "legacy.pt": lambda p, m: torch.save(Payload(m), p, _use_new_zipfile_serialization=False),
    "raw.pkl": lambda p, m: p.write_bytes(pickle.dumps(Payload(m))),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on raw.pkl
@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("how", [{}, {"factory": FACTORY, "sigma": "logvar"}])
def test_hostile_files_never_execute_code(project, name, how):
    marker = project / "pwned"
    HOSTILE[name](project / name, marker)
    assert not marker.exists()
    message = _error(ModelSource(name, **how))
    assert not marker.exists()
    assert "never unpickles" in message or "not a readable torch.save file" in message


def test_a_whole_pickled_module_is_refused_with_the_fix(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pt")
    message = _error(ModelSource(str(tmp_path / "whole.pt")))
    assert "holds a pickled torch.nn.modules.linear.Linear" in message
    assert "torch.save(model.state_dict(), path)" in message


def test_a_native_checkpoint_loads_as_checkpoint_load_does(tmp_path):
    vae = _seeded(build_model("mlp", input_shape=[6], latent_dim=2, hidden=[5]))
    path = tmp_path / "m.safetensors"
    checkpoint.save(vae, path, data="digits:train", recommended_r=0.5)
    expected = checkpoint.load(path)
    source = ModelSource(str(path))
    model = load_model(source)
    assert model.meta == {**expected.meta, "format": "rcert", "foreign": False}
    for (name, a), (_, b) in zip(model.state_dict().items(), expected.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert describe(model, source) == {**checkpoint.describe(expected, path),
                                       "format": "rcert", "foreign": False}
    message = _error(ModelSource(str(path), sigma="logvar", data_range=(0, 1)))
    assert message == (f"{path} is an rcert checkpoint: it describes itself; drop --sigma "
                       "--data-range")


def test_an_unrecognised_state_dict_says_how_to_build_the_model(tmp_path):
    state = {"enc.weight": torch.zeros(2, 3), "enc.bias": torch.zeros(2),
             "dec.weight": torch.zeros(3, 2), "dec.bias": torch.zeros(3)}
    torch.save({"model_state_dict": state}, tmp_path / "w.pt")
    assert _error(ModelSource(str(tmp_path / "w.pt"))) == (
        f"{tmp_path / 'w.pt'} is a torch.save state dict with 4 tensors (e.g. keys enc.weight, "
        "enc.bias, dec.weight); say how to build the model: --arch FILE (an rcert "
        "architecture), --factory module:function (your code), or --library "
        "pythae|pytorch-vae|beta-tcvae")
    torch.save({"state_dict": _prefixed(state, "model.")}, tmp_path / "l.ckpt")
    assert "is a Lightning checkpoint with 4 tensors" in _error(
        ModelSource(str(tmp_path / "l.ckpt")))


def _fake_library(name: str, says_yes: bool, calls: list) -> SimpleNamespace:
    def load(source, obj):
        calls.append((name, source.path, None if obj is None else sorted(obj)))
        model = _seeded(build_model("mlp", input_shape=[6], latent_dim=2, hidden=[]))
        model.meta = {"format": name, "latent_dim": 2}
        return model

    return SimpleNamespace(detect=lambda path, obj: says_yes, load=load)


def test_the_first_library_that_detects_the_file_loads_it(tmp_path, monkeypatch):
    calls = []
    fakes = {"pythae": _fake_library("pythae", False, calls),
             "pytorch-vae": _fake_library("pytorch-vae", True, calls),
             "beta-tcvae": _fake_library("beta-tcvae", True, calls)}
    monkeypatch.setattr(foreign, "loader", fakes.__getitem__)
    path = tmp_path / "lib.pt"
    torch.save({"w": torch.zeros(1)}, path)
    model = load_model(ModelSource(str(path), data_range=(-1, 1)))
    assert calls == [("pytorch-vae", str(path), ["w"])]
    assert model.data_range == (-1.0, 1.0)
    assert model.meta == {"format": "pytorch-vae", "library": "pytorch-vae", "sigma": None,
                          "latent_dim": 2, "data_range": [-1.0, 1.0], "input_shape": [6],
                          "sha256": _sha256(path), "foreign": True}
    load_model(ModelSource(str(path), library="beta-tcvae"))
    assert calls[-1][0] == "beta-tcvae"


def test_a_pythae_folder_goes_to_the_pythae_loader(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(foreign, "loader",
                        {"pythae": _fake_library("pythae", False, calls)}.__getitem__)
    (tmp_path / "model_config.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"weights")
    model = load_model(ModelSource(str(tmp_path)))
    assert calls == [("pythae", str(tmp_path), None)]
    assert model.meta["format"] == "pythae" and model.meta["sha256"] == _sha256(
        tmp_path / "model.pt")
    assert "drop --arch (or pass the folder's model.pt" in _error(
        ModelSource(str(tmp_path), arch="a.json"))


def test_paths_that_are_neither_files_nor_model_folders(tmp_path):
    assert _error(ModelSource(str(tmp_path))).endswith(
        "so not a pythae model folder; rcert reads rcert checkpoints, torch.save and "
        "Lightning .ckpt files (with --arch, --factory or --library) and pythae model "
        "folders: pass one of those")
    assert "does not exist; check the model path" in _error(ModelSource(str(tmp_path / "no")))


def test_a_bad_device_is_one_line(project, reference):
    torch.save(reference.state_dict(), project / "w.pt")
    message = _error(ModelSource("w.pt", factory=FACTORY, sigma="logvar",
                                 factory_args={"latent_dim": 2}), device="nosuchdevice")
    assert message.startswith("cannot load w.pt onto device 'nosuchdevice': ")
    assert message.endswith("pick an available device, e.g. cpu")


@pytest.mark.parametrize("content,expected", [
    (b"", "is empty"),
    (bytes(range(256)) * 4, "not a model file rcert can read"),
    (b"PK\x03\x04" + bytes(60), "not a readable torch.save file"),
])
def test_corrupt_files_are_one_line(tmp_path, content, expected):
    (tmp_path / "bad.pt").write_bytes(content)
    assert expected in _error(ModelSource(str(tmp_path / "bad.pt")))


# --- paths that are no regular files, and damaged weights ------------------------------------




@pytest.mark.parametrize("what", ["pipe", "zero"])
def test_a_model_path_that_is_no_regular_file_says_what_it_is(tmp_path, run, what):
    path = make_special(tmp_path / what, what)
    with pytest.raises(RcertError, match=rf"^model {path} is {SPECIAL_KINDS[what]}, not a regular "
                                         "file; check the model path$"):
        load_model(ModelSource(str(path)))
    line = assert_one_error_line(*run("margin", "--model", "/dev/zero", "--quiet"))
    assert line == ("rcert: error: model /dev/zero is a character device, not a regular file; "
                    "check the model path")


@pytest.mark.parametrize("what", list(SPECIAL_KINDS))
def test_an_arch_that_is_no_regular_file_says_what_it_is(tmp_path, what):
    vae = build_model("mlp", input_shape=[6], latent_dim=2, hidden=[5])
    torch.save(vae.state_dict(), tmp_path / "w.pt")
    arch = make_special(tmp_path / what, what)
    kind = SPECIAL_KINDS[what]
    with pytest.raises(RcertError, match=rf"^architecture description {arch} is {kind}, "
                                         "not a regular file; check the path given to --arch$"):
        load_model(ModelSource(str(tmp_path / "w.pt"), arch=str(arch)))


def _poisoned(state: dict, name: str, value: float = math.nan) -> dict:
    """``state`` with one number of tensor ``name`` replaced by ``value``."""
    state = {key: tensor.clone() for key, tensor in state.items()}
    state[name].view(-1)[-1] = value
    return state


def _refusal(path: Path, name: str, word: str = "NaN", what: str = "model") -> str:
    return (rf"^{what} {path}: tensor {name} holds {word}; the checkpoint is damaged or "
            "training diverged$")


@pytest.mark.parametrize(("value", "word"), [(math.nan, "NaN"), (math.inf, "an infinite value")])
def test_nonfinite_weights_of_a_state_dict_with_an_arch_are_refused(tmp_path, value, word):
    vae = build_model("mlp", input_shape=[6], latent_dim=2, hidden=[5])
    name = next(k for k in vae.state_dict() if k.startswith("decoder") and k.endswith("weight"))
    torch.save(_poisoned(vae.state_dict(), name, value), tmp_path / "w.pt")
    (tmp_path / "arch.json").write_text(json.dumps(vae.config()))
    with pytest.raises(RcertError, match=_refusal(tmp_path / "w.pt", re.escape(name), word)):
        load_model(ModelSource(str(tmp_path / "w.pt"), arch=str(tmp_path / "arch.json")))


def test_nonfinite_weights_of_a_factory_model_are_named_as_in_the_file(project, reference):
    # The factory's module is wrapped; the tensor is named as the file names it.
    torch.save(_poisoned(reference.state_dict(), "decoder.0.weight"), project / "w.pt")
    with pytest.raises(RcertError, match=_refusal(Path("w.pt"), r"decoder\.0\.weight")):
        load_model(ModelSource("w.pt", factory=FACTORY, factory_args={"latent_dim": 2},
                               sigma="logvar"))


def test_nonfinite_weights_of_an_rcert_checkpoint_are_refused(tmp_path):
    vae = build_model("mlp", input_shape=[6], latent_dim=2, hidden=[5])
    vae.load_state_dict(_poisoned(vae.state_dict(), "mu_head.bias"))
    checkpoint.save(vae, tmp_path / "m.safetensors")
    with pytest.raises(RcertError, match=_refusal(tmp_path / "m.safetensors",
                                                  r"mu_head\.bias", what="checkpoint")):
        load_model(ModelSource(str(tmp_path / "m.safetensors")))


def test_plain_safetensors_weights_load_with_an_arch(tmp_path):
    vae = _seeded(build_model("mlp", input_shape=[6], latent_dim=2, hidden=[5]))
    safetensors.torch.save_file(vae.state_dict(), tmp_path / "w.safetensors")
    (tmp_path / "arch.json").write_text(json.dumps(vae.config()))
    path = str(tmp_path / "w.safetensors")
    model = load_model(ModelSource(path, arch=str(tmp_path / "arch.json")))
    torch.testing.assert_close(model.encode(_x()), vae.encode(_x()))
    assert model.meta["format"] == "safetensors"
    assert _error(ModelSource(path)).startswith(
        f"{path} is a safetensors file of weights with 10 tensors (e.g. keys ")


def test_a_damaged_safetensors_file_says_what_safetensors_found(tmp_path):
    # A header length past safetensors' own limit, and shapes the file does not hold.
    for name, raw in (("long", struct.pack("<Q", 2**40) + b'{"a": 1}'),
                      ("shape", _header_only({"w": {"dtype": "F32", "shape": [10**6, 10**6],
                                                     "data_offsets": [0, 4 * 10**12]}}))):
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(RcertError, match=rf"{name} is a damaged safetensors file "
                                             r"\(safetensors: .*\); check that it is complete"):
            load_model(ModelSource(str(tmp_path / name)))


def _header_only(table: dict) -> bytes:
    text = json.dumps(table).encode()
    return struct.pack("<Q", len(text)) + text + bytes(16)
