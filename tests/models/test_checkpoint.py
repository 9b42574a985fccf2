"""rcert's safetensors checkpoints: round trips, any safetensors tool reads them, the tensor
digest against an independent implementation of its definition, and hostile files refused
with one line; damage both formats share (truncation, flipped or added bytes) for legacy
files too (the rest of legacy files: tests/models/test_legacy.py)."""

import hashlib
import json
import math
import os
import pickle
import struct

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import legacy_header, write_legacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from rcert.errors import RcertError
from rcert.models import checkpoint
from rcert.models.adapters import wrap
from rcert.models.architectures import build_model

META = {"data": "synthetic:train", "metrics": {"best_val_elbo": -12.5, "history": [{"epoch": 1}]},
        "recommended_r": 0.25, "extra": {"note": "test"}}


def _rand(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Uniform test data from a seeded generator (reproducible under -k)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), **kw)


def _randn(*shape: int, seed: int = 0, **kw) -> torch.Tensor:
    """Standard normal test data from a seeded generator (reproducible under -k)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), **kw)


def _model(arch="mlp", **kw):
    layers = {"hidden": [6]} if arch == "mlp" else {"channels": [2]}
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
        torch.manual_seed(0)
        return build_model(arch, input_shape=[1, 4, 4], latent_dim=2,
                           **{**layers, **kw}).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    checkpoint.save(_model(), path, **META)
    return path, path.read_bytes()


def _write(tmp_path, raw: bytes, name="bad.safetensors"):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def _split(raw: bytes):
    """(safetensors table, rcert header, payload) of a checkpoint's bytes, parsed by hand."""
    (n,) = struct.unpack("<Q", raw[:8])
    table = json.loads(raw[8 : 8 + n])
    return table, json.loads(table["__metadata__"]["rcert"]), raw[8 + n :]


def _join(table: dict, header: dict, payload: bytes) -> bytes:
    table = {**table, "__metadata__": {"rcert": json.dumps(header)}}
    text = json.dumps(table).encode()
    return struct.pack("<Q", len(text)) + text + payload


def _edited(tmp_path, saved, edit):
    """The saved checkpoint after ``edit(table, header)`` changed its JSON in place."""
    table, header, payload = _split(saved[1])
    edit(table, header)
    return _write(tmp_path, _join(table, header, payload))


def _header() -> dict:
    """A valid rcert header for :func:`_model`, for files forged with other tensors."""
    return {"format": "rcert-checkpoint", "format_version": 2, "rcert_version": "0.0.0",
            "model": _model().config(), **META, "sha256": "not checked before the dtypes"}


def _reference_digest(path) -> str:
    """The documented tensor digest, computed from what safetensors itself reads."""
    names = {np.dtype("<f4"): "float32", np.dtype("<f8"): "float64", np.dtype("<i8"): "int64"}
    digest = hashlib.sha256()
    with safe_open(path, framework="np") as f:
        for name in sorted(f.keys()):
            array = f.get_tensor(name)
            shape = ",".join(map(str, array.shape))
            digest.update(name.encode() + b"\0" + names[array.dtype].encode() + b"\0"
                          + shape.encode() + b"\0" + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


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
    path = tmp_path / "m.safetensors"
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
    checkpoint.save(model, tmp_path / "m.safetensors")
    loaded = checkpoint.load(tmp_path / "m.safetensors")
    assert next(loaded.parameters()).dtype == torch.float64
    x = _rand(2, 1, 4, 4, dtype=torch.float64)
    assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])
    assert checkpoint.read_header(tmp_path / "m.safetensors")["sha256"] == _reference_digest(
        tmp_path / "m.safetensors")


def test_meta_and_header(saved):
    path, _ = saved
    loaded = checkpoint.load(path)
    header = checkpoint.read_header(path)
    assert loaded.meta == header
    assert set(header) == {"format", "format_version", "rcert_version", "model", "data",
                           "metrics", "recommended_r", "extra", "sha256"}
    assert header["format"] == "rcert-checkpoint"
    assert header["format_version"] == 2
    assert header["model"] == _model().config()
    assert {k: header[k] for k in META} == META
    assert isinstance(header["rcert_version"], str) and header["rcert_version"]


def test_any_safetensors_tool_reads_the_file(saved):
    path, _ = saved
    expected = _model().state_dict()
    tensors = safetensors.torch.load_file(path)
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        assert torch.equal(f.get_tensor("mu_head.weight"), expected["mu_head.weight"])
    assert list(metadata) == ["rcert"]  # one key: the bytes stay deterministic
    assert json.loads(metadata["rcert"]) == checkpoint.read_header(path)


def test_digest_matches_an_independent_reference(saved):
    path, _ = saved
    assert checkpoint.read_header(path)["sha256"] == _reference_digest(path)


def test_digest_does_not_depend_on_the_file_layout(tmp_path, saved):
    # The same tensors, stored in the reverse order in the payload, load with the same digest.
    table, header, payload = _split(saved[1])
    entries = [(k, v) for k, v in table.items() if k != "__metadata__"]
    moved, chunks, offset = {}, [], 0
    for name, entry in reversed(entries):
        start, end = entry["data_offsets"]
        chunks.append(payload[start:end])
        moved[name] = {**entry, "data_offsets": [offset, offset + end - start]}
        offset += end - start
    path = _write(tmp_path, _join(moved, header, b"".join(chunks)))
    assert path.read_bytes() != saved[1]
    loaded = checkpoint.load(path)
    x = _rand(3, 1, 4, 4)
    assert torch.equal(loaded.encode(x)[0], _model().encode(x)[0])


def test_resave_is_byte_identical(tmp_path, saved):
    path, raw = saved
    kwargs = {**META, "metrics": {"history": [{"epoch": 1}], "best_val_elbo": -12.5}}
    checkpoint.save(_model(), tmp_path / "again.safetensors", **kwargs)
    checkpoint.save(checkpoint.load(path), tmp_path / "reloaded.safetensors", **kwargs)
    assert (tmp_path / "again.safetensors").read_bytes() == raw
    assert (tmp_path / "reloaded.safetensors").read_bytes() == raw


def test_read_header_does_not_read_the_tensors(tmp_path, saved):
    corrupt = bytearray(saved[1])
    corrupt[-3] ^= 0x01
    path = _write(tmp_path, bytes(corrupt))
    assert checkpoint.read_header(path) == checkpoint.read_header(saved[0])
    with pytest.raises(RcertError, match="SHA-256"):
        checkpoint.load(path)


def test_model_card_hashes_the_whole_file(saved):
    path, raw = saved
    card = checkpoint.model_card(path, command="rcert train ...")
    assert card["sha256"] == hashlib.sha256(raw).hexdigest()
    assert card["checkpoint"] == "model.safetensors" and card["name"] == "model"
    assert card["architecture"] == _model().config() and card["command"] == "rcert train ..."
    assert (card["data"], card["recommended_r"]) == (META["data"], META["recommended_r"])


class Exploit:
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    Exploit.marker = str(marker)
    path = _write(tmp_path, pickle.dumps(Exploit(), protocol=4), "evil.pkl")
    with pytest.raises(RcertError, match=r"torch\.save file .*never unpickles"):
        checkpoint.load(path)
    with pytest.raises(RcertError, match="pickle"):
        checkpoint.read_header(path)
    assert not checkpoint.is_native(path)
    assert not marker.exists()
    # Proves the payload is live: unpickling it creates the marker.
    pickle.loads(path.read_bytes()).close()
    assert marker.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_file_points_to_the_foreign_loaders(tmp_path, zipfile):
    path = tmp_path / "model.pt"
    torch.save(_model().state_dict(), path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(RcertError, match=r"is a torch\.save file") as info:
        checkpoint.load(path)
    assert "rcert margin --model FILE" in str(info.value)
    assert "--arch, --factory or --library" in str(info.value)
    assert not checkpoint.is_native(path)


def test_safetensors_without_rcert_metadata_is_refused(tmp_path):
    for name, metadata in (("plain", None), ("other", {"format": "pt"})):
        path = tmp_path / f"{name}.safetensors"
        safetensors.torch.save_file(_model().state_dict(), path, metadata=metadata)
        with pytest.raises(RcertError, match=r"safetensors file without rcert metadata.*--arch"):
            checkpoint.load(path)
        assert not checkpoint.is_native(path)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"", "is empty"),
        (b"\x10\x00\x00", "truncated"),
        (b"hello world, this is not a checkpoint", "not an rcert checkpoint"),
        (b'{"format": "rcert-checkpoint"}', "not an rcert checkpoint"),
        (struct.pack("<Q", 2**63) + b'{"a": 1}', "header length 9223372036854775808 .*100 MB"),
        (struct.pack("<Q", 10**9) + b'{"a": 1}', "over the 100 MB limit"),
        (struct.pack("<Q", 9) + b'{"a": 1}', r"truncated \(it ends inside the safetensors"),
        (struct.pack("<Q", 5) + b"{bad}", "truncated or corrupt"),
        (struct.pack("<Q", 2) + b"{}", "without rcert metadata"),
    ],
)
def test_foreign_and_broken_files(tmp_path, raw, match):
    path = _write(tmp_path, raw)
    with pytest.raises(RcertError, match=match) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not checkpoint.is_native(path)


@pytest.mark.parametrize("device", [os.devnull, "/dev/zero"])
def test_devices_are_refused_by_their_type(device):
    with pytest.raises(RcertError, match=f"checkpoint {device} is a character device, not a "
                                         "regular file"):
        checkpoint.load(device)
    assert not checkpoint.is_native(device)


def test_missing_file_directory_and_fifo(tmp_path):
    with pytest.raises(RcertError, match=r"checkpoint .*nope\.safetensors does not exist"):
        checkpoint.load(tmp_path / "nope.safetensors")
    with pytest.raises(RcertError, match="is a folder, not a regular file"):
        checkpoint.read_header(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(RcertError, match=r"is a named pipe \(FIFO\), not a regular file"):
        checkpoint.load(tmp_path / "pipe")  # refused without blocking on the pipe
    assert not any(checkpoint.is_native(p) for p in (tmp_path, tmp_path / "nope",
                                                     tmp_path / "pipe"))


def test_a_checkpoint_over_the_file_limit_is_refused(saved, monkeypatch):
    monkeypatch.setenv("RCERT_MAX_FILE_MB", str(len(saved[1]) / 2 / 2**20))
    with pytest.raises(RcertError, match=r"more than the .* MB rcert reads.*RCERT_MAX_FILE_MB"):
        checkpoint.load(saved[0])


def test_is_native_for_checkpoints_even_when_their_payload_is_cut(tmp_path, saved):
    assert checkpoint.is_native(saved[0])
    assert checkpoint.is_native(_write(tmp_path, saved[1][:-10]))


def test_truncated_at_each_part(tmp_path, saved):
    _, raw = saved
    (n,) = struct.unpack("<Q", raw[:8])
    for cut in (1, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, len(raw) - 1):
        with pytest.raises(RcertError, match="truncated"):
            checkpoint.load(_write(tmp_path, raw[:cut]))


#: What loading says of a checkpoint of each format with a flipped payload byte, and with a
#: byte appended.
DAMAGE = {"safetensors": ("fail their SHA-256 check", "corrupt"),
          "legacy": ("SHA-256", "unexpected bytes")}


@pytest.fixture(scope="module", params=list(DAMAGE))
def either(request, saved, tmp_path_factory):
    """The format's name and the bytes of a checkpoint of :func:`_model` in that format."""
    if request.param == "safetensors":
        return request.param, saved[1]
    model = _model()
    path = tmp_path_factory.mktemp("legacy") / "model.rcert"
    return request.param, write_legacy(path, model.state_dict(), legacy_header(model, META))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_anywhere_raises_rcert_error(tmp_path, either, cut):
    _, raw = either
    path = _write(tmp_path, raw[: int(cut * len(raw))])
    with pytest.raises(RcertError, match=r"truncated|empty"):
        checkpoint.load(path)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_byte_corruption_loads_or_raises_rcert_error(tmp_path, either, data):
    _, raw = either
    i = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    path = _write(tmp_path, raw[:i] + bytes([value]) + raw[i + 1 :])
    checkpoint.is_native(path)  # never raises
    try:
        checkpoint.load(path)
    except RcertError as exc:
        assert "\n" not in str(exc)


def test_flipped_payload_byte_fails_the_checksum(tmp_path, either):
    kind, raw = either
    corrupt = bytearray(raw)
    corrupt[-3] ^= 0x01
    with pytest.raises(RcertError, match=DAMAGE[kind][0]):
        checkpoint.load(_write(tmp_path, bytes(corrupt)))


def test_trailing_bytes_are_refused(tmp_path, either):
    kind, raw = either
    with pytest.raises(RcertError, match=DAMAGE[kind][1]):
        checkpoint.load(_write(tmp_path, raw + b"\0"))


def test_wrong_shapes_are_refused(tmp_path, saved):
    def edit(table, header):
        table["mu_head.weight"]["shape"] = [3, 4]  # same byte count, wrong shape

    with pytest.raises(RcertError, match=r"mu_head\.weight.*expected \[2, 6\]"):
        checkpoint.load(_edited(tmp_path, saved, edit))


def test_architecture_mismatch_is_refused(tmp_path, saved):
    def edit(table, header):
        header["model"]["latent_dim"] = 3

    with pytest.raises(RcertError, match="does not match its architecture"):
        checkpoint.load(_edited(tmp_path, saved, edit))


def test_missing_and_unexpected_tensors_are_refused(tmp_path, saved):
    def edit(table, header):
        table["extra.weight"] = table.pop("mu_head.bias")

    with pytest.raises(RcertError, match=r"missing tensors \['mu_head.bias'\].*'extra.weight'"):
        checkpoint.load(_edited(tmp_path, saved, edit))


@pytest.mark.parametrize("dtype,code", [(torch.int8, "I8"), (torch.bfloat16, "BF16")])
def test_unsupported_dtype_is_refused(tmp_path, dtype, code):
    tensors = {k: v.to(dtype) if k == "mu_head.bias" else v
               for k, v in _model().state_dict().items()}
    path = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(tensors, path, metadata={"rcert": json.dumps(_header())})
    with pytest.raises(RcertError, match=f"unsupported dtype '{code}'"):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda h: h["model"].update(arch="transformer"), "invalid model"),
        (lambda h: h["model"].pop("arch"), "corrupt model description"),
        (lambda h: h["model"].update(input_shape=[10**30]), "invalid model|corrupt model"),
        (lambda h: h.pop("sha256"), r"bad or missing 'sha256'"),
        (lambda h: h.update(format_version=1), "format_version disagrees"),
        (lambda h: h.update(format="something-else"), "not an rcert checkpoint header"),
        (lambda h: h.update(metrics=[1, 2]), r"bad or missing 'metrics'"),
        (lambda h: h.update(data=5), r"bad or missing 'data'"),
        (lambda h: h.update(recommended_r=True), r"bad or missing 'recommended_r'"),
        (lambda h: h.update(sha256="0" * 64), "SHA-256"),
    ],
)
def test_corrupt_header_fields_are_refused(tmp_path, saved, edit, match):
    with pytest.raises(RcertError, match=match) as info:
        checkpoint.load(_edited(tmp_path, saved, lambda table, header: edit(header)))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "metadata,match",
    [
        ({"rcert": "{bad"}, r"JSON header of .* is not valid JSON \(.*\); re-save"),
        ({"rcert": "[]"}, "not an rcert checkpoint header"),
        ({"rcert": "[" * 100_000}, "JSON header of .* nests arrays or objects more than"),
        ({"rcert": '{"recommended_r": NaN}'}, "JSON header of .* holds NaN"),
        ({"rcert": 5}, "truncated or corrupt"),  # safetensors wants string metadata
        ({"rcert": {"format": "rcert-checkpoint"}}, "truncated or corrupt"),
    ],
)
def test_corrupt_metadata_is_refused(tmp_path, saved, metadata, match):
    table, _, payload = _split(saved[1])
    text = json.dumps({**table, "__metadata__": metadata}).encode()
    path = _write(tmp_path, struct.pack("<Q", len(text)) + text + payload)
    with pytest.raises(RcertError, match=match) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", ["safetensors", "legacy"])
@pytest.mark.parametrize(("value", "word"), [(math.nan, "NaN"), (-math.inf, "an infinite value")])
def test_nonfinite_weights_are_refused_naming_the_tensor(tmp_path, fmt, value, word):
    model = _model()
    with torch.no_grad():
        model.mu_head.weight[1, 2] = value
    path = tmp_path / f"m.{fmt}"
    if fmt == "safetensors":
        checkpoint.save(model, path, **META)
    else:
        write_legacy(path, model.state_dict(), legacy_header(model, META))
    with pytest.raises(RcertError, match=rf"^checkpoint {path}: tensor mu_head\.weight holds "
                                         rf"{word}; the checkpoint is damaged or training "
                                         "diverged$"):
        checkpoint.load(path)


def test_int64_and_float64_tensors_are_read(tmp_path):
    tensors = _model().state_dict()
    tensors["mu_head.weight"] = torch.arange(12, dtype=torch.int64).reshape(2, 6)
    tensors["mu_head.bias"] = torch.tensor([0.5, -1.5], dtype=torch.float64)
    header = {**_header(), "sha256": checkpoint.tensor_digest(tensors)}
    path = tmp_path / "mixed.safetensors"
    safetensors.torch.save_file(tensors, path, metadata={"rcert": json.dumps(header)})
    assert header["sha256"] == _reference_digest(path)
    loaded = checkpoint.load(path)
    assert torch.equal(loaded.mu_head.weight, tensors["mu_head.weight"].float())
    assert torch.equal(loaded.mu_head.bias, torch.tensor([0.5, -1.5]))


def test_only_rcert_architectures_can_be_saved(tmp_path):
    with pytest.raises(RcertError, match="only rcert architectures can be saved"):
        checkpoint.save(wrap(_model()), tmp_path / "w.safetensors")
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
        checkpoint.save(_model(), tmp_path / "m.safetensors", **kwargs)
    assert not list(tmp_path.iterdir())


def test_numpy_and_tensor_scalars_in_metrics_are_stored_as_numbers(tmp_path):
    checkpoint.save(
        _model(), tmp_path / "m.safetensors", metrics={"a": np.float32(0.5), "b": torch.tensor(2)}
    )
    assert checkpoint.read_header(tmp_path / "m.safetensors")["metrics"] == {"a": 0.5, "b": 2}


def test_unsupported_model_dtype_is_refused(tmp_path):
    with pytest.raises(RcertError, match=r"model\.float"):
        checkpoint.save(_model().to(torch.bfloat16), tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_leaves_existing_file_and_no_temp_file(tmp_path, saved, monkeypatch, failure):
    path = _write(tmp_path, saved[1], "model.safetensors")
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
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_save_into_missing_folder_raises_rcert_error(tmp_path):
    with pytest.raises(RcertError, match=r"cannot write .*does not exist"):
        checkpoint.save(_model(), tmp_path / "no" / "such" / "m.safetensors")


@pytest.mark.parametrize("device", ["nonsense", "cuda:7", "xla"])
def test_bad_or_unavailable_device_raises_rcert_error(saved, device):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(RcertError, match="onto device"):
        checkpoint.load(saved[0], device=device)
