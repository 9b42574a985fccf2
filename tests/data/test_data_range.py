"""The ``range`` option every dataset takes: ``range=-1,1`` maps the [0, 1] data onto [-1, 1]
exactly (2x - 1), the spec and ``Dataset.data_range`` report it, and the default ``0,1`` is
left out of the canonical string, so every spec written before the option keeps its string."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcert.data import DATA_RANGE, default_eval_spec
from rcert.data.dataset import load_data
from rcert.data.specs import RANGES, DataSpec, parse_spec
from rcert.errors import RcertError

#: Canonical strings of specs that checkpoints recorded before the option existed.
RECORDED = ["digits:test", "digits:train", "digits:all", "dsprites:train:n=6000:res=64",
            "dsprites:test:n=500:res=32", "mnist:/data/mnist:test",
            "fashion-mnist:rel/dir:train", "cifar10:../c:all", "/abs/x.npz:all:key=x",
            "x.npy:all", "runs/data:all"]


@pytest.mark.parametrize("text", RECORDED)
def test_recorded_spec_strings_are_unchanged(text: str) -> None:
    spec = parse_spec(text)
    assert str(spec) == text and spec.data_range == DATA_RANGE == (0.0, 1.0)
    assert "range" not in dict(spec.options)
    explicit = parse_spec(f"{text}:range=0,1")
    assert explicit == spec and str(explicit) == text


def test_the_default_range_compares_equal_however_it_is_given() -> None:
    assert DataSpec("digits", "test", None, (("range", "0,1"),)) == parse_spec("digits")
    assert DataSpec("digits", "test", None, (("range", "0.0,1.0"),)).options == ()
    assert parse_spec("digits:range=-1.0,+1") == parse_spec("digits:range=-1,1")
    assert RANGES == {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}


@pytest.mark.parametrize(("text", "canonical"), [
    ("digits:range=-1,1", "digits:test:range=-1,1"),
    ("dsprites:range=-1,1:res=32:train", "dsprites:train:n=6000:range=-1,1:res=32"),
    ("mnist:/m:range=-1,1", "mnist:/m:test:range=-1,1"),
    ("images:/i:range=-1,1:channels=3", "images:/i:test:channels=3:range=-1,1:res=64"),
    ("x.npz:range=-1,1", "x.npz:all:range=-1,1"),
])
def test_a_signed_range_is_written_out(text: str, canonical: str) -> None:
    spec = parse_spec(text)
    assert str(spec) == canonical and spec.data_range == (-1.0, 1.0)
    assert parse_spec(str(spec)) == spec


def test_the_range_survives_splits_and_the_default_eval_spec() -> None:
    spec = parse_spec("dsprites:train:n=100:range=-1,1")
    assert spec.with_split("test").data_range == (-1.0, 1.0)
    assert str(default_eval_spec(str(spec))) == "dsprites:test:n=100:range=-1,1:res=64"


@pytest.mark.parametrize("value", ["0,2", "-1,0", "1,-1", "-1", "-1,1,2", "a,b", "nan,1",
                                   "-1;1", "0,1e400"])
def test_other_ranges_are_refused(value: str) -> None:
    with pytest.raises(RcertError, match=r"range=.* must be 0,1 or -1,1") as info:
        parse_spec(f"digits:range={value}")
    assert "\n" not in str(info.value)


def _twice(spec: str) -> tuple:
    unit, signed = load_data(spec), load_data(f"{spec}:range=-1,1")
    assert unit.data_range == (0.0, 1.0) and signed.data_range == (-1.0, 1.0)
    np.testing.assert_array_equal(signed.x.numpy(), unit.x.numpy() * 2 - 1)
    assert signed.x.min() >= -1 and signed.x.max() <= 1 and signed.x.is_contiguous()
    np.testing.assert_array_equal(signed.y if signed.y is not None else [],
                                  unit.y if unit.y is not None else [])
    assert signed.spec == parse_spec(f"{unit.spec}:range=-1,1")
    return unit, signed


@pytest.mark.parametrize("spec", ["digits:all", "dsprites:all:n=60:res=16",
                                  "swissroll:train:n=40"])
def test_built_ins_map_exactly_onto_minus_one_one(spec: str) -> None:
    unit, signed = _twice(spec)
    assert (signed.x.min() == -1) == (unit.x.min() == 0)
    assert signed.subset(3).data_range == (-1.0, 1.0)


def test_folders_map_exactly(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28) % 256
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        struct.pack(">4I", 0x803, 2, 28, 28) + images.astype(np.uint8).tobytes())
    unit, _ = _twice(f"mnist:{tmp_path}")
    assert unit.x.max() == 1
    (tmp_path / "pics").mkdir()
    for i in range(3):
        Image.new("RGB", (5, 4), (80 * i, 255, 0)).save(tmp_path / "pics" / f"{i}.png")
    unit, signed = _twice(f"images:{tmp_path / 'pics'}:all:res=4:channels=3")
    assert signed.x.min() == -1 and signed.x.max() == 1


def test_files_map_8_bit_pixels_and_floats_in_0_1(tmp_path: Path) -> None:
    np.save(tmp_path / "ints.npy", np.arange(24, dtype=np.uint8).reshape(2, 12) * 11)
    _twice(f"{tmp_path}/ints.npy")
    floats = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    floats[0, 0], floats[1, 1] = 0.0, 1.0
    np.savez(tmp_path / "f.npz", images=floats, y=np.arange(5))
    _, signed = _twice(f"{tmp_path}/f.npz")
    # The key the loader resolves and the range asked for are both recorded.
    assert str(signed.spec) == f"{tmp_path}/f.npz:all:key=images:range=-1,1"
    assert load_data(str(signed.spec)).x.numpy().tobytes() == signed.x.numpy().tobytes()


@pytest.mark.parametrize(("values", "span"), [([[0.5, 1.5]], r"\[0\.5, 1\.5\]"),
                                              ([[-1.0, 1.0]], r"\[-1, 1\]")])
def test_floats_outside_0_1_are_refused_with_a_range_but_kept_without(
        tmp_path: Path, values: list, span: str) -> None:
    np.save(tmp_path / "v.npy", np.array(values, dtype=np.float32))
    with pytest.raises(RcertError, match=(
            rf"data .*v\.npy holds values in {span}, outside \[0, 1\], but range=-1,1 maps "
            rf"\[0, 1\] onto \[-1, 1\]: store the data in \[0, 1\].*drop range=")) as info:
        load_data(f"{tmp_path}/v.npy:range=-1,1")
    assert "\n" not in str(info.value)
    unchanged = load_data(f"{tmp_path}/v.npy")  # as before the option: passed through
    np.testing.assert_array_equal(unchanged.x.numpy(), values)
    assert unchanged.data_range == (0.0, 1.0)


def test_read_only_arrays_are_copied_before_they_are_mapped(tmp_path: Path) -> None:
    np.save(tmp_path / "r.npy", np.full((2, 2), 0.25, dtype=np.float32))
    assert load_data(f"{tmp_path}/r.npy:range=-1,1").x.numpy().tolist() == [[-0.5, -0.5]] * 2
