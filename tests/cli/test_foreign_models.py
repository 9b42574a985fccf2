"""Foreign models through the command line: each format gives the numbers the Python API
gives on the same module, glue mistakes stop the run unless allowed, hostile files never
run code, and ``rcert inspect`` reports what rcert sees."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_error_line, strict_json
from torch import nn

import rcert
from rcert.checks import MODEL_CHECKS
from rcert.data import load_data

R = 0.6
LIMIT = 6
COMMON = ("--data", "digits:test", "--limit", LIMIT, "--r", R, "--n-samples", 200,
          "--format", "json")

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn

    class LogVarVAE(nn.Module):
        """encode -> (mu, log-variance); decode -> probabilities (or logits when asked)."""

        def __init__(self, latent_dim, logits=False):
            super().__init__()
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())
            self.mu = nn.Linear(16, latent_dim)
            self.logvar = nn.Linear(16, latent_dim)
            self.dec = nn.Linear(latent_dim, 64)
            self.logits = logits

        def encode(self, x):
            h = self.enc(x)
            return self.mu(h), self.logvar(h) - 2.0

        def decode(self, z):
            out = self.dec(z).view(-1, 1, 8, 8) * 3.0
            return out if self.logits else torch.sigmoid(out)

    def build(latent_dim, logits=False):
        return LogVarVAE(latent_dim, logits)
''')


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project folder with a package holding the factory, and its weights."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "userpkg").mkdir()
    (folder / "userpkg" / "__init__.py").write_text("")
    (folder / "userpkg" / "vaes.py").write_text(FACTORY)
    return folder


def _factory_module(project: Path, **kwargs) -> nn.Module:
    import importlib
    import sys

    sys.path.insert(0, str(project))
    try:
        module = importlib.import_module("userpkg.vaes")
    finally:
        sys.path.remove(str(project))
    torch.manual_seed(0)
    return module.build(**kwargs).eval()


def _rows(out: str) -> list[dict]:
    return strict_json(out)["inputs"]


def _python_rows(model: nn.Module) -> list[dict]:
    x = load_data("digits:test").subset(LIMIT).x
    df = rcert.certify(model, x, r=R, n_samples=200)
    return json.loads(df.to_json(orient="records"))


def _assert_same(cli_rows: list[dict], api_rows: list[dict]) -> None:
    assert len(cli_rows) == len(api_rows) == LIMIT
    for got, want in zip(cli_rows, api_rows, strict=True):
        for key in ("p_hat", "r_min", "bound_certified", "jacobian_fro", "sigma_min"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key


def test_state_dict_with_factory_matches_the_python_api(project, run, monkeypatch):
    module = _factory_module(project, latent_dim=3)
    torch.save({"model_state_dict": module.state_dict(), "epoch": 7}, project / "w.pt")
    monkeypatch.chdir(project)
    code, out, err = run("margin", "--model", "w.pt", "--factory", "userpkg.vaes:build",
                         "--factory-arg", "latent_dim=3", "--sigma", "logvar",
                         "--data-range", "0,1", "--input-shape", "1,8,8", *COMMON)
    assert code == 0, err
    wrapped = rcert.wrap(module, sigma="logvar", input_shape=(1, 8, 8), data_range=(0, 1))
    _assert_same(_rows(out), _python_rows(wrapped))
    doc = strict_json(out)
    assert doc["model"]["format"] in ("torch.save", "lightning")
    assert doc["model"]["sigma"] == "logvar"
    assert "allow" not in doc["config"]


def test_lightning_checkpoint_with_an_architecture_file(tmp_path, run):
    torch.manual_seed(1)
    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 2, "pytorch-lightning_version": "2.1.0",
                "hyper_parameters": {"lr": 1e-3}}, tmp_path / "last.ckpt")
    (tmp_path / "arch.json").write_text(json.dumps(model.config()))
    code, out, err = run("margin", "--model", tmp_path / "last.ckpt", "--arch",
                         tmp_path / "arch.json", *COMMON)
    assert code == 0, err
    _assert_same(_rows(out), _python_rows(model.eval()))


def test_a_glue_mistake_stops_the_run_unless_allowed(project, run, monkeypatch):
    module = _factory_module(project, latent_dim=3, logits=True)
    torch.save(module.state_dict(), project / "logits.pt")
    monkeypatch.chdir(project)
    argv = ("margin", "--model", "logits.pt", "--factory", "userpkg.vaes:build",
            "--factory-arg", "latent_dim=3", "--factory-arg", "logits=true", "--sigma",
            "logvar", "--data-range", "0,1", *COMMON)
    line = assert_one_error_line(*run(*argv))
    assert "decoder-range" in line and "--allow decoder-range" in line
    code, out, err = run(*argv, "--allow", "decoder-range")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["config"]["allow"] == ["decoder-range"]
    assert [w["code"] for w in doc["warnings"]] == ["decoder-range"]
    assert "decoder-range" in err


def test_a_missing_data_range_is_a_failed_check(project, run, monkeypatch):
    module = _factory_module(project, latent_dim=3)
    torch.save(module.state_dict(), project / "w2.pt")
    monkeypatch.chdir(project)
    line = assert_one_error_line(*run(
        "margin", "--model", "w2.pt", "--factory", "userpkg.vaes:build", "--factory-arg",
        "latent_dim=3", "--sigma", "logvar", *COMMON))
    assert "no-data-range" in line and "--data-range" in line


def test_a_plain_state_dict_without_an_architecture_says_how(tmp_path, run):
    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    line = assert_one_error_line(*run("margin", "--model", tmp_path / "plain.pt", *COMMON))
    assert "--arch" in line and "--factory" in line and "--library" in line


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["model.pt", "last.ckpt", "checkpt-0000.pth"])
def test_hostile_torch_files_never_run_code(tmp_path, run, name):
    marker = tmp_path / "pwned"
    payload = {"state_dict": {"w": torch.zeros(1)}, "args": _Payload(marker)}
    torch.save(payload, tmp_path / name)
    for command in (("margin", "--model", tmp_path / name, *COMMON),
                    ("inspect", tmp_path / name)):
        assert_one_error_line(*run(*command))
    assert not marker.exists()


def _beta_tcvae_file(folder: Path) -> Path:
    from rcert.models.libraries import beta_tcvae

    args = argparse.Namespace(latent_dim=3, conv=False, dist="normal", beta=6.0, tcvae=True)
    module = beta_tcvae.build(args)  # rcert's re-implementation of vae_quant.VAE's nets
    torch.manual_seed(2)
    for p in module.parameters():
        nn.init.normal_(p, std=0.02)
    path = folder / "checkpt-0000.pth"
    torch.save({"state_dict": module.state_dict(), "args": args}, path)
    return path


def test_beta_tcvae_checkpoint_through_the_cli(tmp_path, run):
    from rcert.models.foreign import load_model
    from rcert.source import ModelSource

    pytest.importorskip("rcert.models.libraries.beta_tcvae")
    path = _beta_tcvae_file(tmp_path)
    x = torch.rand(LIMIT, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "x.npz", x=x.numpy())
    code, out, err = run("margin", "--model", path, "--data", tmp_path / "x.npz", "--r", R,
                         "--n-samples", 200, "--format", "json")
    assert code == 0, err
    model = load_model(ModelSource(str(path)))
    df = rcert.certify(model, x, r=R, n_samples=200)
    _assert_same(_rows(out), json.loads(df.to_json(orient="records")))
    assert strict_json(out)["model"]["format"] == "beta-tcvae"


def test_pythae_folder_matches_the_python_api(tmp_path, run):
    models = pytest.importorskip("pythae.models",
                                 reason="pythae is optional: pip install rcert[pythae]")
    torch.manual_seed(3)
    vae = models.VAE(models.VAEConfig(input_dim=(1, 8, 8), latent_dim=3))
    vae.save(str(tmp_path / "pythae-vae"))
    code, out, err = run("margin", "--model", tmp_path / "pythae-vae", *COMMON)
    assert code == 0, err
    wrapped = rcert.wrap(vae.eval(), sigma="logvar", encode=lambda m, x: m.encoder(x),
                         decode=lambda m, z: m.decoder(z)["reconstruction"],
                         input_shape=(1, 8, 8), data_range=(0, 1))
    _assert_same(_rows(out), _python_rows(wrapped))
    code, out, err = run("inspect", tmp_path / "pythae-vae", "--format", "json")
    assert code == 0, out
    info = json.loads(out)
    assert info["latent_dim"] == 3 and info["sigma_convention"] == "logvar"
    assert info["data_range"] == [0.0, 1.0] and all(c["passed"] for c in info["checks"])


def test_inspect_reports_a_failed_check_with_exit_1(project, run, monkeypatch):
    module = _factory_module(project, latent_dim=3, logits=True)
    torch.save(module.state_dict(), project / "logits2.pt")
    monkeypatch.chdir(project)
    code, out, err = run("inspect", "logits2.pt", "--factory", "userpkg.vaes:build",
                         "--factory-arg", "latent_dim=3", "--factory-arg", "logits=true",
                         "--sigma", "logvar", "--data-range", "0,1", "--input-shape", "1,8,8")
    assert code == 1, err
    assert "FAIL decoder-range" in out and "PASS nondeterministic" in out
    assert "--allow decoder-range" in out


def test_inspect_a_native_checkpoint(tmp_path, run):
    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    rcert.save(model, tmp_path / "m.safetensors", data="digits:train", recommended_r=0.5)
    code, out, err = run("inspect", tmp_path / "m.safetensors", "--format", "json")
    assert code == 0, err
    info = json.loads(out)
    assert info["model"]["format"] == "rcert" and info["latent_dim"] == 4
    assert [c["code"] for c in info["checks"]] == list(MODEL_CHECKS)


def test_check_gate_covers_a_foreign_model(project, run, monkeypatch):
    module = _factory_module(project, latent_dim=3)
    torch.save({"state_dict": module.state_dict()}, project / "gate.pt")
    (project / "rcert.toml").write_text(textwrap.dedent(f'''
        [[model]]
        path = "gate.pt"
        factory = "userpkg.vaes:build"
        factory_args = {{latent_dim = 3}}
        sigma = "logvar"
        data_range = [0, 1]
        data = "digits:test"
        limit = {LIMIT}
        r = {R}
        n_samples = 200

        [thresholds]
        max_abstain_fraction = 1.0
    '''))
    monkeypatch.chdir(project)
    code, _out, err = run("check", "rcert.toml", "--out", "report", "--quiet")
    assert code == 0, err
    results = json.loads((project / "report" / "results.json").read_text())
    (described,) = results["models"].values()
    assert described["model"]["factory"] == "userpkg.vaes:build"
