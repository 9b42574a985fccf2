"""Files the cases read, made by the test: bytes written into the case folder, data arrays
(``.npy``, ``.npz``, IDX, CIFAR-10 batches), special files (FIFOs, sockets, links to devices,
sparse files, deep documents), and result documents and ``rcert check`` configs.

A helper either makes bytes or returns a *setup*: a function of the case folder ``t``.
Whatever is costly to make is built once per session under :data:`TEMPLATES`.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import MODELS, case, chain, check


def write(t: Path, name: str, data: bytes | str) -> Path:
    """Write ``data`` to ``t/name``, making its folder; return the path."""
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


# ------------------------------------------------------------------ shared templates

LOCK = threading.Lock()
#: Where the templates are built once per session (set by the runner).
TEMPLATES: list[Path] = []


def template(name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``TEMPLATES[0]/name``, made by ``build(folder)`` on first use."""
    with LOCK:
        path = TEMPLATES[0] / name
        if not path.exists():
            tmp = TEMPLATES[0] / f".{name}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            build(tmp)
            tmp.rename(path)
        return path


# ------------------------------------------------------------------ data arrays


def good_inputs(n: int = 2, shape=(1, 8, 8), seed: int = 0) -> np.ndarray:
    """``n`` inputs the digits model takes: float32 in [0, 1)."""
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def spoiled(value: float, at: tuple[int, ...], n: int = 4) -> np.ndarray:
    """:func:`good_inputs` with the one value at ``at`` replaced by ``value``."""
    x = good_inputs(n)
    x[at] = value
    return x


#: Four good inputs but for one NaN.
NAN_X = spoiled(np.nan, (1, 0, 3, 3))


def npy(name: str, array: np.ndarray | Callable[[], np.ndarray], **kw):
    """A setup that saves ``array`` (or ``array()``) as ``t/name`` with ``np.save``."""
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


def npy_bytes(array: np.ndarray, **kw) -> bytes:
    """The bytes ``np.save`` writes of ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, array, **kw)
    return buffer.getvalue()


def zipped(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    """A zip archive (an ``.npz`` when the members are ``.npy``) of ``members``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def bad_crc(raw: bytes) -> bytes:
    """A zip whose member's bytes no longer match its CRC (one byte flipped in the data)."""
    data = bytearray(raw)
    data[120] ^= 0xFF
    return bytes(data)


# ------------------------------------------------------------------ IDX and CIFAR-10


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


def _build_zero_member(folder: Path) -> None:
    # One gzip member of 64 MiB of zeros; gzip readers concatenate members.
    (folder / "zeros.gz").write_bytes(gzip.compress(bytes(64 << 20), compresslevel=9))


def gz_idx_bomb(name: str = "mn/t10k-images-idx3-ubyte.gz", members: int = 24):
    """An IDX whose header declares 10 images of 28x28 (7,840 bytes), gzipped, followed by
    ``members`` gzip members of 64 MiB of zeros each: 1.5 GiB from a file of ~1.6 MB."""
    def run(t: Path) -> None:
        zeros = (template("zeros", _build_zero_member) / "zeros.gz").read_bytes()
        path = t / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(gzip.compress(idx((10, 28, 28))))
            for _ in range(members):
                f.write(zeros)
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
    """A pickled CIFAR-10 batch dict (default: 4 blank images, labels 1..4)."""
    data = np.zeros((4, 3072), np.uint8) if data is None else data
    labels = [1, 2, 3, 4] if labels is None else labels
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"testing"},
                        protocol=protocol)


def pickled_bytes_bomb() -> bytes:
    """A protocol-4 pickle whose BINBYTES8 declares 2**40 bytes, and holds 8."""
    return b"\x80\x04" + b"\x8e" + struct.pack("<Q", 2**40) + b"\0" * 8 + b"."


# ------------------------------------------------------------------ special files

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


def symlink(name: str, target: str):
    """A setup that makes ``t/name`` a symbolic link to ``target``."""
    def run(t: Path) -> None:
        os.symlink(target, t / name)
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
    """``n`` nested brackets: a JSON (or TOML) document too deep to parse recursively."""
    return open_ * n + close * n


# ------------------------------------------------------------------ results and configs


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
    """A fresh copy of the ``rcert margin`` result document (see :func:`_margin_document`)."""
    with LOCK:
        return json.loads(_margin_document())


def curve_doc() -> dict:
    """A hand-made ``rcert curve`` result: two inputs at two radii."""
    rows = [{"index": i, "rho": rho, "p_hat": 0.9 - rho / 2, "p_lower": 0.8 - rho / 2,
             "p_upper": 0.95 - rho / 2} for i in (0, 1) for rho in (0.0, 0.5)]
    return {"schema_version": 1, "kind": "curve", "config": {"r": 0.75, "m": 0.5},
            "model": {"path": "x.safetensors"}, "summary": {}, "inputs": rows}


def report_doc(models: Any = None) -> dict:
    """An ``rcert report`` results.json of ``models`` (default: the digits model's margin)."""
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
    case(id, check(), chain(made, toml_config(baseline="base.json")), match=match,
         category=category)
