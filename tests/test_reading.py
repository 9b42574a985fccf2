"""The input layer: regular files only, sizes checked before reading, documents bounded."""

import os
import re
import socket
import time

import pytest

from rcert import reading
from rcert.errors import RcertError
from rcert.reading import FileLimits


@pytest.fixture
def specials(tmp_path):
    """A folder, a FIFO, a socket and a character device, by what the message must say."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    yield {"a folder": tmp_path, "a named pipe (FIFO)": fifo, "a socket": sock_path,
           "a character device": "/dev/zero"}
    sock.close()


def test_only_regular_files_are_opened_and_the_message_says_what_the_path_is(specials):
    for kind, path in specials.items():
        started = time.monotonic()
        expected = f"model {path} is {kind}, not a regular file; give the file"
        with pytest.raises(RcertError, match=f"^{re.escape(expected)}$"):
            reading.open_regular(path, "model", "give the file")
        with pytest.raises(RcertError, match=re.escape(f"is {kind}, not a regular file")):
            reading.read_json(path, "baseline")
        assert time.monotonic() - started < 5  # a FIFO without a writer never blocks


def test_a_missing_file_and_a_symlink_to_a_regular_file(tmp_path):
    with pytest.raises(RcertError, match=r"^data .*nope does not exist; check the path$"):
        reading.check_regular(tmp_path / "nope", "data", "check the path")
    (tmp_path / "real.json").write_text('{"a": 1}')
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    assert reading.read_json(tmp_path / "link.json", "result") == {"a": 1}


def test_sizes_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (3 * 2**20))
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "2")
    with pytest.raises(RcertError, match=r"holds 3 MB, more than the 2 MB rcert reads; .* "
                                         r"raise RCERT_MAX_FILE_MB"):
        reading.read_bytes(path, "checkpoint")
    monkeypatch.setenv("RCERT_MAX_FILE_MB", "4")
    assert len(reading.read_bytes(path, "checkpoint")) == 3 * 2**20
    monkeypatch.setenv("RCERT_MAX_DOCUMENT_MB", "1")
    with pytest.raises(RcertError, match="raise RCERT_MAX_DOCUMENT_MB"):
        reading.read_text(path, "config")


@pytest.mark.parametrize(("nbytes", "actual", "message"), [
    (2**50, None, r"declares 1\.074e\+09 MB, more than the 4096 MB"),
    (100, 99, r"declares 100 bytes of data but holds 99; the file is damaged"),
    (-1, None, r"declares a negative size"),
])
def test_declared_sizes_are_checked_against_the_file_and_the_ceiling(nbytes, actual, message):
    with pytest.raises(RcertError, match=message):
        reading.check_declared(nbytes, "data", "x.npy", actual=actual,
                               limits=FileLimits())
    assert reading.check_declared(100, "data", "x.npy", actual=100) == 100


def test_json_depth_is_bounded_before_parsing(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RcertError, match=r"nests arrays or objects more than 64 deep"):
        reading.read_json(deep, "baseline")
    # Brackets inside strings nest nothing.
    text = '{"a": "' + "[" * 500 + '", "b": [[1]]}'
    assert reading.parse_json(text, "doc")["b"] == [[1]]
    assert reading.nesting_depth('{"a": [[{"b": "]]]]"}]]}', 64) == 4


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": NaN}', r"holds NaN, which strict JSON does not allow"),
    ('{"a": Infinity}', r"holds Infinity"),
    ('{"a": ', r"is not valid JSON \(Expecting value at line 1, column 7\)"),
])
def test_json_is_parsed_strictly(text, message):
    with pytest.raises(RcertError, match=rf"^doc: |^doc {message}|{message}"):
        reading.parse_json(text, "doc")


def test_text_must_be_utf8_and_toml_valid(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"a = '\xff'")
    with pytest.raises(RcertError, match=r"is not UTF-8 text \(byte 5\)"):
        reading.read_toml(bad, "config")
    bad.write_text("a = [")
    with pytest.raises(RcertError, match=r"^config .*bad.toml is not valid TOML: "):
        reading.read_toml(bad, "config")
    bad.write_text("a = " + "[" * 5000 + "]" * 5000)
    with pytest.raises(RcertError, match="nests too deep to read"):
        reading.read_toml(bad, "config")


@pytest.mark.parametrize(("value", "message"), [
    ("lots", r"RCERT_MAX_FILE_MB must be a number of MB > 0 such as 8192, got 'lots'"),
    ("-5", r"RCERT_MAX_FILE_MB must be a number of MB > 0"),
    ("nan", r"RCERT_MAX_FILE_MB must be a number of MB > 0"),
])
def test_limits_from_the_environment_are_checked(value, message):
    with pytest.raises(RcertError, match=message):
        FileLimits.from_env({"RCERT_MAX_FILE_MB": value})
    assert FileLimits.from_env({"RCERT_MAX_DOCUMENT_MB": "12"}).document_mb == 12.0
    assert FileLimits.from_env({}) == FileLimits()


def test_a_number_too_long_to_convert_is_one_line():
    with pytest.raises(RcertError, match=r"^doc is not valid JSON \(Exceeds the limit"):
        reading.parse_json('{"a": ' + "1" * 5000 + "}", "doc")
