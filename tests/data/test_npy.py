"""Hostile .npy and .npz files (rcert.data.npy): every declared size is checked before
anything of that size is allocated, and every failure is a one-line RcertError."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rcert.data import npy
from rcert.data.dataset import load_data
from rcert.errors import RcertError

HUGE = (2**24, 2**24)  # 2 PiB of float64


def _header(shape, descr: str = "<f8", version: tuple[int, int] = (1, 0),
            fortran: bool = False, text: str | None = None) -> bytes:
    """An .npy header written by hand, so that it can declare anything."""
    if text is None:
        text = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    body = text.encode("utf-8") + b"\n"
    length = struct.pack("<H" if version == (1, 0) else "<I", len(body))
    return npy.NPY_MAGIC + bytes(version) + length + body


def _raises(spec: str, match: str) -> RcertError:
    with pytest.raises(RcertError, match=match) as info:
        load_data(spec)
    assert "\n" not in str(info.value)
    return info.value


def _member_bytes(array: np.ndarray) -> bytes:
    """``array`` as np.savez stores it in an .npz member."""
    out = io.BytesIO()
    np.lib.format.write_array(out, array)
    return out.getvalue()


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_npy_declaring_a_huge_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    path.write_bytes(_header(HUGE) + bytes(64))
    tracemalloc.start()
    try:
        _raises(str(path), r"huge\.npy declares 2251799813685248 bytes of data but holds 64")
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_member_declaring_a_huge_shape_is_refused(tmp_path: Path, method: int) -> None:
    path = _zip(tmp_path / "huge.npz", {"x.npy": _header(HUGE) + bytes(64)}, method)
    start = time.perf_counter()
    _raises(str(path), r"array 'x' in .*huge\.npz declares 2251799813685248 bytes of data but "
                       r"holds 64")
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("fortran", [False, True])
def test_every_npy_version_and_order_reads_back(tmp_path: Path, version, fortran: bool) -> None:
    array = np.arange(6, dtype=">f4").reshape(2, 3)
    data = (array.T if fortran else array).tobytes()
    (tmp_path / "v.npy").write_bytes(_header((2, 3), ">f4", version, fortran) + data)
    np.testing.assert_array_equal(load_data(f"{tmp_path}/v.npy").x.numpy(), array)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (_header((2, 3), version=(4, 0)), r"format version 4\.0, which rcert does not read"),
        (_header((-2, -4)), r"declares a negative dimension \(-4\)"),
        (_header((2**62, 2**62), "|S0"), r"declares items of 0 bytes"),
        (_header((2,), text="[" * 5000), "is not a readable .npy array"),
        (_header((2,), text="{'descr': 'bogus', 'fortran_order': False, 'shape': (2,)}"),
         "is not a readable .npy array"),
        (_header((2,), text="(1, 2)"), "is not a readable .npy array"),
        (npy.NPY_MAGIC + b"\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{",
         r"is not a readable .npy array \(EOF"),
        (npy.NPY_MAGIC + b"\x01", "is not a readable .npy array"),
        (_header((1,) * 70, "<f8") + bytes(8), r"cannot read data .*maximum supported dimension"),
        (_header((3, 2)) + bytes(40), r"declares 48 bytes of data but holds 40"),
        (_header((3, 2)) + bytes(56), r"declares 48 bytes of data but holds 56"),
    ],
    ids=["version", "negative", "zero-itemsize", "deep", "descr", "not-dict", "long-header",
         "cut-magic", "70-dims", "truncated", "trailing"],
)
def test_hostile_npy_headers(tmp_path: Path, header: bytes, match: str) -> None:
    (tmp_path / "h.npy").write_bytes(header)
    _raises(f"{tmp_path}/h.npy", match)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "is neither a .npy nor a .npz file"),
     (b"hello, world", "is neither a .npy nor a .npz file"),
     (b"PK\x03\x04 truncated zip", r"cannot read data .*File is not a zip file")],
)
def test_files_that_are_not_arrays(tmp_path: Path, content: bytes, match: str) -> None:
    (tmp_path / "a.npy").write_bytes(content)
    _raises(f"{tmp_path}/a.npy", match)


def test_npz_member_sizes_come_from_the_table_of_contents(tmp_path: Path, monkeypatch) -> None:
    # A member whose table-of-contents size passes the ceiling is refused before a byte of
    # it is decompressed: the declared size is lied up to 100 MB in the central directory.
    path = _zip(tmp_path / "d.npz", {"x.npy": _member_bytes(np.zeros((2, 2)))})
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")
    raw[entry + 24: entry + 28] = struct.pack("<I", 100 * 2**20)
    path.write_bytes(bytes(raw))
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "1")
    _raises(str(path), r"array 'x' in .*d\.npz declares 100 MB, more than the 1 MB rcert reads.*"
                       r"RCERT_MAX_FILE_MB")


def test_npz_member_larger_than_its_header_declares(tmp_path: Path) -> None:
    member = _member_bytes(np.zeros((2, 2))) + bytes(8)
    _raises(str(_zip(tmp_path / "d.npz", {"x.npy": member})),
            r"array 'x' in .*declares 32 bytes of data but holds 40")


def test_npz_with_too_many_members(tmp_path: Path) -> None:
    members = {f"a{i}.npy": b"" for i in range(npy.MAX_MEMBERS + 1)}
    _raises(str(_zip(tmp_path / "d.npz", members)), r"holds 1001 members, more than the 1000")


def test_npz_with_a_huge_table_of_contents(tmp_path: Path) -> None:
    members = {f"{i}{'n' * 60_000}.npy": b"" for i in range(20)}
    _raises(str(_zip(tmp_path / "d.npz", members)), r"-byte table of contents")


def test_npz_with_two_arrays_of_one_name(tmp_path: Path) -> None:
    member = _member_bytes(np.zeros((2, 2)))
    path = _zip(tmp_path / "d.npz", {"x.npy": member, "x": member})  # both are key x
    _raises(str(path), "two arrays of the same name")


def test_npz_encrypted_or_oddly_compressed_members(tmp_path: Path) -> None:
    member = _member_bytes(np.zeros((2, 2)))
    path = _zip(tmp_path / "b.npz", {"x.npy": member}, zipfile.ZIP_BZIP2)
    _raises(str(path), r"compressed with zip method 12; rcert reads the stored or deflated")
    path = _zip(tmp_path / "e.npz", {"x.npy": member})
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")
    raw[entry + 8] |= 0x1  # the "encrypted" flag, as the table of contents states it
    path.write_bytes(bytes(raw))
    _raises(str(path), r"array 'x' in .*e\.npz is encrypted")


def test_npz_members_that_are_not_arrays_or_are_damaged(tmp_path: Path) -> None:
    _raises(str(_zip(tmp_path / "t.npz", {"notes.txt": b"hello"})),
            r"array 'notes.txt' in .*is not a readable .npy array")
    path = _zip(tmp_path / "c.npz", {"x.npy": _member_bytes(np.arange(4000.0).reshape(2, -1))},
                zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"x.npy") + len("x.npy")
    raw[start + 200: start + 260] = bytes(60)  # inside the deflate stream, past the header
    path.write_bytes(bytes(raw))
    _raises(str(path), r"cannot read array 'x' in .*c\.npz \(")


def test_npz_with_no_input_array(tmp_path: Path) -> None:
    _raises(str(_zip(tmp_path / "e.npz", {})), r"holds no input array \(keys: none\)")
    np.savez(tmp_path / "y.npz", y=np.arange(3))
    _raises(f"{tmp_path}/y.npz", r"holds no input array \(keys: y\)")


def test_the_ceiling_applies_to_genuine_arrays(tmp_path: Path, monkeypatch) -> None:
    np.save(tmp_path / "v.npy", np.zeros((64, 64)))  # 32 KB
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "0.01")
    _raises(f"{tmp_path}/v.npy", r"v\.npy declares 0\.03125 MB, more than the 0\.01 MB")
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "1")
    assert len(load_data(f"{tmp_path}/v.npy")) == 64
