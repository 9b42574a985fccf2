"""The bad-input corpus of issue 9: "never a traceback, never a hang, never a silently wrong row".

Every :class:`Case` is one command line of ``rcert`` on an input that is wrong, and what it
must give: exit status ``expect_code`` (2: bad input) and one stderr line ``rcert: error: ...``
that says what is wrong (``match``, a regular expression searched case-insensitively in it).
``setup(t)`` makes the case's files in its own folder ``t`` (the working directory of the
run); in ``argv``, ``{t}`` stands for that folder and ``{m}`` for the shipped models' folder.

Before ``setup``, every case folder holds the outputs an earlier run left (:data:`KEPT`, with
the bytes :data:`OLD`) and two good inputs (``good.npy``); the commands below write to those
outputs (``--output {t}/result.txt``, ``--out {t}/fig.png``, ...), so a bad input must leave
them as they were. Hostile pickles run ``touch {t}/PWNED`` if they are ever unpickled.

The cases are built with torch and numpy in the test process, never by rcert itself, so a
broken reader cannot hide a broken writer. Files are small or sparse: size bombs *declare*
sizes they do not hold.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import json
import os
import pickle
import shutil
import socket
import struct
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import legacy_header, write_legacy

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
#: The shipped 8x8 digits MLP, the model of most cases.
M = "{m}/vae-digits.safetensors"
#: The file a hostile payload creates when it runs.
MARKER = "PWNED"
#: The bytes of every output an earlier run left in a case folder.
OLD = b"bytes an earlier run wrote; a failed run must leave them as they are\n"
#: Outputs an earlier run left in every case folder (a report folder holds two files).
KEPT = ("result.txt", "fig.png", "trained.safetensors", "new.safetensors",
        "report/results.json", "report/summary.md")


@dataclass(frozen=True)
class Case:
    """One bad input: ``rcert ARGV...`` after ``setup(t)`` must exit ``expect_code`` with one
    ``rcert: error:`` line matching ``match``; ``env`` adds environment variables."""

    id: str
    argv: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    expect_code: int = 2
    match: str = ""
    category: str = ""
    env: tuple[tuple[str, str], ...] = ()


CASES: list[Case] = []


def case(id: str, argv, setup=None, *, match: str, category: str, code: int = 2,
         env: dict[str, str] | None = None) -> None:
    CASES.append(Case(id, tuple(argv), setup, code, match, category,
                      tuple((env or {}).items())))


def _all(*setups):
    """One setup that runs ``setups`` in order."""
    def run(t: Path) -> None:
        for s in setups:
            if s is not None:
                s(t)
    return run


# ------------------------------------------------------------------ command lines

#: Small enough that a case which does not fail early still ends in seconds.
FAST = ("--limit", "2", "--n-samples", "20", "--quiet")
OUT = ("--output", "{t}/result.txt")
GOOD = "{t}/good.npy"


def margin(model: str = M, *extra: str, data: str | None = GOOD) -> tuple[str, ...]:
    return ("margin", "--model", model, *(("--data", data) if data else ()), *FAST, *OUT,
            *extra)


def attack(model: str = M, *extra: str, data: str | None = GOOD) -> tuple[str, ...]:
    return ("attack", "--model", model, *(("--data", data) if data else ()), "--L", "0.5",
            "--preset", "fast", "--n-check", "20", "--limit", "2", "--quiet", *OUT, *extra)


def curve(model: str = M, *extra: str, data: str | None = GOOD) -> tuple[str, ...]:
    return ("curve", "--model", model, *(("--data", data) if data else ()), "--radii",
            "0,0.5", *FAST, *OUT, *extra)


def report(*models: str, extra: tuple[str, ...] = (), data: str | None = GOOD
           ) -> tuple[str, ...]:
    flags = [x for m in models for x in ("--model", m)]
    return ("report", *flags, *(("--data", data) if data else ()), "--out", "{t}/report",
            *FAST, *extra)


def inspect(model: str, *extra: str) -> tuple[str, ...]:
    return ("inspect", model, *extra)


def check(config: str = "{t}/rcert.toml", *extra: str) -> tuple[str, ...]:
    return ("check", config, "--out", "{t}/report", "--quiet", *extra)


def plot(*inputs: str, kind: str = "margins", out: str = "{t}/fig.png") -> tuple[str, ...]:
    return ("plot", kind, *inputs, "--out", out)


def train(data: str, *extra: str, out: str = "{t}/trained.safetensors") -> tuple[str, ...]:
    return ("train", "--data", data, "--out", out, "--epochs", "1", "--batch-size", "8",
            "--quiet", *extra)


def convert(src: str, dst: str = "{t}/new.safetensors") -> tuple[str, ...]:
    return ("convert", src, dst)


# ------------------------------------------------------------------ what messages must say

FIFO = r"named pipe|fifo"
DEVICE = r"device"
FOLDER = r"folder|director"
SOCKET = r"socket"
PICKLE = r"pickl|refus|never runs? code|not allowed|unsafe"
SIZE = (r"declare|damaged|truncated|corrupt|more than|too (big|large)|\bMB\b|\bGB\b|size|"
        r"promises|exceed|larger")
DEEP = r"nest|deep|depth"
NONFINITE = r"\bnan\b|\binf|finite"
#: A safetensors file that declares more than it holds: the message must say so, not call
#: it a corrupt pickle.
DECLARED = (r"header|length|truncated|declare|exceed|too (big|large)|\bMB\b|\bGB\b|"
            r"more than")

# ------------------------------------------------------------------ files, made by the test


def write(t: Path, name: str, data: bytes | str) -> Path:
    path = t / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def writes(name: str, data: bytes | str | Callable[[Path], bytes | str]):
    """A setup that writes ``data`` (or ``data(t)``) to ``t/name``."""
    def run(t: Path) -> None:
        write(t, name, data(t) if callable(data) else data)
    return run


class Payload:
    """Pickles to ``os.system("touch t/PWNED")``: proof that unpickling ran code."""

    def __init__(self, t: Path) -> None:
        self.command = f"touch {t / MARKER}"

    def __reduce__(self):
        return (os.system, (self.command,))


def hostile_pickle(t: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(Payload(t), protocol=protocol)


def torch_bytes(obj: Any, *, zipped: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


def tiny_vae(*, nan: bool = False, inf: bool = False):
    """An untrained 8x8 MLP (latent 4, one hidden layer of 16), like the digits model."""
    import rcert

    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    if nan or inf:
        with torch.no_grad():
            next(iter(model.parameters())).view(-1)[0] = float("nan") if nan else float("inf")
    return model


ARCH = {"arch": "mlp", "input_shape": [1, 8, 8], "latent_dim": 4, "hidden": [16]}


def arch_json(name: str = "arch.json", **changes):
    return writes(name, json.dumps({**ARCH, **changes}))


def state_dict(name: str = "sd.pt", *, nan: bool = False, inf: bool = False):
    """A torch.save state dict of :func:`tiny_vae`, and its description as arch.json."""
    def run(t: Path) -> None:
        write(t, name, torch_bytes(tiny_vae(nan=nan, inf=inf).state_dict()))
        arch_json()(t)
    return run


def save_model(t: Path, name: str, *, model=None, **meta) -> Path:
    import rcert

    meta = {"data": "digits:train", "recommended_r": 0.75, **meta}
    rcert.save(model if model is not None else tiny_vae(), t / name, **meta)
    return t / name


def st_save(tensors: dict, metadata: dict | None = None) -> bytes:
    import safetensors.torch

    return safetensors.torch.save(tensors, metadata)


def safetensors_header(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file: 8-byte little-endian header length, the header, the data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def rcert_safetensors(name: str, *, edit: Callable[[dict], None] | None = None,
                      nan: bool = False, inf: bool = False, text: str | None = None):
    """An rcert safetensors checkpoint written without rcert.save, so that its header can say
    anything: ``edit`` changes the header dict (json.dumps writes NaN as NaN), ``text``
    replaces the header altogether."""
    def run(t: Path) -> None:
        import safetensors.torch

        from rcert.models.checkpoint import tensor_digest

        model = tiny_vae(nan=nan, inf=inf)
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        header = {"format": "rcert-checkpoint", "format_version": 2,
                  "rcert_version": "0.3.0", "model": model.config(), "data": "digits:train",
                  "metrics": {}, "recommended_r": 0.75, "extra": {},
                  "sha256": tensor_digest(tensors)}
        if edit is not None:
            edit(header)
        body = text if text is not None else json.dumps(header, sort_keys=True)
        write(t, name, safetensors.torch.save(tensors, {"rcert": body}))
    return run


def legacy(name: str, *, edit: Callable[[dict], None] | None = None, nan: bool = False):
    """A legacy RCERTCKP checkpoint (conftest's writer), its header changed by ``edit``."""
    def run(t: Path) -> None:
        model = tiny_vae(nan=nan)
        header = legacy_header(model, {"data": "digits:train", "metrics": {},
                                       "recommended_r": 0.75, "extra": {}})
        if edit is not None:
            edit(header)
        write_legacy(t / name, dict(model.state_dict()), header)
    return run


def good_inputs(n: int = 2, shape=(1, 8, 8), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def npy(name: str, array: np.ndarray | Callable[[], np.ndarray], **kw):
    def run(t: Path) -> None:
        path = t / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.save(f, array() if callable(array) else array, **kw)
    return run


def npy_header(shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"\0" * 64,
               version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file whose header declares ``shape`` and that holds only ``data``."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue() + data


def zipped(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray, **kw) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kw)
    return buffer.getvalue()


def idx(dims: tuple[int, ...], data: bytes | None = None, magic: int | None = None) -> bytes:
    """An IDX file of uint8 (magic 0x08 and the number of dimensions, then big-endian dims)."""
    magic = (0x0800 | len(dims)) if magic is None else magic
    head = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)
    return head + (bytes(int(np.prod(dims))) if data is None else data)


def mnist(folder: str = "mn", *, images: bytes | None = None, labels: bytes | None = None,
          gz: bool = False):
    """An MNIST folder with test images (default 4 blank 28x28) and optional labels."""
    def run(t: Path) -> None:
        d = t / folder
        d.mkdir(parents=True, exist_ok=True)
        suffix = ".gz" if gz else ""
        data = idx((4, 28, 28)) if images is None else images
        (d / f"t10k-images-idx3-ubyte{suffix}").write_bytes(gzip.compress(data) if gz else data)
        if labels is not None:
            (d / "t10k-labels-idx1-ubyte").write_bytes(labels)
    return run


def cifar(batch: Callable[[Path], bytes] | bytes | None = None, folder: str = "cf"):
    """A CIFAR-10 folder whose test_batch holds ``batch`` (default: 4 good images)."""
    def run(t: Path) -> None:
        data = batch(t) if callable(batch) else batch
        if data is None:
            data = cifar_batch()
        write(t, f"{folder}/test_batch", data)
    return run


def cifar_batch(data: Any = None, labels: Any = None, *, protocol: int = 2) -> bytes:
    data = np.zeros((4, 3072), np.uint8) if data is None else data
    labels = [1, 2, 3, 4] if labels is None else labels
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"testing"},
                        protocol=protocol)


def pickled_bytes_bomb() -> bytes:
    """A protocol-4 pickle whose BINBYTES8 declares 2**40 bytes, and holds 8."""
    return b"\x80\x04" + b"\x8e" + struct.pack("<Q", 2**40) + b"\0" * 8 + b"."


PNG = (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89"
       b"\0\0\0\rIDATx\x9cc\xf8\xff\xff?\0\x05\xfe\x02\xfe\xa7\x35\x81\x84\0\0\0\0IEND\xaeB`\x82")


def special(name: str, kind: str):
    """A setup that makes ``t/name`` a FIFO, a socket, a folder, or a symlink to a device."""
    def run(t: Path) -> None:
        path = t / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            # AF_UNIX paths are short (108 bytes): bind through the folder's descriptor.
            fd = os.open(path.parent, os.O_RDONLY)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(f"/proc/self/fd/{fd}/{path.name}")
            finally:
                sock.close()
                os.close(fd)
        elif kind == "dir":
            path.mkdir()
        elif kind in ("devzero", "devnull"):
            os.symlink(f"/dev/{kind[3:]}", path)
        else:
            raise ValueError(kind)
    return run


def sparse(name: str, size: int):
    """A file of ``size`` zero bytes that takes no disk space."""
    def run(t: Path) -> None:
        path = t / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(size)
    return run


def deep(n: int = 100_000, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


# ------------------------------------------------------------------ shared templates

_LOCK = threading.Lock()
#: Where the templates are built once per session (set by the runner).
TEMPLATES: list[Path] = []


def _template(name: str, build: Callable[[Path], None]) -> Path:
    with _LOCK:
        path = TEMPLATES[0] / name
        if not path.exists():
            tmp = TEMPLATES[0] / f".{name}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            build(tmp)
            tmp.rename(path)
        return path


def _build_pythae(folder: Path) -> None:
    import pythae.models as models

    config = models.VAEConfig(input_dim=(1, 8, 8), latent_dim=3)
    models.VAE(config).save(str(folder / "model"))


def pythae_folder(name: str = "pyf", edit: Callable[[Path], None] | None = None):
    """A pythae VAE folder (saved by pythae itself), changed by ``edit(folder)``."""
    def run(t: Path) -> None:
        template = _template("pythae", _build_pythae) / "model"
        shutil.copytree(template, t / name)
        if edit is not None:
            edit(t / name)
    return run


def edit_json(file: str, **changes):
    def run(folder: Path) -> None:
        path = folder / file
        doc = json.loads(path.read_text())
        doc.update(changes)
        path.write_text(json.dumps(doc))
    return run


def _build_zero_member(folder: Path) -> None:
    # One gzip member of 64 MiB of zeros; gzip readers concatenate members.
    (folder / "zeros.gz").write_bytes(gzip.compress(bytes(64 << 20), compresslevel=9))


def gz_idx_bomb(name: str = "mn/t10k-images-idx3-ubyte.gz", members: int = 24):
    """An IDX whose header declares 10 images of 28x28 (7,840 bytes), gzipped, followed by
    ``members`` gzip members of 64 MiB of zeros each: 1.5 GiB from a file of ~1.6 MB."""
    def run(t: Path) -> None:
        zeros = (_template("zeros", _build_zero_member) / "zeros.gz").read_bytes()
        path = t / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(gzip.compress(idx((10, 28, 28))))
            for _ in range(members):
                f.write(zeros)
    return run


def _vanilla_state(in_channels: int = 3, latent: int = 5, hidden=(4, 8, 16)) -> dict:
    """PyTorch-VAE's VanillaVAE state dict (models/vanilla_vae.py), key by key."""
    state: dict[str, torch.Tensor] = {}

    def layer(name, weight, bias):
        state[f"{name}.weight"] = 0.1 * torch.randn(*weight)
        state[f"{name}.bias"] = 0.1 * torch.randn(bias)

    def bn(name, n):
        state.update({f"{name}.weight": torch.ones(n), f"{name}.bias": torch.zeros(n),
                      f"{name}.running_mean": torch.zeros(n),
                      f"{name}.running_var": torch.ones(n),
                      f"{name}.num_batches_tracked": torch.tensor(7)})

    widths = [in_channels, *hidden]
    for i in range(len(hidden)):
        layer(f"encoder.{i}.0", (widths[i + 1], widths[i], 3, 3), widths[i + 1])
        bn(f"encoder.{i}.1", widths[i + 1])
    flat = hidden[-1] * 4
    layer("fc_mu", (latent, flat), latent)
    layer("fc_var", (latent, flat), latent)
    layer("decoder_input", (flat, latent), flat)
    back = list(hidden)[::-1]
    for i in range(len(hidden) - 1):
        layer(f"decoder.{i}.0", (back[i], back[i + 1], 3, 3), back[i + 1])
        bn(f"decoder.{i}.1", back[i + 1])
    layer("final_layer.0", (back[-1], back[-1], 3, 3), back[-1])
    bn("final_layer.1", back[-1])
    layer("final_layer.3", (3, back[-1], 3, 3), 3)
    return state


def lightning(state: dict, **extra) -> dict:
    """What PyTorch-VAE's Lightning checkpoint holds: the VAE is its ``self.model``."""
    return {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 3,
            "global_step": 120, "pytorch-lightning_version": "1.5.6", **extra}


def btc_args(**changes) -> argparse.Namespace:
    return argparse.Namespace(**{"latent_dim": 4, "conv": True, "dist": "normal", "beta": 6.0,
                                 "tcvae": True, "dataset": "shapes", **changes})


# ------------------------------------------------------------------ results and baselines


@functools.cache
def _margin_document() -> str:
    """A real ``rcert margin --format json`` document of the digits model on 2 inputs,
    made in-process once (JSON text)."""
    import rcert
    from rcert.results import schema, text

    model = rcert.load(MODELS / "vae-digits.safetensors")
    df = rcert.certify(model, torch.from_numpy(good_inputs()), r=0.75, n_samples=20)
    return text.to_json(schema.result(df, kind="margin",
                                      model={"path": str(MODELS / "vae-digits.safetensors")}))


def margin_doc() -> dict:
    with _LOCK:
        return json.loads(_margin_document())


def curve_doc() -> dict:
    """A hand-made ``rcert curve`` result: two inputs at two radii."""
    rows = [{"index": i, "rho": rho, "p_hat": 0.9 - rho / 2, "p_lower": 0.8 - rho / 2,
             "p_upper": 0.95 - rho / 2} for i in (0, 1) for rho in (0.0, 0.5)]
    return {"schema_version": 1, "kind": "curve", "config": {"r": 0.75, "m": 0.5},
            "model": {"path": "x.safetensors"}, "summary": {}, "inputs": rows}


def report_doc(models: Any = None) -> dict:
    return {"schema_version": 1, "kind": "report",
            "models": {"vae-digits": margin_doc()} if models is None else models,
            "verdicts": [], "files": {}}


def result_file(name: str, make: Callable[[], Any] | str | bytes):
    """A setup that writes a result document: ``make()`` (JSON-dumped unless text/bytes)."""
    def run(t: Path) -> None:
        doc = make() if callable(make) else make
        write(t, name, doc if isinstance(doc, (str, bytes)) else json.dumps(doc))
    return run


def mutated(base: Callable[[], dict], change: Callable[[dict], Any]) -> Callable[[], Any]:
    """``base()`` changed in place by ``change(doc)`` (its return value is ignored)."""
    def make() -> Any:
        doc = base()
        change(doc)
        return doc
    return make


def toml_config(body: str = "", *, model: str | None = None, baseline: str | None = None,
                name: str = "rcert.toml"):
    """A setup that writes an ``rcert check`` config: one [[model]] (the digits model on the
    good inputs, 2 of them, 20 samples) unless ``model`` replaces its table, then ``body``;
    ``baseline`` adds [thresholds] baseline and max_regression."""
    def run(t: Path) -> None:
        table = model if model is not None else (
            f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\ndata = "{t}/good.npy"\n'
            'limit = 2\nn_samples = 20\n')
        text = table + "\n" + body.replace("{t}", str(t)).replace("{m}", str(MODELS))
        if baseline is not None:
            text += f'\n[thresholds]\nbaseline = "{baseline}"\nmax_regression = 0.5\n'
        write(t, name, text)
    return run


def baseline_case(id: str, make: Callable[[], Any] | str | bytes | None, match: str, *,
                  category: str = "malformed baselines", file=None) -> None:
    """``rcert check`` with a config whose baseline is ``make()`` (or made by ``file``)."""
    made = file if file is not None else result_file("base.json", make)
    case(id, check(), _all(made, toml_config(baseline="base.json")), match=match,
         category=category)


def _build_all() -> None:
    """Fill :data:`CASES`: one flat list, by category."""
    # ============================================================== hostile pickles
    cat = "hostile pickles"
    evil_zip = writes("evil.pt", lambda t: torch_bytes({"w": Payload(t)}))
    case("pickle_torch_zip_arch", margin("{t}/evil.pt", "--arch", "{t}/arch.json"),
         _all(evil_zip, arch_json()), match=PICKLE, category=cat)
    case("pickle_plain_protocol2", margin("{t}/evil.pt", "--arch", "{t}/arch.json"),
         _all(writes("evil.pt", hostile_pickle), arch_json()), match=PICKLE, category=cat)
    case("pickle_named_rcert", margin("{t}/evil.rcert"),
         writes("evil.rcert", lambda t: torch_bytes({"w": Payload(t)})), match=PICKLE,
         category=cat)
    case("pickle_lightning_ckpt_callbacks", margin("{t}/last.ckpt"),
         writes("last.ckpt", lambda t: torch_bytes(
             lightning(_vanilla_state(), callbacks=Payload(t)))), match=PICKLE, category=cat)
    pythae_evil = pythae_folder(edit=lambda f: (f / "model.pt").write_bytes(torch_bytes(
        {"model_state_dict": {"w": torch.zeros(1)}, "x": Payload(f.parent)})))
    case("pickle_pythae_model_pt", margin("{t}/pyf"), pythae_evil, match=PICKLE,
         category=cat)
    case("pickle_pythae_encoder_pkl_untrusted", margin("{t}/pyf"),
         pythae_folder(edit=lambda f: (edit_json("model_config.json",
                                                 uses_default_encoder=False)(f),
                                       (f / "encoder.pkl").write_bytes(
                                           hostile_pickle(f.parent)))),
         match=r"pickle|trust", category=cat)
    case("pickle_beta_tcvae_args", margin("{t}/checkpt-0000.pth"),
         writes("checkpt-0000.pth", lambda t: torch_bytes(
             {"state_dict": {"w": torch.zeros(2)}, "args": Payload(t)})), match=PICKLE,
         category=cat)
    case("pickle_cifar_test_batch", margin(M, data="cifar10:{t}/cf:test"),
         cifar(hostile_pickle), match=PICKLE, category=cat)

    def obj_array(t: Path) -> np.ndarray:
        return np.array([Payload(t), 1], dtype=object)

    case("pickle_npy_object", margin(M, data="{t}/x.npy"),
         writes("x.npy", lambda t: npy_bytes(obj_array(t), allow_pickle=True)),
         match=r"object|pickl|plain array", category=cat)
    case("pickle_npz_object_y", margin(M, data="{t}/x.npz"),
         writes("x.npz", lambda t: zipped({"x.npy": npy_bytes(good_inputs()),
                                           "y.npy": npy_bytes(obj_array(t),
                                                              allow_pickle=True)})),
         match=r"object|pickl|plain array", category=cat)
    case("pickle_inspect_torch", inspect("{t}/evil.pt", "--arch", "{t}/arch.json"),
         _all(evil_zip, arch_json()), match=PICKLE, category=cat)
    case("pickle_convert_src", convert("{t}/evil.pt"), evil_zip,
         match=PICKLE + r"|torch\.save|not an rcert", category=cat)
    case("pickle_train_npy_object", train("{t}/x.npy"),
         writes("x.npy", lambda t: npy_bytes(obj_array(t), allow_pickle=True)),
         match=r"object|pickl|plain array", category=cat)
    case("pickle_check_model", check(),
         _all(evil_zip, arch_json(), toml_config(
             model='[[model]]\npath = "evil.pt"\narch = "arch.json"\ndata = "good.npy"\n'
                   'limit = 2\nn_samples = 20\n')), match=PICKLE, category=cat)
    case("pickle_report_model", report("{t}/evil.pt", extra=("--arch", "{t}/arch.json")),
         _all(evil_zip, arch_json()), match=PICKLE, category=cat)
    case("pickle_attack_model", attack("{t}/evil.pt", "--arch", "{t}/arch.json"),
         _all(evil_zip, arch_json()), match=PICKLE, category=cat)
    case("pickle_curve_model", curve("{t}/evil.pt", "--arch", "{t}/arch.json"),
         _all(evil_zip, arch_json()), match=PICKLE, category=cat)
    baseline_case("pickle_as_baseline", None, r"baseline.*(JSON|UTF-8)", category=cat,
                  file=writes("base.json", hostile_pickle))

    # ============================================================== size bombs
    cat = "size bombs"
    case("npy_huge_shape", margin(M, data="{t}/x.npy"),
         writes("x.npy", npy_header((10**12, 1, 8, 8))), match=SIZE, category=cat)
    case("npy_huge_header_length", margin(M, data="{t}/x.npy"),
         writes("x.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" * 32),
         match=SIZE + r"|header", category=cat)
    case("npy_trailing_bytes", margin(M, data="{t}/x.npy"),
         writes("x.npy", npy_bytes(good_inputs()) + bytes(1 << 20)),
         match=SIZE + r"|trailing|extra|after", category=cat)
    case("npz_member_huge_shape_deflated", margin(M, data="{t}/x.npz"),
         writes("x.npz", zipped({"x.npy": npy_header((10**11, 1, 8, 8), data=bytes(1 << 20))},
                                zipfile.ZIP_DEFLATED)), match=SIZE, category=cat)
    case("idx_gz_overlong_50mb", margin(M, data="mnist:{t}/mn:test"),
         mnist(images=idx((10, 28, 28), data=bytes(50 << 20)), gz=True), match=SIZE,
         category=cat)
    case("idx_gz_bomb_1_5gb", margin(M, data="mnist:{t}/mn:test"), gz_idx_bomb(),
         match=SIZE, category=cat)
    case("idx_huge_dims", margin(M, data="mnist:{t}/mn:test"),
         mnist(images=idx((2**31, 2**31, 2**31), data=bytes(64))), match=SIZE, category=cat)
    case("safetensors_huge_header_length", margin("{t}/m.safetensors"),
         writes("m.safetensors", safetensors_header(b'{"a":1}', length=2**40)),
         match=DECLARED, category=cat)
    case("safetensors_tensor_huge_shape", margin("{t}/m.safetensors"),
         writes("m.safetensors", safetensors_header(
             {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}},
             bytes(16))), match=DECLARED, category=cat)
    case("check_config_300mb_sparse", check("{t}/big.toml"), sparse("big.toml", 300 << 20),
         match=SIZE, category=cat)
    baseline_case("baseline_300mb_sparse", None, SIZE, category=cat,
                  file=sparse("base.json", 300 << 20))
    case("plot_input_300mb_sparse", plot("{t}/r.json"), sparse("r.json", 300 << 20),
         match=SIZE, category=cat)
    case("arch_huge_widths", margin("{t}/sd.pt", "--arch", "{t}/wide.json"),
         _all(state_dict(), arch_json("wide.json", hidden=[10**6, 10**6])),
         match=r"parameters|too (big|large)|widths", category=cat)
    case("pythae_config_300mb_sparse", margin("{t}/pyf"),
         pythae_folder(edit=lambda f: sparse("model_config.json", 300 << 20)(f)), match=SIZE,
         category=cat)
    case("cifar_pickle_bytes_bomb", margin(M, data="cifar10:{t}/cf:test"),
         cifar(pickled_bytes_bomb()), match=SIZE + r"|unpickle|intact", category=cat)

    # ============================================================== special files
    cat = "FIFOs, devices, folders, sockets"
    expected = {"fifo": FIFO, "socket": SOCKET, "dir": FOLDER, "devzero": DEVICE,
                "devnull": DEVICE}
    # (slot, argv, the file the slot reads, other setup, kinds)
    slots = [
        ("model", margin("{t}/S"), "S", None, ("fifo", "socket", "dir", "devzero", "devnull")),
        ("data_npy", margin(M, data="{t}/S.npy"), "S.npy", None, ("fifo",)),
        ("arch", margin("{t}/sd.pt", "--arch", "{t}/S.json"), "S.json", state_dict(),
         ("fifo",)),
        ("check_config", check("{t}/S.toml"), "S.toml", None, ("fifo", "devzero")),
        ("baseline", check(), "S.json", None, ("fifo", "devzero")),
        ("plot_input", plot("{t}/S.json"), "S.json", None, ("fifo", "dir")),
        ("convert_src", convert("{t}/S.rcert"), "S.rcert", None, ("fifo",)),
        ("inspect_model", inspect("{t}/S"), "S", None, ("fifo",)),
        ("train_data", train("{t}/S.npy"), "S.npy", None, ("fifo",)),
        ("cifar_batch", margin(M, data="cifar10:{t}/cf:test"), "cf/test_batch", None,
         ("fifo",)),
        ("mnist_images", margin(M, data="mnist:{t}/mn:test"), "mn/t10k-images-idx3-ubyte",
         None, ("fifo",)),
        ("pythae_config", margin("{t}/pyf"), "pyf/model_config.json",
         pythae_folder(edit=lambda f: (f / "model_config.json").unlink()), ("fifo",)),
        ("report_partial", report(M), "report/.partial/vae-digits.jsonl", None, ("fifo",)),
    ]
    for slot, argv, file, other, kinds in slots:
        for kind in kinds:
            name = file.replace("S", kind)
            args = tuple(a.replace("{t}/S", "{t}/" + kind) for a in argv)
            if slot == "baseline":
                other = toml_config(baseline=name)
            case(f"{kind}_as_{slot}", args, _all(other, special(name, kind)),
                 match=expected[kind], category=cat)
    # A device itself, not a link to one.
    case("dev_zero_direct_model", margin("/dev/zero"), match=DEVICE, category=cat)

    # ============================================================== deep JSON and TOML
    cat = "deeply nested documents"
    baseline_case("deep_json_baseline_arrays", deep(), DEEP, category=cat)
    case("deep_json_plot_input", plot("{t}/r.json"), writes("r.json", deep()), match=DEEP,
         category=cat)
    case("deep_json_arch", margin("{t}/sd.pt", "--arch", "{t}/deep.json"),
         _all(state_dict(), writes("deep.json", deep())), match=DEEP, category=cat)
    case("deep_json_factory_arg", margin("{t}/sd.pt", "--factory", "mypkg.models:build",
                                         "--factory-arg", "x=" + deep(60_000)),
         _all(state_dict(), writes("mypkg/__init__.py", ""), writes(
             "mypkg/models.py", "import rcert\n\ndef build(**kw):\n    return rcert.build_model("
             "'mlp', input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))\n")),
         match=DEEP, category=cat)
    case("deep_toml_check_config", check(),
         toml_config("[run]\nallow = " + deep(50_000) + "\n"), match=DEEP, category=cat)
    case("deep_json_safetensors_metadata", margin("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", text=deep()), match=DEEP + r"|corrupt",
         category=cat)
    case("deep_json_legacy_header", margin("{t}/m.rcert"),
         writes("m.rcert", b"RCERTCKP" + struct.pack("<IQ", 1, 200_000) + deep().encode()),
         match=DEEP + r"|corrupt", category=cat)
    case("deep_json_pythae_config", margin("{t}/pyf"),
         pythae_folder(edit=lambda f: (f / "model_config.json").write_text(deep())),
         match=DEEP + r"|not a pythae", category=cat)

    # ============================================================== malformed baselines
    cat = "malformed baselines"
    baseline_case("baseline_a_list", lambda: [report_doc()], r"baseline.*(report|object|list)")
    baseline_case("baseline_no_summary",
                  mutated(report_doc, lambda d: d["models"]["vae-digits"].pop("summary")),
                  r"baseline.*summary|summary.*baseline")
    baseline_case("baseline_number_as_string",
                  mutated(report_doc, lambda d: d["models"]["vae-digits"]["summary"][
                      "mean_margin"].update(bound_certified="0.05")),
                  r"baseline.*(number|string|bound_certified)")
    baseline_case("baseline_schema_version_99",
                  mutated(report_doc, lambda d: d.update(schema_version=99)),
                  r"baseline.*(schema|version)")
    baseline_case("baseline_wrong_kind",
                  mutated(report_doc, lambda d: d.update(kind="margin")),
                  r"baseline.*(kind|report)")
    baseline_case("baseline_models_a_list",
                  mutated(report_doc, lambda d: d.update(models=[d["models"]["vae-digits"]])),
                  r"baseline.*models")
    baseline_case("baseline_model_not_object",
                  mutated(report_doc, lambda d: d.update(models={"vae-digits": [1, 2]})),
                  r"baseline.*(model|object)")
    baseline_case("baseline_nan_token", lambda: json.dumps(report_doc()).replace(
        '"schema_version": 1', '"schema_version": NaN'), r"baseline.*(NaN|JSON)")

    # ============================================================== malformed results: plot
    cat = "malformed results for plot"

    def bad_result(id, make, match, kind="margins"):
        case(id, plot("{t}/r.json", kind=kind), result_file("r.json", make), match=match,
             category=cat)

    bad_result("plot_result_a_list", lambda: [margin_doc()], r"not an rcert result|object")
    bad_result("plot_result_no_inputs", mutated(margin_doc, lambda d: d.pop("inputs")),
               r"inputs|not an rcert result")
    bad_result("plot_result_schema_99", mutated(margin_doc, lambda d: d.update(
        schema_version=99)), r"schema|version")
    bad_result("plot_result_wrong_kind_for_plot", margin_doc, r"curve|kind", kind="curves")
    bad_result("plot_result_missing_columns", mutated(margin_doc, lambda d: d.update(
        inputs=[{"index": r["index"]} for r in d["inputs"]])),
        r"column|lacks|none of", kind="certified-fraction")
    bad_result("plot_result_text_in_column", mutated(margin_doc, lambda d: [
        r.update(bound_certified="abc") for r in d["inputs"]] and None),
        r"number|bound_certified")
    bad_result("plot_result_number_as_string", mutated(margin_doc, lambda d: [
        r.update(bound_certified=str(r["bound_certified"])) for r in d["inputs"]] and None),
        r"number|string|bound_certified")
    bad_result("plot_curve_config_not_object", mutated(curve_doc, lambda d: d.update(
        config=[1, 2])), r"config", kind="curves")
    bad_result("plot_report_schema_99", mutated(report_doc, lambda d: d.update(
        schema_version=99)), r"schema|version")
    case("plot_out_bad_suffix", plot("{t}/r.json", out="{t}/fig.pdf"),
         result_file("r.json", margin_doc), match=r"suffix|\.png|\.svg", category=cat)

    # ============================================================== CIFAR batches
    cat = "CIFAR-10 batches"

    def bad_cifar(id, batch, match):
        case(id, margin(M, data="cifar10:{t}/cf:test"), cifar(batch), match=match,
             category=cat)

    bad_cifar("cifar_labels_ragged", cifar_batch(labels=[[1], [2, 3], [4], []]), r"labels")
    bad_cifar("cifar_labels_nested", cifar_batch(labels=[[1], [2], [3], [4]]), r"labels")
    bad_cifar("cifar_labels_too_few", cifar_batch(labels=[1, 2]), r"labels")
    bad_cifar("cifar_data_float", cifar_batch(data=np.zeros((4, 3072))), r"uint8|dtype|float")
    bad_cifar("cifar_batch_a_list", pickle.dumps([1, 2, 3], protocol=2),
              r"dict|not a CIFAR-10 batch|list")
    case("cifar_shape_does_not_fit_model", margin(M, data="cifar10:{t}/cf:test"), cifar(),
         match=r"shape|expects", category=cat)

    # ============================================================== MNIST IDX files
    cat = "MNIST IDX files"

    def bad_idx(id, setup, match, spec="mnist:{t}/mn:test"):
        case(id, margin(M, data=spec), setup, match=match, category=cat)

    bad_idx("idx_wrong_magic", mnist(images=idx((4, 28, 28), magic=0x0801)), r"magic")
    bad_idx("idx_data_cut", mnist(images=idx((4, 28, 28))[:-100]),
            r"truncated|promises|holds")
    bad_idx("idx_gz_corrupt", writes("mn/t10k-images-idx3-ubyte.gz",
                                     b"\x1f\x8b\x08\x00" + bytes(40)),
            r"corrupt|intact|gzip|cannot read")
    bad_idx("idx_shape_does_not_fit_model", mnist(), r"shape|expects")
    bad_idx("idx_fashion_wrong_magic", mnist(images=idx((4, 28, 28), magic=0x0802)),
            r"magic", spec="fashion-mnist:{t}/mn:test")

    # ============================================================== NaN and inf
    cat = "NaN and inf"
    nan_x = good_inputs(4)
    nan_x[1, 0, 3, 3] = np.nan
    inf_x = good_inputs(4)
    inf_x[2, 0, 0, 0] = np.inf
    ninf_x = good_inputs(4)
    ninf_x[0, 0, 0, 0] = -np.inf
    case("data_nan_npy", margin(M, data="{t}/x.npy"), npy("x.npy", nan_x), match=NONFINITE,
         category=cat)
    case("data_inf_npy", margin(M, data="{t}/x.npy"), npy("x.npy", inf_x), match=NONFINITE,
         category=cat)
    case("data_nan_attack", attack(M, data="{t}/x.npy"), npy("x.npy", nan_x),
         match=NONFINITE, category=cat)
    case("data_nan_curve", curve(M, data="{t}/x.npy"), npy("x.npy", nan_x), match=NONFINITE,
         category=cat)
    case("data_nan_train", train("{t}/x.npy"), npy("x.npy", good_inputs(40) * np.where(
        np.arange(40)[:, None, None, None] == 5, np.nan, 1).astype(np.float32)),
         match=NONFINITE, category=cat)
    case("weights_nan_safetensors", margin("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", nan=True), match=NONFINITE, category=cat)
    case("weights_nan_legacy", margin("{t}/m.rcert"), legacy("m.rcert", nan=True),
         match=NONFINITE, category=cat)
    case("weights_nan_state_dict", margin("{t}/sd.pt", "--arch", "{t}/arch.json"),
         state_dict(nan=True), match=NONFINITE, category=cat)
    case("weights_nan_inspect", inspect("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", nan=True), match=NONFINITE, category=cat)
    case("recommended_r_nan_safetensors", margin("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", edit=lambda h: h.update(recommended_r=float("nan"))),
         match=r"recommended|\bnan\b", category=cat)
    case("recommended_r_nan_legacy", margin("{t}/m.rcert"),
         legacy("m.rcert", edit=lambda h: h.update(recommended_r=float("nan"))),
         match=r"recommended|\bnan\b", category=cat)

    # ============================================================== bad options
    cat = "bad options"
    options = [
        ("n_samples_huge", ("--n-samples", "1000000000000"), r"n-samples|n_samples"),
        ("n_samples_zero", ("--n-samples", "0"), r"n-samples|n_samples"),
        ("seed_negative", ("--seed", "-1"), r"seed"),
        ("seed_2_64", ("--seed", "18446744073709551616"), r"seed"),
        ("seed_2_70", ("--seed", str(2**70)), r"seed"),
        ("r_nan", ("--r", "nan"), r"--r\b|\br\b"),
        ("r_negative", ("--r", "-1"), r"--r\b|\br\b"),
        ("m_above_one", ("--m", "1.5"), r"--m\b|\bm\b"),
        ("alpha_zero", ("--alpha", "0"), r"alpha"),
        ("memory_mb_zero", ("--memory-mb", "0"), r"memory"),
        ("limit_zero", ("--limit", "0"), r"limit"),
        ("device_cuda", ("--device", "cuda"), r"cuda"),
        ("allow_unknown", ("--allow", "everything"), r"allow|everything|choice"),
        ("unknown_option", ("--bogus", "1"), r"bogus|no such option"),
        ("data_unknown_dataset", ("--data", "nope:test"), r"nope|dataset"),
        ("data_shape_does_not_fit", ("--data", "dsprites:test:n=4:res=16"),
         r"shape|expects"),
    ]
    for id, extra, match in options:
        case(f"margin_{id}", margin(M, *extra), match=match, category=cat)
    empirical = [
        ("n_check_zero", ("--n-check", "0"), r"n.check"),
    ]
    for id, extra, match in empirical:
        case(f"margin_empirical_{id}", margin(M, "--empirical", *extra), match=match,
             category=cat)
    for id, value in (("negative", "-1"),):
        case(f"attack_L_{id}", attack(M, "--L", value), match=r"\bL\b|--L", category=cat)
    for id, value in (("nan", "nan,1"),):
        case(f"curve_radii_{id}", curve(M, "--radii", value), match=r"radii|rho",
             category=cat)
    case("report_n_samples_huge", report(M, extra=("--n-samples", "1000000000000")),
         match=r"n-samples|n_samples", category=cat)
    case("inspect_device_cuda", inspect(M, "--device", "cuda"), match=r"cuda", category=cat)
    case("no_command", (), match=r"command", category=cat)
    case("env_max_file_mb_bad", margin(M), match=r"RCERT_MAX_FILE_MB", category=cat,
         env={"RCERT_MAX_FILE_MB": "lots"})

    # ============================================================== rcert check configs
    cat = "check configs"

    def bad_config(id, setup, match):
        case(id, check(), setup, match=match, category=cat)

    bad_config("check_not_toml", writes("rcert.toml", "[[model]\npath ="), r"TOML")
    bad_config("check_no_model", writes("rcert.toml", "[run]\ndevice = 'cpu'\n"),
               r"model")
    bad_config("check_unknown_key", toml_config("", model=(
        f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\nradius = 1\n')),
        r"radius|unknown key")
    bad_config("check_r_nan", toml_config(model=(
        f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\nr = nan\n')), r"\br\b")
    bad_config("check_n_samples_huge", toml_config(model=(
        f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\ndata = "good.npy"\n'
        'limit = 2\nn_samples = 1000000000000\n')), r"n_samples|n-samples")
    bad_config("check_second_model_missing", toml_config(
        '[[model]]\npath = "nope.safetensors"\n'), r"nope\.safetensors|exist")
    bad_config("check_fraction_above_one", toml_config(
        "[thresholds]\nmin_certified_fraction = 2\n"), r"min_certified_fraction")
    bad_config("check_violations_without_empirical", toml_config(
        "[thresholds]\nmax_violations = 0\n"), r"empirical")

    # ============================================================== checkpoints
    cat = "damaged checkpoints"

    def bad_ckpt(id, name, setup, match, *, commands=("margin",)):
        for command in commands:
            argv = {"margin": margin("{t}/" + name), "inspect": inspect("{t}/" + name),
                    "convert": convert("{t}/" + name)}[command]
            suffix = "" if command == "margin" else f"_{command}"
            case(f"ckpt_{id}{suffix}", argv, setup, match=match, category=cat)

    every = ("margin", "inspect", "convert")

    def truncate(name, fraction, build):
        def run(t):
            build(t)
            path = t / name
            data = path.read_bytes()
            path.write_bytes(data[:int(len(data) * fraction)])
        return run

    def flip(name, build, at=-10):
        def run(t):
            build(t)
            path = t / name
            data = bytearray(path.read_bytes())
            data[at] ^= 0xFF
            path.write_bytes(bytes(data))
        return run

    good_st = lambda t: save_model(t, "m.safetensors")  # noqa: E731
    bad_ckpt("zero_bytes_safetensors", "m.safetensors", writes("m.safetensors", b""),
             r"empty", commands=every)
    bad_ckpt("truncated_safetensors", "m.safetensors", truncate("m.safetensors", 0.5, good_st),
             r"truncated|corrupt")
    bad_ckpt("truncated_legacy", "m.rcert", truncate("m.rcert", 0.5, legacy("m.rcert")),
             r"truncated|corrupt", commands=("convert",))
    bad_ckpt("random_bytes", "m.safetensors",
             writes("m.safetensors", np.random.default_rng(0).bytes(4096)),
             r"not an rcert|unknown|not a model|corrupt|format", commands=("margin", "inspect"))
    bad_ckpt("renamed_png", "m.safetensors", writes("m.safetensors", PNG),
             r"not an rcert|unknown|not a model|PNG|format", commands=("margin", "inspect"))
    bad_ckpt("tensor_bytes_flipped", "m.safetensors", flip("m.safetensors", good_st),
             r"SHA-256|corrupt|checksum")
    bad_ckpt("safetensors_without_rcert_metadata", "m.safetensors",
             lambda t: write(t, "m.safetensors", st_save(dict(tiny_vae().state_dict()))),
             r"metadata|architecture|--arch")
    bad_ckpt("legacy_frame_version_2", "m.rcert",
             lambda t: write(t, "m.rcert", b"RCERTCKP" + struct.pack("<IQ", 2, 2) + b"{}"),
             r"version")
    case("ckpt_symlink_loop", margin("{t}/loop.safetensors"),
         lambda t: os.symlink("loop.safetensors", t / "loop.safetensors"),
         match=r"link|loop", category=cat)

    # ============================================================== foreign models
    cat = "foreign models"
    case("foreign_state_dict_without_arch", margin("{t}/sd.pt"), state_dict(),
         match=r"--arch|--factory|--library|how to build", category=cat)
    case("foreign_arch_does_not_fit", margin("{t}/sd.pt", "--arch", "{t}/a8.json"),
         _all(state_dict(), arch_json("a8.json", latent_dim=8)),
         match=r"does not fit|missing|shape", category=cat)
    case("foreign_arch_no_arch_key", margin("{t}/sd.pt", "--arch", "{t}/a.json"),
         _all(state_dict(), writes("a.json", json.dumps({"latent_dim": 4}))),
         match=r"no architecture|arch =|'arch'", category=cat)
    case("foreign_arch_with_rcert_checkpoint", margin(M, "--arch", "{t}/arch.json"),
         arch_json(), match=r"describes itself|--arch", category=cat)
    factory_src = ("import torch\n"
                   "def boom(**kw):\n    raise ValueError('bad width')\n"
                   "def not_module(**kw):\n    return 42\n")
    project = _all(state_dict(), writes("mypkg/__init__.py", ""),
                   writes("mypkg/models.py", factory_src))
    case("foreign_factory_raises", margin("{t}/sd.pt", "--factory", "mypkg.models:boom"),
         project, match=r"bad width|factory", category=cat)
    case("foreign_library_pytorch_vae_wrong_layout",
         margin("{t}/sd.pt", "--library", "pytorch-vae"), state_dict(),
         match=r"VanillaVAE|PyTorch-VAE|fc_mu|does not fit|missing", category=cat)
    case("foreign_lightning_without_state_dict", margin("{t}/last.ckpt"),
         writes("last.ckpt", torch_bytes({"epoch": 3, "pytorch-lightning_version": "1.5.6"})),
         match=r"state dict", category=cat)
    case("foreign_beta_tcvae_laplace", margin("{t}/checkpt-0000.pth"),
         writes("checkpt-0000.pth", torch_bytes({"state_dict": {"w": torch.zeros(2)},
                                                 "args": btc_args(dist="laplace")})),
         match=r"laplace|Gaussian", category=cat)
    case("foreign_pythae_refused_model", margin("{t}/pyf"),
         pythae_folder(edit=edit_json("model_config.json", name="AEConfig")),
         match=r"deterministic|AE", category=cat)

    # ============================================================== data files
    cat = "data files"

    def bad_data(id, setup, match, spec="{t}/x.npy"):
        case(f"data_{id}", margin(M, data=spec), setup, match=match, category=cat)

    bad_data("npy_1d", npy("x.npy", np.zeros(64, np.float32)), r"shape|one sample per row")
    bad_data("npy_ints_out_of_range", npy("x.npy", np.full((2, 1, 8, 8), 300, np.int32)),
             r"0\.\.255|range|integers")
    bad_data("npy_random_bytes", writes("x.npy", np.random.default_rng(2).bytes(300)),
             r"cannot load|not a|npy|magic|corrupt")
    bad_data("npy_truncated", writes("x.npy", npy_bytes(good_inputs())[:-50]),
             r"truncated|cannot load|damaged|declares|holds")
    bad_data("npz_several_arrays", writes("x.npz", zipped({"a.npy": npy_bytes(good_inputs()),
                                                           "b.npy": npy_bytes(good_inputs())})),
             r"several|key", spec="{t}/x.npz")
    bad_data("npz_y_wrong_length", writes("x.npz", zipped({
        "x.npy": npy_bytes(good_inputs()), "y.npy": npy_bytes(np.arange(5))})),
        r"\by\b|labels", spec="{t}/x.npz")
    bad_data("npz_bad_crc", writes("x.npz", _bad_crc(zipped({"x.npy": npy_bytes(
        good_inputs())}))), r"CRC|corrupt|cannot read|damaged", spec="{t}/x.npz")
    case("data_path_with_colon", margin(M, data="{t}/a:b.npy"),
         npy("a:b.npy", good_inputs()), match=r"colon|':'|separat|unexpected item",
         category=cat)

    # ============================================================== output files
    cat = "output files"
    case("output_missing_folder", margin(M, "--output", "{t}/nope/result.txt"),
         match=r"nope|folder|exist", category=cat)
    case("output_onto_folder", margin(M, "--output", "{t}/report"),
         match=r"folder|director", category=cat)
    case("output_symlink_to_dev_null", margin(M, "--output", "{t}/null.txt"),
         lambda t: os.symlink("/dev/null", t / "null.txt"),
         match=r"link|/dev/null|device|regular file", category=cat)
    case("output_name_too_long", margin(M, "--output", "{t}/" + "x" * 300 + ".txt"),
         match=r"too long", category=cat)
    case("output_kept_when_run_fails_late", margin(M, data="{t}/x.npy"),
         npy("x.npy", nan_x), match=NONFINITE, category=cat)
    # A link made like /dev/stdout, in the case's folder: the system's own would be
    # replaced by a regression run as root (rcert 0.3.0 did so).
    case("output_dev_stdout", margin(M, "--output", "{t}/stdout"),
         lambda t: os.symlink("/proc/self/fd/1", t / "stdout"), match=r"stdout",
         category=cat)
    case("output_onto_the_model", margin("{t}/m.safetensors", "--output",
                                         "{t}/m.safetensors"),
         lambda t: save_model(t, "m.safetensors"),
         match=r"is the model this run reads.*would destroy it", category=cat)
    case("plot_out_symlink_to_dev_null", plot("{t}/r.json", out="{t}/null.png"),
         _all(result_file("r.json", margin_doc),
              lambda t: os.symlink("/dev/null", t / "null.png")),
         match=r"link|/dev/null|device|regular file", category=cat)
    case("train_out_symlink_to_dev_null", train("{t}/x.npy", out="{t}/null.safetensors"),
         _all(npy("x.npy", good_inputs(40)),
              lambda t: os.symlink("/dev/null", t / "null.safetensors")),
         match=r"link|/dev/null|device|regular file", category=cat)
    case("report_out_is_a_file", ("report", "--model", M, "--data", GOOD, "--out",
                                   "{t}/result.txt", *FAST),
         match=r"is a file|not a folder|director", category=cat)
    case("check_out_is_a_file", ("check", "{t}/rcert.toml", "--out", "{t}/result.txt",
                                 "--quiet"), toml_config(),
         match=r"is a file|not a folder|director", category=cat)
    case("report_second_model_bad", report(M, "{t}/nope.safetensors"),
         match=r"nope\.safetensors|exist", category=cat)
    case("convert_onto_itself", convert("{t}/m.safetensors", "{t}/m.safetensors"),
         lambda t: save_model(t, "m.safetensors"), match=r"itself", category=cat)
    case("convert_onto_hard_link", convert("{t}/m.rcert", "{t}/same.rcert"),
         _all(legacy("m.rcert"), lambda t: os.link(t / "m.rcert", t / "same.rcert")),
         match=r"itself|same", category=cat)
    case("convert_dst_symlink_to_dev_null", convert("{t}/m.rcert", "{t}/null.safetensors"),
         _all(legacy("m.rcert"), lambda t: os.symlink("/dev/null", t / "null.safetensors")),
         match=r"link|/dev/null|device|regular file", category=cat)
    case("convert_src_torch_save", convert("{t}/sd.pt"), state_dict(),
         match=r"torch\.save|not an rcert|pickle", category=cat)

    # ============================================================== train with bad input
    cat = "train with bad input"
    many = npy("x.npy", good_inputs(40))
    trains = [
        ("test_split", train("digits:test"), None, r"test split"),
        ("one_row", train("{t}/x.npy"), npy("x.npy", good_inputs(1)), r"too few|inputs"),
        ("vectors_conv", train("{t}/x.npy", "--arch", "conv"),
         npy("x.npy", np.random.default_rng(0).random((40, 64)).astype(np.float32)),
         r"conv|image|shape|channels"),
        ("epochs_zero", train("{t}/x.npy", "--epochs", "0"), many, r"epochs"),
        ("beta_zero", train("{t}/x.npy", "--beta", "0"), many, r"beta"),
        ("hidden_huge", train("{t}/x.npy", "--hidden", "100000000,100000000"), many,
         r"hidden|parameters|too (big|large)|widths"),
        ("data_out_of_range", train("{t}/x.npy"), npy("x.npy", good_inputs(40) * 255),
         r"range|rescale|bernoulli|\[0, 1\]"),
    ]
    for id, argv, setup, match in trains:
        case(f"train_{id}", argv, setup, match=match, category=cat)

    # ============================================================== control characters
    cat = "control characters in names"
    case("newline_in_model_path", margin("{t}/a\nb.safetensors"), match=r"exist",
         category=cat)
    case("newline_in_existing_bad_model", margin("{t}/bad\nname.safetensors"),
         writes("bad\nname.safetensors", b"garbage" * 10),
         match=r"not a model file|not an rcert|unknown", category=cat)
    case("newline_in_data_spec", margin(M, data="digits:test\nfoo"),
         match=r"split|unexpected|item", category=cat)


#: Model cases that ``rcert inspect`` gets too: it reads models as the certifying commands do.
INSPECTED = ("pickle_lightning_ckpt_callbacks", "pickle_pythae_model_pt",
             "pickle_beta_tcvae_args", "ckpt_truncated_safetensors",
             "ckpt_tensor_bytes_flipped", "ckpt_legacy_frame_version_2",
             "ckpt_safetensors_without_rcert_metadata", "weights_nan_legacy",
             "recommended_r_nan_safetensors", "deep_json_safetensors_metadata",
             "safetensors_huge_header_length", "devzero_as_model", "dir_as_model")


def _inspected() -> None:
    """``inspect_<id>``: ``rcert inspect`` on the model of each case in :data:`INSPECTED`."""
    for c in [c for c in CASES if c.id in INSPECTED]:
        model = c.argv[c.argv.index("--model") + 1]
        extra = ("--arch", c.argv[c.argv.index("--arch") + 1]) if "--arch" in c.argv else ()
        case(f"inspect_{c.id}", ("inspect", model, *extra), c.setup, match=c.match,
             category="inspect with bad models")


def _bad_crc(raw: bytes) -> bytes:
    """A zip whose member's bytes no longer match its CRC (one byte flipped in the data)."""
    data = bytearray(raw)
    data[120] ^= 0xFF
    return bytes(data)


_build_all()
_inspected()

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})

