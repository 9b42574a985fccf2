"""Every path load_data opens, whichever reader opens it: a named pipe, a socket, a device or
a folder where a file belongs (or the reverse) is a one-line error saying what the path is,
returned at once, never a hang on a FIFO or an endless read of /dev/zero."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from rcert.data.dataset import load_data
from rcert.errors import RcertError

KINDS = {"fifo": r"a named pipe \(FIFO\)", "socket": "a socket", "folder": "a folder",
         "device": "a character device", "file": "a regular file"}

IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


@contextlib.contextmanager
def _within(seconds: int) -> Iterator[None]:
    """Fail, rather than hang the test run, if the block blocks (on a FIFO, say)."""
    def hung(signum, frame):
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def special() -> Iterator[Callable[[Path, str], None]]:
    """Makes ``path`` a file of the given kind (a key of KINDS)."""
    sockets = []

    def make(path: Path, kind: str) -> None:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            sockets.append(socket.socket(socket.AF_UNIX))
            sockets[-1].bind(str(path))
        elif kind == "folder":
            path.mkdir()
        elif kind == "device":
            path.symlink_to("/dev/zero")
        else:
            path.write_bytes(b"")

    yield make
    for sock in sockets:
        sock.close()


def _target(reader: str, folder: Path) -> tuple[str, Path]:
    """The spec that makes ``reader`` open a file, and that file."""
    if reader in ("npy", "npz"):
        return f"{folder}/x.{reader}", folder / f"x.{reader}"
    if reader == "cifar10":
        return f"cifar10:{folder}", folder / "test_batch"
    if reader == "mnist-labels":  # the images are fine: the labels are opened next
        (folder / IMAGES).write_bytes(struct.pack(">4I", 0x803, 1, 1, 1) + b"\0")
    return f"mnist:{folder}", folder / (IMAGES if reader == "mnist-images" else LABELS)


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder", "device"])
@pytest.mark.parametrize("reader", ["npy", "npz", "mnist-images", "mnist-labels", "cifar10"])
def test_special_files_are_refused_by_type(tmp_path: Path, special, reader: str,
                                           kind: str) -> None:
    spec, path = _target(reader, tmp_path)
    special(path, kind)
    with _within(5), pytest.raises(RcertError) as info:
        load_data(spec)
    message = str(info.value)
    assert re.match(rf"data {re.escape(str(path))} is {KINDS[kind]}, not a regular file; ",
                    message), message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "file"])
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_dataset_folder_that_is_not_a_folder(tmp_path: Path, special, name: str,
                                               kind: str) -> None:
    folder = tmp_path / "d"
    special(folder, kind)
    with _within(5), pytest.raises(RcertError, match=(
        rf"^{name} folder {re.escape(str(folder))} is {KINDS[kind]}, not a folder; pass the "
        rf"folder that holds the files$")):
        load_data(f"{name}:{folder}")


def test_a_genuine_file_next_to_special_ones_still_loads(tmp_path: Path, special) -> None:
    special(tmp_path / "t10k-labels-idx1-ubyte.gz", "fifo")  # only the plain name is looked up
    (tmp_path / LABELS).write_bytes(struct.pack(">2I", 0x801, 1) + b"\x03")
    (tmp_path / IMAGES).write_bytes(struct.pack(">4I", 0x803, 1, 1, 1) + b"\x80")
    data = load_data(f"mnist:{tmp_path}")
    assert data.y.tolist() == [3]
    np.testing.assert_allclose(data.x.numpy().ravel(), [128 / 255])
