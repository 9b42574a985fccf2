import hashlib
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcert.errors import RcertError
from rcert.models import checkpoint
from rcert.models.adapters import wrap
from rcert.models.nets import build_model


def _rand(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Uniform test data from a seeded generator (reproducible under -k)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), **kw)


def _randn(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Standard normal test data from a seeded generator (reproducible under -k)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), **kw)


MAGIC_FRAME = 8 + 4 + 8


def _model(arch="mlp", **kw):
    layers = {"hidden": [6]} if arch == "mlp" else {"channels": [2]}
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
        torch.manual_seed(0)
        return build_model(arch, input_shape=[1, 4, 4], latent_dim=2,
                           **{**layers, **kw}).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.rcert"
    checkpoint.save(
        _model(),
        path,
        data="synthetic:train",
        metrics={"best_val_elbo": -12.5, "history": [{"epoch": 1}]},
        recommended_r=0.25,
        extra={"note": "test"},
    )
    return path, path.read_bytes()


def _write(tmp_path, raw: bytes, name="bad.rcert"):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def _split(raw: bytes):
    """(header dict, payload bytes) of a checkpoint's raw bytes."""
    (n,) = struct.unpack("<Q", raw[12:20])
    return json.loads(raw[MAGIC_FRAME : MAGIC_FRAME + n]), raw[MAGIC_FRAME + n :]


def _join(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return b"RCERTCKP" + struct.pack("<IQ", 1, len(text)) + text + payload


@pytest.mark.parametrize(
    "arch,kw",
    [
        ("mlp", {}),
        ("mlp", {"sigma_mode": "fixed", "fixed_sigma": 0.2, "likelihood": "gaussian"}),
        ("conv", {"sigma_mode": "floor", "tau": 0.01, "activation": "elu"}),
    ],
)
def test_round_trip_gives_identical_outputs(tmp_path, arch, kw):
    model = _model(arch, **kw)
    path = tmp_path / "m.rcert"
    checkpoint.save(model, path)
    loaded = checkpoint.load(path)
    assert not loaded.training
    assert loaded.config() == model.config()
    x = _rand(5, 1, 4, 4)
    for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
        assert torch.equal(a, b)
    z = _randn(5, 2)
    assert torch.equal(model.decode(z), loaded.decode(z))


def test_float64_model_round_trips_in_float64(tmp_path):
    model = _model().double()
    checkpoint.save(model, tmp_path / "m.rcert")
    loaded = checkpoint.load(tmp_path / "m.rcert")
    assert next(loaded.parameters()).dtype == torch.float64
    x = _rand(2, 1, 4, 4, dtype=torch.float64)
    assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])


def test_meta_and_header(saved):
    path, _ = saved
    loaded = checkpoint.load(path)
    header = checkpoint.read_header(path)
    assert loaded.meta == {k: v for k, v in header.items() if k != "tensors"}
    assert "tensors" not in loaded.meta
    assert header["format"] == "rcert-checkpoint"
    assert header["format_version"] == 1
    assert header["model"] == _model().config()
    assert header["data"] == "synthetic:train"
    assert header["metrics"] == {"best_val_elbo": -12.5, "history": [{"epoch": 1}]}
    assert header["recommended_r"] == 0.25
    assert header["extra"] == {"note": "test"}
    assert isinstance(header["rcert_version"], str) and header["rcert_version"]
    entry = header["tensors"]["mu_head.weight"]
    assert entry["dtype"] == "float32" and entry["shape"] == [2, 6] and entry["nbytes"] == 48


def test_resave_is_byte_identical(tmp_path, saved):
    path, raw = saved
    kwargs = {
        "data": "synthetic:train",
        "metrics": {"history": [{"epoch": 1}], "best_val_elbo": -12.5},  # other key order
        "recommended_r": 0.25,
        "extra": {"note": "test"},
    }
    checkpoint.save(_model(), tmp_path / "again.rcert", **kwargs)
    checkpoint.save(checkpoint.load(path), tmp_path / "reloaded.rcert", **kwargs)
    assert (tmp_path / "again.rcert").read_bytes() == raw
    assert (tmp_path / "reloaded.rcert").read_bytes() == raw


class Exploit:
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    Exploit.marker = str(marker)
    path = _write(tmp_path, pickle.dumps(Exploit(), protocol=4), "evil.pkl")
    # Proves the payload is live: unpickling it would create the marker.
    with pytest.raises(RcertError, match=r"pickle/torch\.save file; rcert never unpickles"):
        checkpoint.load(path)
    with pytest.raises(RcertError, match="pickle"):
        checkpoint.read_header(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes()).close()
    assert marker.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_file_gets_the_pickle_message(tmp_path, zipfile):
    path = tmp_path / "model.pt"
    torch.save(_model().state_dict(), path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(RcertError, match=r"is a pickle/torch\.save file.*rcert\.wrap"):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"", "is empty"),
        (b"RCERT", "truncated"),
        (b"RCERTCKP\x01\x00", "truncated"),
        (b"hello world, this is not a checkpoint", "not an rcert checkpoint"),
        (b'{"format": "rcert-checkpoint"}', "not an rcert checkpoint"),
        (b"RCERTCKP" + struct.pack("<IQ", 2, 2) + b"{}", "format version 2.*upgrade rcert"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 2**62) + b"{}", "truncated"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 5) + b"{bad}", "corrupt JSON header"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 2) + b"\xff\xfe", "corrupt JSON header"),
        (b"RCERTCKP" + struct.pack("<IQ", 1, 2) + b"[]", "not an rcert checkpoint header"),
    ],
)
def test_foreign_and_broken_frames(tmp_path, raw, match):
    path = _write(tmp_path, raw)
    with pytest.raises(RcertError, match=match) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(RcertError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path / "nope.rcert")
    with pytest.raises(RcertError, match="cannot read checkpoint"):
        checkpoint.read_header(tmp_path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_anywhere_raises_rcert_error(tmp_path, saved, cut):
    _, raw = saved
    path = _write(tmp_path, raw[: int(cut * len(raw))])
    with pytest.raises(RcertError, match=r"truncated|empty"):
        checkpoint.load(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_byte_corruption_loads_or_raises_rcert_error(tmp_path, saved, data):
    _, raw = saved
    i = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    path = _write(tmp_path, raw[:i] + bytes([value]) + raw[i + 1 :])
    try:
        checkpoint.load(path)
    except RcertError as exc:
        assert "\n" not in str(exc)


def test_flipped_payload_byte_fails_the_checksum(tmp_path, saved):
    _, raw = saved
    corrupt = bytearray(raw)
    corrupt[-3] ^= 0x01
    with pytest.raises(RcertError, match="SHA-256"):
        checkpoint.load(_write(tmp_path, bytes(corrupt)))


def test_trailing_bytes_are_refused(tmp_path, saved):
    _, raw = saved
    with pytest.raises(RcertError, match="unexpected bytes"):
        checkpoint.load(_write(tmp_path, raw + b"\0"))


def _edited(tmp_path, saved, edit):
    header, payload = _split(saved[1])
    edit(header)
    return _write(tmp_path, _join(header, payload))


def test_wrong_shapes_are_refused(tmp_path, saved):
    def edit(h):
        h["tensors"]["mu_head.weight"]["shape"] = [3, 4]  # same byte count, wrong shape

    with pytest.raises(RcertError, match=r"mu_head\.weight.*expected \[2, 6\]"):
        checkpoint.load(_edited(tmp_path, saved, edit))


def test_architecture_mismatch_is_refused(tmp_path, saved):
    def edit(h):
        h["model"]["latent_dim"] = 3

    with pytest.raises(RcertError, match="does not match its architecture"):
        checkpoint.load(_edited(tmp_path, saved, edit))


def test_missing_and_unexpected_tensors_are_refused(tmp_path, saved):
    def edit(h):
        h["tensors"]["extra.weight"] = h["tensors"].pop("mu_head.bias")

    with pytest.raises(RcertError, match=r"missing tensors \['mu_head.bias'\].*'extra.weight'"):
        checkpoint.load(_edited(tmp_path, saved, edit))


def test_unsupported_dtype_is_refused(tmp_path, saved):
    def edit(h):
        h["tensors"]["mu_head.bias"]["dtype"] = "complex64"

    with pytest.raises(RcertError, match="unsupported dtype 'complex64'"):
        checkpoint.load(_edited(tmp_path, saved, edit))


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h["model"].update(arch="transformer"),
        lambda h: h["model"].pop("arch"),
        lambda h: h["model"].update(input_shape=[10**30]),
        lambda h: h.pop("sha256"),
        lambda h: h.update(format_version=2),
        lambda h: h["tensors"]["mu_head.bias"].update(offset=-1),
        lambda h: h["tensors"]["mu_head.bias"].update(nbytes=4),
    ],
)
def test_corrupt_header_fields_are_refused(tmp_path, saved, edit):
    with pytest.raises(RcertError):
        checkpoint.load(_edited(tmp_path, saved, edit))


def test_int64_and_float64_tensors_are_read(tmp_path, saved):
    header, payload = _split(saved[1])
    weight = torch.arange(12, dtype=torch.int64).reshape(2, 6)
    header["tensors"]["mu_head.weight"] = {
        "dtype": "int64",
        "shape": [2, 6],
        "offset": len(payload),
        "nbytes": 96,
    }
    payload += weight.numpy().astype("<i8").tobytes()
    header["tensors"]["mu_head.bias"].update(dtype="float64", nbytes=16, offset=len(payload))
    payload += torch.tensor([0.5, -1.5], dtype=torch.float64).numpy().astype("<f8").tobytes()
    # The old float32 bytes of both tensors stay in the payload, unreferenced.
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    loaded = checkpoint.load(_write(tmp_path, _join(header, payload)))
    assert torch.equal(loaded.mu_head.weight, weight.float())
    assert torch.equal(loaded.mu_head.bias, torch.tensor([0.5, -1.5]))


def test_only_rcert_architectures_can_be_saved(tmp_path):
    with pytest.raises(RcertError, match="only rcert architectures can be saved"):
        checkpoint.save(wrap(_model()), tmp_path / "w.rcert")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"metrics": {"loss": float("nan")}}, "not plain JSON"),
        ({"extra": {"obj": object()}}, "not plain JSON"),
        ({"metrics": [1, 2]}, "metrics must be a dict"),
        ({"data": 3}, "data must be a string"),
        ({"recommended_r": -1.0}, "recommended_r"),
    ],
)
def test_bad_metadata_raises_rcert_error(tmp_path, kwargs, match):
    with pytest.raises(RcertError, match=match):
        checkpoint.save(_model(), tmp_path / "m.rcert", **kwargs)
    assert not list(tmp_path.iterdir())


def test_numpy_and_tensor_scalars_in_metrics_are_stored_as_numbers(tmp_path):
    checkpoint.save(
        _model(), tmp_path / "m.rcert", metrics={"a": np.float32(0.5), "b": torch.tensor(2)}
    )
    assert checkpoint.read_header(tmp_path / "m.rcert")["metrics"] == {"a": 0.5, "b": 2}


def test_unsupported_model_dtype_is_refused(tmp_path):
    with pytest.raises(RcertError, match=r"model\.float"):
        checkpoint.save(_model().to(torch.bfloat16), tmp_path / "m.rcert")


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_leaves_existing_file_and_no_temp_file(tmp_path, saved, monkeypatch, failure):
    path = _write(tmp_path, saved[1], "model.rcert")
    written = []

    def fail_after_writing(fd):
        written.append(os.fstat(fd).st_size)
        raise failure

    monkeypatch.setattr(checkpoint.os, "fsync", fail_after_writing)
    expected = RcertError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected, match="No space left" if expected is RcertError else None):
        checkpoint.save(_model("conv"), path)
    assert written and written[0] > 0  # the failure struck after bytes had been written
    assert path.read_bytes() == saved[1]
    assert [p.name for p in tmp_path.iterdir()] == ["model.rcert"]


def test_save_into_missing_folder_raises_rcert_error(tmp_path):
    with pytest.raises(RcertError, match=r"cannot write .*does not exist"):
        checkpoint.save(_model(), tmp_path / "no" / "such" / "m.rcert")


@pytest.mark.parametrize("device", ["nonsense", "cuda:7", "xla"])
def test_bad_or_unavailable_device_raises_rcert_error(saved, device):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(RcertError, match="onto device"):
        checkpoint.load(saved[0], device=device)
