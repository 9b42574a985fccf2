"""The ``images`` dataset: folders of PNG/JPEG/BMP/GIF/WebP files decoded with Pillow, in a
fixed order and split, with hand-computed pixel values; every bad folder or file is a one-line
RcertError naming it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_special
from PIL import Image

from rcert.data import images
from rcert.data.dataset import load_data
from rcert.data.specs import parse_spec
from rcert.errors import RcertError


def _raises(spec: str, match: str) -> str:
    with pytest.raises(RcertError, match=match) as info:
        load_data(spec)
    message = str(info.value)
    assert "\n" not in message
    return message


def _grey(path: Path, pixels: list[list[int]] | np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(path)
    return path


def _plain(path: Path, size: tuple[int, int], colour: int | tuple[int, ...],
           mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def _k(value: int) -> np.float32:
    """A pixel value k as the loader stores it, k/255 in float32."""
    return np.float32(value) / np.float32(255)


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    """Three class folders (a nested one included) of 2, 3 and 5 solid-grey images."""
    root = tmp_path / "classes"
    for label, count in (("cat", 2), ("dog", 3), ("emu", 5)):
        for i in range(count):
            sub = "deep/" if label == "emu" and i % 2 else ""
            _grey(root / label / f"{sub}{i}.png", np.full((5, 7), 10 * i + 1))
    return root


# --- values --------------------------------------------------------------------------------


def test_a_2x2_image_box_filtered_to_one_pixel_is_its_rounded_mean(tmp_path: Path) -> None:
    _grey(tmp_path / "a.png", [[0, 100], [200, 255]])
    data = load_data(f"images:{tmp_path}:all:res=1")
    assert data.x.shape == (1, 1, 1, 1) and data.x.dtype == torch.float32
    assert data.x.item() == _k(139)  # (0 + 100 + 200 + 255) / 4 = 138.75
    assert data.y is None and list(data.factors["file"]) == ["a.png"]


def test_quadrants_and_an_upscaled_constant_image_keep_their_values(tmp_path: Path) -> None:
    quadrants = np.kron(np.array([[10, 60], [110, 250]]), np.ones((4, 4)))
    _grey(tmp_path / "q" / "q.png", quadrants)
    np.testing.assert_array_equal(load_data(f"images:{tmp_path / 'q'}:all:res=2").x.numpy(),
                                  [[[[_k(10), _k(60)], [_k(110), _k(250)]]]])
    _plain(tmp_path / "c" / "c.png", (2, 2), (40, 80, 120))
    rgb = load_data(f"images:{tmp_path / 'c'}:all:res=8:channels=3").x.numpy()
    assert rgb.shape == (1, 3, 8, 8)
    for channel, value in enumerate((40, 80, 120)):
        assert (rgb[0, channel] == _k(value)).all()


def test_the_centre_square_is_cropped_with_offsets_rounded_down(tmp_path: Path) -> None:
    # 5 wide, 2 high: the square is columns 1..2 (offset (5 - 2) // 2 = 1).
    _grey(tmp_path / "w.png", [[0, 30, 90, 0, 0], [0, 30, 90, 0, 0]])
    np.testing.assert_array_equal(load_data(f"images:{tmp_path}:all:res=2").x.numpy(),
                                  [[[[_k(30), _k(90)], [_k(30), _k(90)]]]])
    tall = tmp_path / "tall"
    _grey(tall / "t.png", np.array([[0], [0], [0], [200], [0], [0], [0]]))  # 1 x 7: row 3
    assert load_data(f"images:{tall}:all:res=1").x.item() == _k(200)


def test_grey_and_rgb_conversions(tmp_path: Path) -> None:
    _plain(tmp_path / "x.png", (3, 3), (200, 100, 50))
    grey = load_data(f"images:{tmp_path}:all:res=3").x.numpy()
    # Pillow's L = (299 R + 587 G + 114 B) / 1000, rounded: 59.8 + 58.7 + 5.7 = 124.2.
    assert grey.shape == (1, 1, 3, 3) and (grey == _k(124)).all()
    (tmp_path / "x.png").unlink()
    _plain(tmp_path / "g.png", (3, 3), 90, mode="L")
    rgb = load_data(f"images:{tmp_path}:all:res=3:channels=3").x.numpy()
    assert rgb.shape == (1, 3, 3, 3) and (rgb == _k(90)).all()


@pytest.mark.parametrize(("name", "mode", "colour"), [
    ("a.jpg", "RGB", (255, 255, 255)), ("b.JPEG", "L", 0), ("c.bmp", "RGB", (0, 0, 0)),
    ("d.gif", "P", 3), ("e.webp", "RGB", (255, 255, 255)), ("f.png", "RGBA", (9, 9, 9, 0)),
    ("g.png", "1", 1), ("h.png", "LA", (77, 5)),
])
def test_every_supported_format_and_mode_loads(tmp_path: Path, name: str, mode: str,
                                               colour) -> None:
    path = _plain(tmp_path / name, (6, 4), colour, mode)
    x = load_data(f"images:{tmp_path}:all:res=4:channels=3").x.numpy()
    with Image.open(path) as image:
        expected = np.asarray(image.convert("RGB"))[0, 1]  # the cropped square is constant
    assert x.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(x[0, :, 0, 0], expected.astype(np.float32) / 255)
    assert 0 <= x.min() and x.max() <= 1


def test_odd_sized_jpegs_land_in_0_1_with_the_right_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(33, 17), (17, 33), (64, 64), (5, 101)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.jpg", quality=90)
    data = load_data(f"images:{tmp_path}:all:res=16:channels=3")
    assert data.x.shape == (4, 3, 16, 16) and data.x.is_contiguous()
    assert 0 <= data.x.min() and data.x.max() <= 1
    levels = data.x.numpy() * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # k/255


# --- order, labels, split ------------------------------------------------------------------


def test_class_folders_give_labels_in_sorted_order(classes: Path) -> None:
    data = load_data(f"images:{classes}:all")
    assert data.x.shape == (10, 1, 64, 64) and data.y.dtype == np.int64
    names = {"cat": 0, "dog": 1, "emu": 2}
    np.testing.assert_array_equal(data.y, [names[n] for n in data.factors["label"]])
    assert sorted(data.factors["file"]) == sorted(
        ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png", "dog/2.png", "emu/0.png",
         "emu/deep/1.png", "emu/2.png", "emu/deep/3.png", "emu/4.png"])
    # Each row is its own file: image i was filled with 10 i + 1.
    stems = data.factors["file"].str.extract(r"(\d)\.png$")[0].astype(int).to_numpy()
    expected = (10 * stems + 1).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(data.x.numpy()[:, 0, 0, 0], expected)


def test_order_is_the_sorted_files_shuffled_with_seed_0(classes: Path) -> None:
    files, labels = images.list_images(classes)
    assert labels == ["cat", "dog", "emu"] and files == sorted(files)
    assert files[-2:] == [("emu", "deep", "1.png"), ("emu", "deep", "3.png")]
    order = np.random.default_rng(0).permutation(10)
    data = load_data(f"images:{classes}:all:res=2")
    assert list(data.factors["file"]) == ["/".join(files[i]) for i in order]
    again = load_data(f"images:{classes}:all:res=2")
    assert data.x.numpy().tobytes() == again.x.numpy().tobytes()
    np.testing.assert_array_equal(data.y, again.y)


def test_split_sizes_and_all_is_train_then_test(classes: Path) -> None:
    train, test, every = (load_data(f"images:{classes}:{s}:res=4") for s in
                          ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (8, 2, 10)
    torch.testing.assert_close(every.x, torch.cat([train.x, test.x]), rtol=0, atol=0)
    np.testing.assert_array_equal(every.y, np.concatenate([train.y, test.y]))
    assert not set(train.factors["file"]) & set(test.factors["file"])
    np.testing.assert_array_equal(test.index, [0, 1])
    assert len(load_data(f"images:{classes}:res=4")) == 2  # the split defaults to test


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path) -> None:
    _grey(tmp_path / "a.png", [[5]])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "list_attr.csv").write_text("a,b")
    _grey(tmp_path / ".hidden.png", [[9]])
    data = load_data(f"images:{tmp_path}:all:res=1")
    assert list(data.factors["file"]) == ["a.png"]


def test_canonical_spec_and_defaults(tmp_path: Path) -> None:
    spec = parse_spec(f"images:{tmp_path}")
    assert str(spec) == f"images:{tmp_path}:test:channels=1:res=64"
    assert str(parse_spec(f"images:{tmp_path}:res=032:all:channels=3")) == (
        f"images:{tmp_path}:all:channels=3:res=32")
    _grey(tmp_path / "a.png", [[5]])
    assert load_data(f"images:{tmp_path}:all").spec == parse_spec(f"images:{tmp_path}:all")


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "match"), [
    ("images", "images needs a folder"),
    ("images:test", "write images:DIR:test"),
    ("images:d:res=0", "res=0 must be a whole number in 1..1024"),
    ("images:d:res=2048", "res=2048"),
    ("images:d:channels=2", "channels=2 must be 1 .grey. or 3 .RGB."),
    ("images:d:colour=1", "unknown option 'colour' for images: known options are channels, res"),
])
def test_bad_image_specs(text: str, match: str) -> None:
    with pytest.raises(RcertError, match=match) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_missing_or_empty_folders(tmp_path: Path) -> None:
    _raises(f"images:{tmp_path}/nowhere", "images folder .*nowhere does not exist")
    (tmp_path / "file.png").write_bytes(b"")
    _raises(f"images:{tmp_path}/file.png", "is a regular file, not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises(f"images:{empty}", r"holds no images \(\.png, \.jpg.*\); pass a folder of images")
    (empty / "readme.txt").write_text("x")
    _raises(f"images:{empty}", "holds no images")
    (empty / "cls").mkdir()
    _raises(f"images:{empty}", r"class folder .*cls holds no images.*add images to it or remove")


def test_files_and_subfolders_together_are_refused(tmp_path: Path) -> None:
    _grey(tmp_path / "a.png", [[1]])
    _grey(tmp_path / "b" / "c.png", [[1]])
    _raises(f"images:{tmp_path}", r"holds both image files \(a\.png\) and subfolders \(b\)")


@pytest.mark.parametrize(("content", "match"), [
    (b"", "not a PNG, JPEG, BMP, GIF or WebP image"),
    (b"this is a text file, not a picture", "not a PNG, JPEG, BMP, GIF or WebP image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not a PNG"),  # EPS would run Ghostscript
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "cannot decode image"),
])
def test_non_image_content_is_refused_by_name(tmp_path: Path, content: bytes,
                                              match: str) -> None:
    _grey(tmp_path / "good.png", [[1]])
    (tmp_path / "bad.png").write_bytes(content)
    message = _raises(f"images:{tmp_path}:all", match)
    assert re.search(r"bad\.png \(.*\); replace it with an intact copy or remove it$", message)


@pytest.mark.parametrize("suffix", ["png", "jpg", "gif", "webp"])
def test_truncated_images_are_refused_by_name(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / f"cut.{suffix}"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _raises(f"images:{tmp_path}:all", rf"cannot decode image .*cut\.{suffix}")


def test_a_png_named_jpg_still_loads_but_a_tiff_does_not(tmp_path: Path) -> None:
    _grey(tmp_path / "x.png", [[7]])
    (tmp_path / "x.png").rename(tmp_path / "x.jpg")
    assert load_data(f"images:{tmp_path}:all:res=1").x.item() == _k(7)
    Image.new("L", (2, 2), 3).save(tmp_path / "x.jpg", format="TIFF")
    _raises(f"images:{tmp_path}:all", r"cannot decode image .*x\.jpg \(not a PNG, JPEG")


@pytest.mark.parametrize("limit", [20, 40])  # 64 pixels: Pillow's error (> 2x) and warning
def test_a_decompression_bomb_is_refused(tmp_path: Path, monkeypatch, limit: int) -> None:
    _plain(tmp_path / "big.png", (8, 8), (1, 2, 3))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    _raises(f"images:{tmp_path}:all",
            rf"image .*big\.png has more pixels than Pillow's decompression-bomb guard allows "
            rf"\(PIL\.Image\.MAX_IMAGE_PIXELS = {limit}\)")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)
    assert len(load_data(f"images:{tmp_path}:all:res=2")) == 1


def test_sixteen_bit_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((3, 3), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    _raises(f"images:{tmp_path}:all", r"deep\.png holds I.* pixels \(16-bit or float\)")


@pytest.mark.parametrize(("kind", "what"), [("pipe", r"a named pipe \(FIFO\)"),
                                            ("zero", "a character device")])
def test_special_files_named_like_images_are_refused(tmp_path: Path, kind: str,
                                                     what: str) -> None:
    _grey(tmp_path / "a.png", [[1]])
    make_special(tmp_path / "b.png", kind)
    _raises(f"images:{tmp_path}:all", rf"image .*b\.png is {what}, not a regular file")


def test_too_many_files_and_too_large_a_result(tmp_path: Path, monkeypatch) -> None:
    for i in range(4):
        _grey(tmp_path / "c" / f"{i}.png", [[i]])
    monkeypatch.setattr(images, "MAX_IMAGES", 3)
    _raises(f"images:{tmp_path}", "holds more than 3 images")
    _raises(f"images:{tmp_path / 'c'}", "holds more than 3 images")
    monkeypatch.setattr(images, "MAX_IMAGES", 4)
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "0.01")
    _raises(f"images:{tmp_path}:all:res=64",
            r"the 4 images of .* take 0\.0625 MB at 1x64x64 as float32, more than the 0\.01 MB")
    assert len(load_data(f"images:{tmp_path}:all:res=16")) == 4


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)).save(
        tmp_path / "noise.png")
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "0.001")
    _raises(f"images:{tmp_path}:all:res=1", r"image .*noise\.png holds .* MB, more than")
