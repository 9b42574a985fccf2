"""Tests for rcert.data: spec grammar, the built-in datasets and the file readers."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from rcert.data.dataset import Dataset, load_data
from rcert.data.dsprites import _render_dsprites
from rcert.data.specs import DATA_RANGE, DataSpec, parse_spec
from rcert.errors import RcertError


def _rng(seed: int) -> np.random.Generator:
    """A fresh seeded generator per use: test data do not depend on which tests ran before."""
    return np.random.default_rng(seed)


def _raises(spec: str | DataSpec, match: str | None = None) -> RcertError:
    with pytest.raises(RcertError, match=match) as info:
        load_data(spec)
    assert "\n" not in str(info.value)
    return info.value


def _rows(x: torch.Tensor) -> list[bytes]:
    return sorted(row.tobytes() for row in x.numpy().reshape(len(x), -1))


# --- spec grammar --------------------------------------------------------------------------

_SAFE = "abcdefghijklmnopqrstuvwxyzABC0123456789_-."
_SPLIT = st.sampled_from(["train", "test", "all"])
_FOLDER = st.text(_SAFE + "/", min_size=1, max_size=20).filter(
    lambda p: p not in ("train", "test", "all")
)
_FILE = st.builds(
    lambda folder, stem, ext: f"{folder}{stem}{ext}",
    st.sampled_from(["", "/", "./", "data/", "/abs/dir/"]),
    st.text(_SAFE, min_size=1, max_size=10),
    st.sampled_from([".npy", ".npz"]),
)


@st.composite
def _spec_items(draw: st.DrawFn) -> list[str]:
    """Items of a valid spec string, in a random order after the positional ones."""
    kind = draw(st.sampled_from(["digits", "dsprites", "swissroll", "mnist", "fashion-mnist",
                                 "cifar10", "images", "f"]))
    head = [draw(_FILE)] if kind == "f" else [kind]
    if kind in ("mnist", "fashion-mnist", "cifar10", "images"):
        head.append(draw(_FOLDER))
    rest = []
    if draw(st.booleans()):
        rest.append("all" if kind == "f" else draw(_SPLIT))
    if kind == "dsprites":
        if draw(st.booleans()):
            rest.append(f"n={draw(st.integers(1, 737_280))}")
        if draw(st.booleans()):
            rest.append(f"res={draw(st.sampled_from([8, 16, 32, 64]))}")
    if kind == "swissroll" and draw(st.booleans()):
        rest.append(f"noise={draw(st.floats(0, 1))!r}")
    if kind == "images" and draw(st.booleans()):
        rest.append(f"res={draw(st.integers(1, 1024))}")
    if kind == "f" and draw(st.booleans()):
        rest.append(f"key={draw(st.text(_SAFE + '=', min_size=1, max_size=8))}")
    if draw(st.booleans()):
        rest.append(f"range={draw(st.sampled_from(['0,1', '-1,1', '-1.0,1.0']))}")
    return head + draw(st.permutations(rest))


@given(_spec_items(), st.randoms())
def test_spec_round_trips_and_ignores_item_order(items: list[str], random) -> None:
    spec = parse_spec(":".join(items))
    assert parse_spec(str(spec)) == spec
    assert str(parse_spec(str(spec))) == str(spec)
    assert DataSpec(spec.name, spec.split, spec.path, spec.options) == spec
    positional = 2 if spec.name in ("mnist", "fashion-mnist", "cifar10", "images") else 1
    rest = items[positional:]
    random.shuffle(rest)
    assert parse_spec(":".join(items[:positional] + rest)) == spec


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("digits", "digits:test"),
        ("digits:train", "digits:train"),
        ("dsprites", "dsprites:test:n=6000:res=64"),
        ("dsprites:res=32:train", "dsprites:train:n=6000:res=32"),
        ("dsprites:n=0100:all", "dsprites:all:n=100:res=64"),
        ("mnist:/abs/dir", "mnist:/abs/dir:test"),
        ("fashion-mnist:rel/dir:train", "fashion-mnist:rel/dir:train"),
        ("cifar10:../c:all", "cifar10:../c:all"),
        ("/abs/x.npz:key=x", "/abs/x.npz:all:key=x"),
        ("x.npy", "x.npy:all"),
        ("runs/data:all", "runs/data:all"),
    ],
)
def test_canonical_spec_strings(text: str, canonical: str) -> None:
    assert str(parse_spec(text)) == canonical


def test_spec_fields_and_with_split() -> None:
    spec = parse_spec("mnist:data/m:train")
    assert (spec.name, spec.split, spec.path, spec.options) == ("mnist", "train", "data/m", ())
    assert spec.with_split("test") == parse_spec("mnist:data/m:test")
    assert parse_spec("x.npz").name == "file"
    assert DataSpec("dsprites", "test", None, ()) == parse_spec("dsprites")
    with pytest.raises(RcertError, match="no train/test split"):
        parse_spec("x.npz").with_split("train")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("imagenet", "unknown dataset 'imagenet'.*digits, dsprites, swissroll, mnist, "
                     "fashion-mnist, cifar10, images"),
        ("file", "unknown dataset"),
        ("digits:res=32", "unknown option 'res' for digits: known options are range$"),
        ("dsprites:size=3", "unknown option 'size' for dsprites: known options are n, res, "
                            "range"),
        ("digits:test:train", "split twice"),
        ("digits:test:test", "split twice"),
        ("dsprites:n=5:n=6", "twice"),
        ("digits:val", "unexpected item 'val'"),
        ("digits::test", "empty item"),
        ("digits:", "empty item"),
        ("", "empty item"),
        ("dsprites:res=12", "res=12 does not divide 64"),
        ("dsprites:res=128", "res=128"),
        ("dsprites:res=0", "res=0"),
        ("dsprites:res=4", "res=4 must be a whole number in 8..64"),
        ("dsprites:n=0", "n=0"),
        ("dsprites:n=737281", "n=737281"),
        ("dsprites:n=lots", "n=lots"),
        ("dsprites:n=", "needs a value"),
        ("mnist", "mnist needs a folder"),
        ("mnist:test", "write mnist:DIR:test"),
        ("x.npz:train", "no train/test split"),
        ("data/x.npy:test", "no train/test split"),
    ],
)
def test_bad_specs_are_one_line_errors(text: str, match: str) -> None:
    with pytest.raises(RcertError, match=match) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_bad_spec_objects() -> None:
    with pytest.raises(RcertError, match="string"):
        parse_spec(None)  # type: ignore[arg-type]
    with pytest.raises(RcertError, match="contains ':'"):
        DataSpec("mnist", "test", "C:/data", ())
    with pytest.raises(RcertError, match="not recognised as a file"):
        DataSpec("file", "all", "data", ())
    with pytest.raises(RcertError, match="takes no path"):
        DataSpec("digits", "test", "x", ())
    with pytest.raises(RcertError, match="unknown split"):
        DataSpec("digits", "validation", None, ())


# --- digits --------------------------------------------------------------------------------


def test_digits_shapes_range_and_split_sizes() -> None:
    sizes = {"train": 1437, "test": 360, "all": 1797}
    for split, size in sizes.items():
        data = load_data(f"digits:{split}")
        assert data.x.shape == (size, 1, 8, 8) and data.input_shape == (1, 8, 8)
        assert data.x.dtype == torch.float32 and data.x.is_contiguous()
        assert DATA_RANGE[0] <= data.x.min() and data.x.max() <= DATA_RANGE[1]
        assert data.x.max() == 1.0
        assert data.y.dtype == np.int64 and data.y.shape == (size,)
        assert set(data.y) == set(range(10)) and data.factors is None
        np.testing.assert_array_equal(data.index, np.arange(size))
    assert len(load_data("digits")) == 360


def test_digits_split_is_fixed_disjoint_and_covers_the_source() -> None:
    train, test, every = (load_data(f"digits:{s}") for s in ("train", "test", "all"))
    again = load_data("digits:test")
    assert test.x.numpy().tobytes() == again.x.numpy().tobytes()
    np.testing.assert_array_equal(test.y, again.y)
    # all is train then test; together they are exactly the source rows, each used once.
    torch.testing.assert_close(every.x, torch.cat([train.x, test.x]), rtol=0, atol=0)
    np.testing.assert_array_equal(every.y, np.concatenate([train.y, test.y]))
    source = torch.from_numpy((load_digits().images / 16).astype(np.float32))
    assert _rows(every.x) == _rows(source)
    # Not the source order: the split is shuffled.
    assert not torch.equal(every.x[:, 0], source)


# --- dSprites ------------------------------------------------------------------------------

_SMALL = "dsprites:all:n=600"


def test_dsprites_is_deterministic_and_binary() -> None:
    first, second = load_data(_SMALL), load_data(_SMALL)
    assert first.x.numpy().tobytes() == second.x.numpy().tobytes()
    pd.testing.assert_frame_equal(first.factors, second.factors)
    assert first.x.shape == (600, 1, 64, 64) and first.x.dtype == torch.float32
    assert set(np.unique(first.x.numpy())) == {0.0, 1.0}


def test_dsprites_factors() -> None:
    data = load_data("dsprites:all:res=8")
    f = data.factors
    assert list(f.columns) == ["shape", "shape_name", "scale", "orientation", "pos_x", "pos_y"]
    assert set(f["shape"]) == {0, 1, 2}
    names = dict(zip(f["shape"], f["shape_name"], strict=True))
    assert names == {0: "square", 1: "ellipse", 2: "heart"}
    assert set(f["scale"]) <= set(np.linspace(0.5, 1, 6))
    assert set(f["orientation"]) <= set(np.linspace(0, 2 * np.pi, 40))
    assert set(f["pos_x"]) | set(f["pos_y"]) <= set(np.linspace(0, 1, 32))
    assert f["pos_x"].min() < 0.1 and f["pos_x"].max() > 0.9
    np.testing.assert_array_equal(data.y, f["shape"].to_numpy())
    # Drawn without replacement: 6000 draws with replacement would repeat ~24 cells.
    assert not f.drop(columns="shape_name").duplicated().any()


def test_dsprites_split_is_80_20_of_the_same_draw() -> None:
    train, test, every = (load_data(f"dsprites:{s}:n=50:res=8") for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (40, 10, 50)
    combined = pd.concat([train.factors, test.factors], ignore_index=True)
    pd.testing.assert_frame_equal(combined, every.factors)
    torch.testing.assert_close(every.x, torch.cat([train.x, test.x]), rtol=0, atol=0)
    np.testing.assert_array_equal(test.index, np.arange(10))


def test_dsprites_images_are_nonempty_and_clear_of_the_border() -> None:
    x = load_data("dsprites:all").x.numpy()[:, 0]
    assert (x.reshape(len(x), -1).sum(axis=1) > 0).all()
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    assert not border.any()


def _grid(**columns) -> pd.DataFrame:
    """All combinations of the given factor values."""
    index = pd.MultiIndex.from_product(list(columns.values()), names=list(columns))
    return index.to_frame(index=False)


def test_dsprites_largest_shapes_at_the_extremes_stay_inside() -> None:
    corners = _grid(
        shape=[0, 1, 2],
        scale=[1.0],
        orientation=np.linspace(0, 2 * np.pi, 40),
        pos_x=[0.0, 1.0],
        pos_y=[0.0, 1.0],
    )
    x = _render_dsprites(corners)
    assert (x.reshape(len(x), -1).sum(axis=1) > 0).all()
    # Two blank pixels on every side: no shape reaches the outer two rows or columns.
    assert not x[:, :2].any() and not x[:, -2:].any()
    assert not x[:, :, :2].any() and not x[:, :, -2:].any()


def test_dsprites_shapes_are_distinguishable() -> None:
    settings = _grid(
        scale=[0.5, 1.0], orientation=[0.0, 1.0, 2.5], pos_x=[0.3], pos_y=[0.6], shape=[0, 1, 2]
    )
    masks = _render_dsprites(settings).reshape(-1, 3, 64 * 64).astype(bool)
    for square, ellipse, heart in masks:
        counts = [square.sum(), ellipse.sum(), heart.sum()]
        assert len(set(counts)) == 3
        for a, b in [(square, ellipse), (square, heart), (ellipse, heart)]:
            assert (a & b).sum() / (a | b).sum() < 0.9


def _centroid(image: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(image)
    return np.array([rows.mean(), cols.mean()])


def test_dsprites_factors_act_as_described() -> None:
    base = {"shape": 1, "scale": 1.0, "orientation": 0.0, "pos_x": 0.5, "pos_y": 0.5}
    frame = pd.DataFrame(
        [
            base,
            base | {"pos_x": 1.0},
            base | {"pos_y": 1.0},
            base | {"orientation": np.pi / 2},
            base | {"scale": 0.5},
            base | {"shape": 2},
        ]
    )
    ellipse, right, down, turned, small, heart = _render_dsprites(frame)
    # Pixel i covers [i, i + 1), so the canvas centre 32 is between indices 31 and 32.
    np.testing.assert_allclose(_centroid(ellipse), [31.5, 31.5], atol=0.01)
    np.testing.assert_allclose(_centroid(right) - _centroid(ellipse), [0, 20], atol=0.01)
    np.testing.assert_allclose(_centroid(down) - _centroid(ellipse), [20, 0], atol=0.01)
    # Elongated: twice as wide as high, and a quarter turn swaps that.
    height, width = np.ptp(np.nonzero(ellipse), axis=1)
    assert width > 1.8 * height
    np.testing.assert_array_equal(turned, ellipse.T)
    assert small.sum() < 0.3 * ellipse.sum()
    # The heart's lobes are on top and its tip points down the image.
    assert _centroid(heart)[0] < 31


def test_dsprites_downsampling_averages_blocks() -> None:
    full = load_data("dsprites:all:n=200").x.numpy()
    for res in (8, 16, 32):
        small = load_data(f"dsprites:all:n=200:res={res}")
        assert small.x.shape == (200, 1, res, res)
        block = 64 // res
        expected = full.reshape(200, 1, res, block, res, block).mean(axis=(3, 5))
        np.testing.assert_allclose(small.x.numpy(), expected, rtol=0, atol=1e-7)
        levels = small.x.numpy() * block * block
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert 0 < load_data("dsprites:all:n=200:res=8").x.numpy().mean() < 1


def test_dsprites_renders_all_6000_images() -> None:
    data = load_data("dsprites:all:n=6000:res=64")
    assert len(data) == 6000 and len(data.factors) == 6000
    x = data.x.numpy()
    assert x.shape == (6000, 1, 64, 64) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    # The batch render is image by image the render of each image's own factors.
    picks = np.random.default_rng(0).choice(6000, size=12, replace=False)
    alone = _render_dsprites(data.factors.iloc[picks].reset_index(drop=True))
    np.testing.assert_array_equal(x[picks, 0], alone.astype(np.float32))


# --- MNIST / Fashion-MNIST -----------------------------------------------------------------


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def _write_idx(folder: Path, stem: str, array: np.ndarray, gz: bool) -> Path:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    raw = _idx_bytes(array, magic)
    path = folder / (f"{stem}.gz" if gz else stem)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def mnist_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    parts = {}
    rng = _rng(1)
    for part, prefix, n, gz in [("train", "train", 5, True), ("test", "t10k", 3, False)]:
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(tmp_path, f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(tmp_path, f"{prefix}-labels-idx1-ubyte", labels, not gz)
        parts[part] = (images, labels)
    return tmp_path, parts


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_reads_idx_files_exactly(name: str, mnist_dir) -> None:
    folder, parts = mnist_dir
    for split in ("train", "test"):
        data = load_data(f"{name}:{folder}:{split}")
        images, labels = parts[split]
        assert data.x.shape == (len(images), 1, 28, 28)
        np.testing.assert_array_equal(data.x.numpy()[:, 0], images.astype(np.float32) / 255)
        np.testing.assert_array_equal(data.y, labels)
        assert data.y.dtype == np.int64 and data.spec == parse_spec(f"{name}:{folder}:{split}")
    every = load_data(f"{name}:{folder}:all")
    np.testing.assert_array_equal(every.y, np.concatenate([parts["train"][1], parts["test"][1]]))
    np.testing.assert_array_equal(every.index, np.arange(8))
    assert len(load_data(f"{name}:{folder}")) == 3


def test_mnist_without_labels_has_no_y(mnist_dir) -> None:
    folder, _ = mnist_dir
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert load_data(f"mnist:{folder}:test").y is None
    assert load_data(f"mnist:{folder}:train").y is not None
    assert load_data(f"mnist:{folder}:all").y is None


def test_mnist_missing_folder_or_files(tmp_path: Path, mnist_dir) -> None:
    _raises(f"mnist:{tmp_path}/nowhere", "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises(f"mnist:{empty}", r"no MNIST files in .*t10k-images-idx3-ubyte\[\.gz\]")
    _raises(f"fashion-mnist:{empty}:train", "no Fashion-MNIST files")
    folder, _ = mnist_dir
    (folder / "train-images-idx3-ubyte.gz").unlink()
    assert len(load_data(f"mnist:{folder}:test")) == 3
    _raises(f"mnist:{folder}:all", "train-images-idx3-ubyte")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("keep", [2, 10, 16 + 28 * 28 * 3 - 1])
def test_mnist_truncated_file_is_an_error(tmp_path: Path, gz: bool, keep: int) -> None:
    raw = _idx_bytes(_rng(2).integers(0, 256, size=(3, 28, 28)), 0x00000803)[:keep]
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    (tmp_path / name).write_bytes(gzip.compress(raw) if gz else raw)
    _raises(f"mnist:{tmp_path}")


def test_mnist_truncated_gzip_stream_is_an_error(tmp_path: Path) -> None:
    raw = gzip.compress(_idx_bytes(_rng(3).integers(0, 256, size=(3, 28, 28)), 0x00000803))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    _raises(f"mnist:{tmp_path}", "cannot read")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    _raises(f"mnist:{tmp_path}", "cannot read")


def test_mnist_wrong_magic_or_sizes_are_errors(tmp_path: Path) -> None:
    images = _rng(4).integers(0, 256, size=(3, 28, 28))
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(images, 0x00000801))
    _raises(f"mnist:{tmp_path}", "magic 0x00000801, expected 0x00000803")
    path.write_bytes(_idx_bytes(images, 0x00000803) + b"\0")
    _raises(f"mnist:{tmp_path}", "header promises")
    path.write_bytes(_idx_bytes(images, 0x00000803))
    _write_idx(tmp_path, "t10k-labels-idx1-ubyte", np.zeros(4), gz=False)
    _raises(f"mnist:{tmp_path}", "4 labels for 3 images")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(images, 0x00000803))
    _raises(f"mnist:{tmp_path}", "expected 0x00000801")


# --- CIFAR-10 ------------------------------------------------------------------------------


def _write_cifar(folder: Path, protocol: int) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    rng = _rng(5)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, [2, 1, 2, 1, 2, 3], strict=True):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f, protocol)
        batches[name] = (data, labels)
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-py"])
def test_cifar10_reads_python_batches(tmp_path: Path, protocol: int, subdir: str) -> None:
    batches = _write_cifar(tmp_path / subdir, protocol)
    test = load_data(f"cifar10:{tmp_path}")
    data, labels = batches["test_batch"]
    assert test.x.shape == (3, 3, 32, 32) and test.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(
        test.x.numpy(), data.reshape(3, 3, 32, 32).astype(np.float32) / 255
    )
    np.testing.assert_array_equal(test.y, labels)
    train = load_data(f"cifar10:{tmp_path}:train")
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(train.x.numpy().reshape(8, -1) * 255, expected)
    every = load_data(f"cifar10:{tmp_path}:all")
    assert len(every) == 11 and every.y.dtype == np.int64
    np.testing.assert_array_equal(every.y, np.concatenate([train.y, test.y]))


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_System, _Exec])
def test_cifar10_refuses_malicious_pickles(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": payload(marker), b"labels": [0]}, f)
    error = _raises(
        f"cifar10:{tmp_path}", r"refusing to unpickle .*(system|exec) from .*test_batch"
    )
    assert "a CIFAR-10 batch contains only arrays" in str(error)
    assert not marker.exists()


def test_cifar10_bad_batches(tmp_path: Path) -> None:
    _raises(f"cifar10:{tmp_path}", "no CIFAR-10 batch test_batch")
    _write_cifar(tmp_path, 4)
    (tmp_path / "data_batch_3").unlink()
    assert len(load_data(f"cifar10:{tmp_path}")) == 3
    _raises(f"cifar10:{tmp_path}:train", "no CIFAR-10 batch data_batch_3")
    path = tmp_path / "test_batch"
    for content in (b"garbage", pickle.dumps({b"data": 1})[:-3]):
        path.write_bytes(content)
        _raises(f"cifar10:{tmp_path}", "cannot unpickle")
    bad = [
        ([1, 2], "not a CIFAR-10 batch"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "no 'labels' entry"),
        ({b"data": np.zeros((1, 3072)), b"labels": [0]}, "'data' must be a uint8 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "'labels' must be 2"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["a"]}, "'labels' must be 1"),
    ]
    for content, match in bad:
        path.write_bytes(pickle.dumps(content))
        _raises(f"cifar10:{tmp_path}", match)
    # Batches re-pickled under Python 3 may use str keys.
    path.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [7]}))
    assert load_data(f"cifar10:{tmp_path}").y.tolist() == [7]


# --- .npy / .npz ---------------------------------------------------------------------------


def test_npy_round_trip(tmp_path: Path) -> None:
    rng = _rng(6)
    floats = rng.random((6, 5)).astype(np.float32)
    floats[0, 0] = 1.5  # out of range on purpose: the engine checks ranges, not the loader
    np.save(tmp_path / "v.npy", floats)
    data = load_data(f"{tmp_path}/v.npy")
    np.testing.assert_array_equal(data.x.numpy(), floats)
    assert data.y is None and data.input_shape == (5,) and str(data.spec) == f"{tmp_path}/v.npy:all"
    images = rng.integers(0, 256, size=(4, 3, 7, 7), dtype=np.uint8)
    np.save(tmp_path / "img.npy", images)
    data = load_data(f"{tmp_path}/img.npy:all")
    np.testing.assert_array_equal(data.x.numpy(), images.astype(np.float32) / 255)
    np.testing.assert_array_equal(data.index, np.arange(4))
    np.save(tmp_path / "wide.npy", images.astype(np.int64))
    np.testing.assert_array_equal(load_data(f"{tmp_path}/wide.npy").x, data.x)


def test_npz_key_selection_and_labels(tmp_path: Path) -> None:
    rng = _rng(7)
    x, other = rng.random((4, 3)), rng.random((4, 2))
    labels = np.array([3, 1, 4, 1])
    path = tmp_path / "d.npz"
    np.savez(path, x=x, other=other, y=labels)
    data = load_data(str(path))
    np.testing.assert_array_equal(data.x.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(data.y, labels)
    assert str(data.spec) == f"{path}:all:key=x"
    chosen = load_data(f"{path}:key=other")
    np.testing.assert_array_equal(chosen.x.numpy(), other.astype(np.float32))
    assert chosen.spec == parse_spec(f"{path}:all:key=other")
    np.savez_compressed(path, images=x)
    assert str(load_data(str(path)).spec) == f"{path}:all:key=images"
    np.savez(path, images=x, y=labels)
    assert load_data(str(path)).spec.options == (("key", "images"),)
    np.savez(path, a=x, b=other)
    _raises(str(path), r"several arrays \(keys: a, b\).*:key=NAME")
    _raises(f"{path}:key=x", r"no array 'x' \(keys: a, b\)")


def test_npz_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(2, dtype=int))
    _raises(str(path), "must hold 3 integer labels")
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(3))
    _raises(str(path), "integer labels")


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    objects = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)
    _raises(f"{tmp_path}/o.npy", r"o\.npy holds Python objects \(dtype object\)")
    np.savez(tmp_path / "o.npz", x=objects)
    _raises(f"{tmp_path}/o.npz", r"array 'x' in .*o\.npz holds Python objects")


def test_bad_array_files(tmp_path: Path) -> None:
    _raises(f"{tmp_path}/missing.npy", "missing.npy does not exist; pass the path of a .npy")
    _raises(f"{tmp_path}/", "is a folder, not a regular file")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    _raises(f"{tmp_path}/junk.npy", r"junk.npy is in .npy format version 32\.106")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated zip")
    _raises(f"{tmp_path}/junk.npz", "cannot")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    _raises(f"{tmp_path}/flat.npy", r"shape \(5,\)")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    _raises(f"{tmp_path}/empty.npy", "selects no rows")
    np.save(tmp_path / "big.npy", np.full((2, 2), 256))
    _raises(f"{tmp_path}/big.npy", "outside 0..255")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    _raises(f"{tmp_path}/text.npy", "<U1 values")
    np.save(tmp_path / "ok.npy", np.zeros((2, 2)))
    _raises(f"{tmp_path}/ok.npy:key=x", "single array")


# --- Dataset -------------------------------------------------------------------------------


def test_subset_takes_the_first_rows() -> None:
    data = load_data("dsprites:test:n=100:res=8")
    part = data.subset(7)
    assert isinstance(part, Dataset) and len(part) == 7 and part.spec == data.spec
    assert torch.equal(part.x, data.x[:7]) and part.x.is_contiguous()
    np.testing.assert_array_equal(part.y, data.y[:7])
    np.testing.assert_array_equal(part.index, np.arange(7))
    pd.testing.assert_frame_equal(part.factors, data.factors.iloc[:7])
    assert len(data.subset(10_000)) == len(data) == 20
    with pytest.raises(RcertError, match="at least 1"):
        data.subset(0)


def test_load_data_accepts_a_dataspec_and_index_is_int64() -> None:
    spec = parse_spec("digits:train")
    data = load_data(spec)
    assert data.spec == spec and data.index.dtype == np.int64
    np.testing.assert_array_equal(data.index, np.arange(1437))
    np.testing.assert_array_equal(data.subset(3).index, [0, 1, 2])


def test_default_eval_spec_is_the_test_split_of_the_training_data():
    from rcert.data import default_eval_spec

    assert str(default_eval_spec("dsprites:train:n=500:res=32")) == "dsprites:test:n=500:res=32"
    assert str(default_eval_spec("digits:train")) == "digits:test"
    with pytest.raises(RcertError, match="pass --data"):
        default_eval_spec(None, "m.rcert")
    with pytest.raises(RcertError, match="no test split"):
        default_eval_spec("runs/x.npz:all:key=x", "m.rcert")
