"""Legacy checkpoints (the RCERTCKP frame, format version 1) still load, convert to
safetensors with the same tensors and metadata, and are refused with one line when broken
(damage both formats share, truncation and flipped or added bytes: test_checkpoint.py).

The files are written by tests/conftest.py's :func:`write_legacy`, which follows the layout
that rcert/models/legacy.py documents, independently of rcert's reader."""

import hashlib
import json
import struct

import pytest
import safetensors.torch
import torch
from conftest import legacy_frame, legacy_header, write_legacy

from rcert.errors import RcertError
from rcert.models import checkpoint
from rcert.models.architectures import build_model

META = {"data": "synthetic:train", "metrics": {"best_val_elbo": -12.5}, "recommended_r": 0.25,
        "extra": {"note": "legacy"}}


def _model(**kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("mlp", input_shape=[1, 4, 4], latent_dim=2, hidden=[6], **kw).eval()


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    path = tmp_path_factory.mktemp("legacy") / "model.rcert"
    model = _model()
    return path, write_legacy(path, model.state_dict(), legacy_header(model, META))


def _write(tmp_path, raw: bytes, name="bad.rcert"):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def _split(raw: bytes):
    (n,) = struct.unpack("<Q", raw[12:20])
    return json.loads(raw[20 : 20 + n]), raw[20 + n :]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_legacy_file_loads_the_same_model(tmp_path, dtype):
    model = _model().to(dtype)
    path = tmp_path / "m.rcert"
    raw = write_legacy(path, model.state_dict(), legacy_header(model, META))
    loaded = checkpoint.load(path)
    assert not loaded.training and next(loaded.parameters()).dtype == dtype
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=dtype)
    for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
        assert torch.equal(a, b)
    header, payload = _split(raw)
    assert loaded.meta == {k: v for k, v in header.items() if k != "tensors"}
    assert loaded.meta["sha256"] == hashlib.sha256(payload).hexdigest()
    assert checkpoint.read_header(path) == loaded.meta
    assert checkpoint.is_native(path)


def test_convert_keeps_tensors_and_metadata(tmp_path, legacy):
    src, raw = legacy
    dst = tmp_path / "model.safetensors"
    checkpoint.convert(src, dst)
    assert src.read_bytes() == raw
    old, new = checkpoint.read_header(src), checkpoint.read_header(dst)
    assert new["format_version"] == 2 and new["rcert_version"] == "0.1.0"
    assert {k: v for k, v in new.items() if k not in ("format_version", "sha256")} == {
        k: v for k, v in old.items() if k not in ("format_version", "sha256")}
    tensors = safetensors.torch.load_file(dst)
    expected = _model().state_dict()
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    assert new["sha256"] == checkpoint.tensor_digest(expected)
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(checkpoint.load(dst).encode(x)[1], _model().encode(x)[1])
    # A native file converts to the same bytes.
    checkpoint.convert(dst, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == dst.read_bytes()


def test_convert_refuses_to_overwrite_its_source(tmp_path, legacy):
    path = _write(tmp_path, legacy[1], "m.rcert")
    (tmp_path / "link.rcert").symlink_to(path)
    for dst in (path, tmp_path / "link.rcert", tmp_path / "." / "m.rcert"):
        with pytest.raises(RcertError, match="onto itself"):
            checkpoint.convert(path, dst)
    assert path.read_bytes() == legacy[1]


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"RCERT", "truncated"),
        (b"RCERTCKP\x01\x00", "truncated"),
        (b"RCERTCKP" + struct.pack("<IQ", 2, 2) + b"{}", "format version 2.*upgrade rcert"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 2**62) + b"{}", "truncated"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 5) + b"{bad}", "JSON header of .* is not valid JSON"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 2) + b"\xff\xfe", "corrupt JSON header"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 3) + b"NaN", "JSON header of .* holds NaN"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 2) + b"[]", "not an rcert checkpoint header"),
    ],
)
def test_broken_frames(tmp_path, raw, match):
    path = _write(tmp_path, raw)
    with pytest.raises(RcertError, match=match) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _edited(tmp_path, legacy, edit):
    header, payload = _split(legacy[1])
    edit(header)
    return _write(tmp_path, legacy_frame(header, payload))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda h: h["tensors"]["mu_head.weight"].update(shape=[3, 4]), r"expected \[2, 6\]"),
        (lambda h: h["model"].update(latent_dim=3), "does not match its architecture"),
        (lambda h: h["tensors"].update({"extra.weight": h["tensors"].pop("mu_head.bias")}),
         r"missing tensors \['mu_head.bias'\].*'extra.weight'"),
        (lambda h: h["tensors"]["mu_head.bias"].update(dtype="complex64"),
         "unsupported dtype 'complex64'"),
        (lambda h: h["tensors"]["mu_head.bias"].update(offset=-1), "corrupt entry"),
        (lambda h: h["tensors"]["mu_head.bias"].update(nbytes=4), "corrupt entry"),
        (lambda h: h.pop("tensors"), "bad or missing 'tensors'"),
        (lambda h: h.pop("sha256"), "bad or missing 'sha256'"),
        (lambda h: h.update(format_version=2), "format_version disagrees"),
        (lambda h: h["model"].update(arch="transformer"), "invalid model"),
    ],
)
def test_corrupt_headers_are_refused(tmp_path, legacy, edit, match):
    with pytest.raises(RcertError, match=match) as info:
        checkpoint.load(_edited(tmp_path, legacy, edit))
    assert "\n" not in str(info.value)


def test_int64_and_float64_tensors_are_read(tmp_path):
    model = _model()
    tensors = model.state_dict()
    tensors["mu_head.weight"] = torch.arange(12, dtype=torch.int64).reshape(2, 6)
    tensors["mu_head.bias"] = torch.tensor([0.5, -1.5], dtype=torch.float64)
    write_legacy(tmp_path / "m.rcert", tensors, legacy_header(model, META))
    loaded = checkpoint.load(tmp_path / "m.rcert")
    assert torch.equal(loaded.mu_head.weight, tensors["mu_head.weight"].float())
    assert torch.equal(loaded.mu_head.bias, torch.tensor([0.5, -1.5]))
