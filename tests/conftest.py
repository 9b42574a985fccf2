"""Shared models with closed forms for the engine's tests."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from scipy import stats
from torch import nn

import rcert.runs.resume
from rcert.settings import RunConfig

# Hypothesis draws the same examples on every run and machine, so that a failure seen in CI
# reproduces under -k; no example database carries state between runs.
settings.register_profile("rcert", derandomize=True, database=None, print_blob=True)
settings.load_profile("rcert")


class LinearVAE(nn.Module):
    """``mu(x) = A x``, constant isotropic ``sigma = s``, ``g(z) = w Q z`` with ``Q^T Q = I``.

    Then ``J = A`` exactly and ``||Delta(x)||^2 / (w s)^2 ~ chi2(d_z)``, so
    ``p0 = F_chi2(r^2 / (w s)^2)`` and the ``m``-quantile of ``||Delta||`` is
    ``w s sqrt(F_chi2^{-1}(m))``.
    """

    def __init__(self, input_size: int = 12, latent_dim: int = 3, s: float = 0.5,
                 w: float = 2.0, seed: int = 0, a_scale: float = 0.4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(a_scale * torch.randn(latent_dim, input_size, generator=g))
        q, _ = torch.linalg.qr(torch.randn(input_size, latent_dim, generator=g))
        self.register_buffer("Q", q)
        self.s, self.w, self.latent_dim = s, w, latent_dim
        self.input_shape = (input_size,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x @ self.A.T
        return mu, torch.full_like(mu, self.s)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.w * z @ self.Q.T

    def p0(self, r: float) -> float:
        return float(stats.chi2.cdf((r / (self.w * self.s)) ** 2, self.latent_dim))

    def distance_quantile(self, m: float) -> float:
        return self.w * self.s * math.sqrt(stats.chi2.ppf(m, self.latent_dim))


#: LinearVAE states no data range (its closed forms hold unboxed): runs on it allow the
#: no-data-range model check.
UNBOXED = RunConfig(allow=("no-data-range",))


class TinyMLPVAE(nn.Module):
    """A small non-linear VAE (tanh, learned sigma) for invariants and brute-force checks."""

    def __init__(self, input_size: int = 10, latent_dim: int = 3, hidden: int = 16,
                 seed: int = 0) -> None:
        super().__init__()
        # Seeded weights, without moving the global generator that other code draws from.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.enc = nn.Sequential(nn.Linear(input_size, hidden), nn.Tanh())
            self.mu_head = nn.Linear(hidden, latent_dim)
            self.sigma_head = nn.Linear(hidden, latent_dim)
            self.dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(),
                                     nn.Linear(hidden, input_size), nn.Sigmoid())
        self.input_shape = (input_size,)
        self.data_range = (0.0, 1.0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.mu_head(h), nn.functional.softplus(self.sigma_head(h)) + 0.05

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


class Kink:
    """Constants of :func:`kinked_vae`: a model on which Theorem 1's first order is wrong."""

    centre = 0.5        # mu is flat (slope ``slope``) for |x - centre| < half_width ...
    half_width = 0.05
    slope = 1.0
    gain = 1e6          # ... and rises by ``gain`` per unit of input beyond it
    sigma = 1.0         # fixed encoder standard deviation
    scale = 0.1         # g(z) = 1/2 + scale * z
    r = 0.25            # r / (scale * sigma) = 2.5: p0 = 2 Phi(2.5) - 1 = 0.9876

    @classmethod
    def p0(cls) -> float:
        """``P(||Delta(x)|| <= r)`` unperturbed, for every input."""
        return float(2 * stats.norm.cdf(cls.r / (cls.scale * cls.sigma)) - 1)

    @classmethod
    def mu(cls, x):
        """The encoder mean in closed form (numpy or float)."""
        u = np.abs(np.asarray(x, dtype=np.float64) - cls.centre)
        return cls.slope * (np.asarray(x) - cls.centre) + cls.gain * np.maximum(
            u - cls.half_width, 0.0)

    @classmethod
    def p_robust(cls, shift):
        """``P(||Delta(x, d)|| <= r)`` when ``d`` moves the latent mean by ``shift``:
        ``Delta = scale * (shift + sigma * eta)``, a 1-D Gaussian interval probability."""
        a = cls.r / (cls.scale * cls.sigma)
        s = shift / cls.sigma
        return stats.norm.cdf(a - s) - stats.norm.cdf(-a - s)


def kinked_vae():
    """An rcert MLP (1 input, 1 latent, ReLU, fixed sigma, Gaussian likelihood) with
    hand-set weights: ``mu(x) = slope (x - 1/2) + gain max(|x - 1/2| - c, 0)``, ``sigma = 1``,
    ``g(z) = 1/2 + scale z`` (see :class:`Kink`).

    At ``|x - 1/2| < c`` the Jacobian is ``slope = 1``, so Theorem 1 certifies about
    ``sigma Phi^{-1}(p0) / slope ~ 2``; but a perturbation reaching ``|x + d - 1/2| > c``
    moves the latent mean by ``gain (|x + d - 1/2| - c)``, which wipes out r-robustness
    (``P(||Delta|| <= r) ~ 0``) within ``1e-5`` beyond the kink: the true margin is
    ``c - |x - 1/2|`` (+ O(1 / gain)), far below the first-order bound.
    """
    import rcert

    k = Kink
    model = rcert.build_model("mlp", input_shape=[1], latent_dim=1, hidden=[4],
                              activation="relu", sigma_mode="fixed", fixed_sigma=k.sigma,
                              likelihood="gaussian")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # Trunk units: x + 1 (active on the whole box), and the two sides of the kink.
        trunk = model.trunk[0]
        trunk.weight[:, 0] = torch.tensor([1.0, k.gain, -k.gain, 0.0])
        trunk.bias[:] = torch.tensor([1.0, -k.gain * (k.centre + k.half_width),
                                      k.gain * (k.centre - k.half_width), 0.0])
        model.mu_head.weight[0] = torch.tensor([k.slope, 1.0, 1.0, 0.0])
        model.mu_head.bias[0] = -k.slope * (1.0 + k.centre)
        # Decoder: relu(z) - relu(-z) = z, scaled, around 1/2.
        model.decoder[0].weight[:, 0] = torch.tensor([1.0, -1.0, 0.0, 0.0])
        model.decoder[2].weight[0] = torch.tensor([k.scale, -k.scale, 0.0, 0.0])
        model.decoder[2].bias[0] = 0.5
    return model.eval()


@pytest.fixture(scope="session", autouse=True)
def _fixed_report_date():
    """Reports carry their generation date; pin it for the whole session (module fixtures
    included), so that byte-for-byte comparisons of report folders cannot straddle midnight.
    Tests of the date itself override it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01 UTC
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The test models are tiny: one thread is fastest, and on a busy 2-core machine two
    threads spin on every hand-off (measured: the same attack 100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Devices: tests that take the `device` fixture run once per device, with ids [cpu] and, on a
# machine where torch.cuda.is_available(), [cuda]. Nothing to configure: on a GPU machine
# `pytest tests/engine` runs both; `pytest -k cuda` runs only the GPU cases, `-k "not cuda"`
# only the CPU ones. Such tests move models and data to the device and compare on the CPU.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(scope="session", params=DEVICES, ids=DEVICES)
def device(request) -> torch.device:
    """Each available device in turn (session-scoped, so hypothesis tests can take it)."""
    return torch.device(request.param)


@pytest.fixture
def linear_vae() -> LinearVAE:
    return LinearVAE()


@pytest.fixture
def tiny_vae() -> TinyMLPVAE:
    return TinyMLPVAE()


@pytest.fixture
def run(capsys):
    """Run ``rcert ARGS...`` in-process; return (exit code, stdout, stderr)."""
    from rcert import cli

    def _run(*argv):
        with pytest.raises(SystemExit) as info:
            cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return info.value.code, out, err

    return _run


def strict_json(text: str):
    """``json.loads`` that refuses NaN/Infinity tokens: rcert's JSON must be standard."""
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def assert_one_error_line(code: int, out: str, err: str) -> str:
    """Bad input: exit 2, nothing on stdout, one ``rcert: error: ...`` line, no traceback."""
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rcert: error: ") and len(lines[0]) > len("rcert: error: ")
    assert err.endswith("\n")
    return lines[0]


def cli_output(*argv) -> tuple[int, str, str]:
    """``rcert ARGS...`` for module-scoped fixtures, where capsys is not available."""
    from rcert import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in argv])
    return info.value.code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def ab_ckpts(tmp_path_factory) -> dict[str, Path]:
    """Two untrained 8x8 MLPs from different seeds, named ``a`` and ``b``."""
    import rcert

    folder = tmp_path_factory.mktemp("ab_ckpts")
    paths = {}
    with torch.random.fork_rng():
        for name, seed in (("a", 0), ("b", 1)):
            torch.manual_seed(seed)
            net = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(32,))
            paths[name] = folder / f"{name}.safetensors"
            rcert.save(net, paths[name], data="digits:train", recommended_r=0.8)
    return paths


#: The real ``rcert.runs.resume.certify``, taken before any test patches it.
REAL_CERTIFY = rcert.runs.resume.certify


class CertifyCalls:
    """A stand-in for ``rcert.runs.resume.certify`` that counts its calls, records each
    chunk's size, and raises KeyboardInterrupt (a kill) on call number ``fail_on``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.sizes: list[int] = []

    def __call__(self, model, x, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        self.sizes.append(len(x))
        return REAL_CERTIFY(model, x, *args, **kwargs)


def untrained_checkpoint(folder: Path, *, latent_dim: int, hidden: tuple[int, ...]):
    """An untrained 8x8 MLP saved as a checkpoint and loaded back, as a report would."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=latent_dim,
                                hidden=hidden)
    rcert.save(net, folder / "net.rcert", data="digits:train", recommended_r=0.8)
    return rcert.load(folder / "net.rcert")


def add_attack_columns(df, found, *, unbroken_lo: float, p_check: float,
                       p_check_upper: float):
    """Hand-made empirical-margin columns for rows with certificates: ``found`` is each
    input's margin_empirical (inf: unbroken); violations and tightness follow the rules of
    docs/statistics.md from ``bound_certified`` and the check's upper bound."""
    found = np.asarray(found, dtype=np.float64)
    certified = df["bound_certified"].to_numpy(dtype=np.float64)
    hit = np.isfinite(found)
    df["margin_empirical"] = found
    df["margin_bracket_lo"] = np.where(hit, 0.98 * found, unbroken_lo)
    df["margin_bracket_hi"] = found
    df["p_check"] = np.where(hit, p_check, np.nan)
    df["p_check_upper"] = np.where(hit, p_check_upper, np.nan)
    df["violation"] = (found < certified) & (df["p_check_upper"].to_numpy() <= 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["tightness"] = np.where(~hit, np.nan,
                                   np.where(certified == 0, 0.0, certified / found))
    return df


@pytest.fixture
def make_project(tmp_path, monkeypatch):
    """``make_project(models)``: ``tmp_path`` made a project folder whose ``mypkg/models.py``
    holds the source ``models``, and the working directory; returns the folder. The imported
    ``mypkg`` modules are forgotten afterwards, so that tests do not share them."""
    import sys

    def make(models: str) -> Path:
        (tmp_path / "mypkg").mkdir()
        (tmp_path / "mypkg" / "__init__.py").write_text("")
        (tmp_path / "mypkg" / "models.py").write_text(models)
        monkeypatch.chdir(tmp_path)
        return tmp_path

    yield make
    for module in [n for n in sys.modules if n.split(".")[0] == "mypkg"]:
        del sys.modules[module]


#: torch dtype -> (name, little-endian numpy dtype) of the tensors write_legacy stores.
_LEGACY_DTYPES = {torch.float32: ("float32", "<f4"), torch.float64: ("float64", "<f8"),
                  torch.int64: ("int64", "<i8")}


def legacy_header(model, meta: dict) -> dict:
    """The header of a legacy (format version 1) checkpoint of ``model`` as rcert 0.1.0 wrote
    it, with ``meta`` (data, metrics, recommended_r, extra); without the tensor table and
    sha256, which :func:`write_legacy` adds."""
    return {"format": "rcert-checkpoint", "format_version": 1, "rcert_version": "0.1.0",
            "model": model.config(), **meta}


def legacy_frame(header: dict, payload: bytes) -> bytes:
    """A legacy file's bytes: magic, uint32 version 1, uint64 header length, ``header`` as
    sorted compact JSON, then ``payload``."""
    import struct

    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return b"RCERTCKP" + struct.pack("<IQ", 1, len(text)) + text + payload


def write_legacy(path: Path, tensors: dict, header: dict) -> bytes:
    """Write a legacy checkpoint in the layout rcert/models/legacy.py documents, independently
    of rcert's reader: ``header`` plus a table of ``tensors`` (little-endian, back to back in
    their order) and the payload's sha256. Returns the bytes written."""
    import hashlib

    table, payload = {}, b""
    for name, tensor in tensors.items():
        dtype, np_dtype = _LEGACY_DTYPES[tensor.dtype]
        raw = tensor.detach().numpy().astype(np_dtype).tobytes()
        table[name] = {"dtype": dtype, "shape": list(tensor.shape), "offset": len(payload),
                       "nbytes": len(raw)}
        payload += raw
    raw = legacy_frame({**header, "tensors": table,
                        "sha256": hashlib.sha256(payload).hexdigest()}, payload)
    path.write_bytes(raw)
    return raw


def resumed_run_fixtures(folder: str, *, latent_dim: int, hidden: tuple[int, ...], inputs,
                         id_step: int, first_id: int):
    """Module fixtures ``model`` and ``inputs`` for tests of resumed runs, assigned as
    ``model, inputs = resumed_run_fixtures(...)``: an untrained checkpoint loaded back as a
    report would (:func:`untrained_checkpoint`, in a folder named ``folder``), and the data
    ``inputs()`` with ids ``first_id + id_step * i``, which are not positions (so a lost or
    repeated row shows)."""

    @pytest.fixture(scope="module", name="model")
    def model_fixture(tmp_path_factory):
        return untrained_checkpoint(tmp_path_factory.mktemp(folder), latent_dim=latent_dim,
                                    hidden=hidden)

    @pytest.fixture(scope="module", name="inputs")
    def inputs_fixture():
        x = inputs()
        return x, np.arange(len(x), dtype=np.int64) * id_step + first_id

    return model_fixture, inputs_fixture


#: What rcert says each kind of :func:`make_special` file is.
SPECIAL_KINDS = {"pipe": r"a named pipe \(FIFO\)", "zero": "a character device",
                 "folder": "a folder"}


def make_special(path: Path, kind: str) -> Path:
    """Put a FIFO (``pipe``), a link to /dev/zero (``zero``) or a folder at ``path``, where
    a file is expected; a regular file already there is removed first."""
    if path.is_file() and not path.is_symlink():
        path.unlink()
    if kind == "pipe":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    return path

