"""Hostile IDX (MNIST) files, plain and gzipped (rcert.data.idx): the header's declared size
is checked first, and nothing past it is read or decompressed."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from rcert.data.dataset import load_data
from rcert.errors import RcertError

IMAGES = "t10k-images-idx3-ubyte"


def _header(dims: tuple[int, ...], magic: int = 0x00000803) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims)


def _gzip_zeros(prefix: bytes, megabytes: int) -> bytes:
    """``prefix`` and ``megabytes`` MB of zeros, gzipped a MB at a time (about 1 KB each)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    chunks = [packer.compress(prefix)]
    chunks += [packer.compress(bytes(2**20)) for _ in range(megabytes)]
    return b"".join(chunks) + packer.flush()


def _raises(folder: Path, match: str) -> RcertError:
    with pytest.raises(RcertError, match=match) as info:
        load_data(f"mnist:{folder}")
    assert "\n" not in str(info.value)
    return info.value


def test_a_gzip_bomb_is_refused_after_its_declared_size(tmp_path: Path) -> None:
    bomb = _gzip_zeros(_header((3, 28, 28)), 50)
    assert len(bomb) < 100_000
    (tmp_path / f"{IMAGES}.gz").write_bytes(bomb)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _raises(tmp_path, r"holds more than the 2352 bytes of data its header promises")
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("gz", [False, True])
def test_a_huge_declared_size_is_refused_before_reading(tmp_path: Path, gz: bool,
                                                        monkeypatch) -> None:
    monkeypatch.delenv("RCERT_MAX_FILE_MB", raising=False)
    raw = _header((2**32 - 1, 2**32 - 1, 2**32 - 1)) + bytes(100)
    (tmp_path / (IMAGES + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    _raises(tmp_path,
            r"declares 7\.556e\+22 MB, more than the 4096 MB rcert reads.*RCERT_MAX_FILE_MB")


def test_a_file_shorter_than_declared(tmp_path: Path) -> None:
    (tmp_path / IMAGES).write_bytes(_header((3, 28, 28)) + bytes(100))
    _raises(tmp_path, r"holds only 100 of the 2352 bytes of data its header promises")


def _flip_deflate(raw: bytes) -> bytes:
    damaged = bytearray(raw)
    damaged[20:40] = b"\xff" * 20  # inside the deflate stream, after the 10-byte gzip header
    return bytes(damaged)


def _bad_crc(raw: bytes) -> bytes:
    return raw[:-8] + bytes(4) + raw[-4:]  # the trailer's CRC-32, zeroed


@pytest.mark.parametrize(
    ("damage", "match"),
    [(_flip_deflate, r"cannot read .*\.gz \("), (_bad_crc, r"cannot read .*CRC check failed"),
     (lambda raw: raw + b"trailing junk", r"cannot read .*\.gz \(")],
    ids=["deflate", "crc", "trailing"],
)
def test_corrupt_gzip_streams(tmp_path: Path, damage, match: str) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    raw = gzip.compress(_header((3, 28, 28)) + images.tobytes())
    (tmp_path / f"{IMAGES}.gz").write_bytes(damage(raw))
    _raises(tmp_path, match)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (_header((3,) * 255, magic=0x000008FF), r"magic 0x000008ff, expected 0x00000803"),
        (_header((3, 28, 28), magic=0x00000D03), r"magic 0x00000d03, expected 0x00000803"),
        (_header((3, 0, 28)), r"declares empty images of 0x28 pixels"),
        (_header((3,))[:7], "ends inside its header"),
    ],
    ids=["255-dims", "float-type", "empty-images", "cut-header"],
)
def test_hostile_headers(tmp_path: Path, header: bytes, match: str) -> None:
    (tmp_path / IMAGES).write_bytes(header)
    _raises(tmp_path, match)


def test_no_images_selects_no_rows(tmp_path: Path) -> None:
    (tmp_path / IMAGES).write_bytes(_header((0, 28, 28)))
    _raises(tmp_path, "selects no rows")


def test_labels_are_read_as_carefully_as_images(tmp_path: Path) -> None:
    (tmp_path / IMAGES).write_bytes(_header((1, 2, 2)) + bytes(4))
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(_gzip_zeros(_header((1,), magic=0x00000801), 5))
    _raises(tmp_path, r"labels-idx1-ubyte\.gz holds more than the 1 bytes of data")
    labels.write_bytes(gzip.compress(_header((1,), magic=0x00000801) + b"\x07"))
    assert load_data(f"mnist:{tmp_path}").y.tolist() == [7]
