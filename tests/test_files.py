"""Writing files (``rcert.files``): atomic, through symlinks, never onto a special file,
modes kept, stdout as ``-``, and the folder lock."""

import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import pytest

from rcert.errors import RcertError
from rcert.files import (
    LOCK_NAME,
    STDOUT,
    atomic_write,
    check_output,
    check_writable,
    locked_folder,
    write_output,
)


def test_writes_text_and_bytes(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(RcertError, match="No space left"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_missing_folder_and_folder_target(tmp_path):
    with pytest.raises(RcertError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "x.csv", "x")
    with pytest.raises(RcertError, match="is a folder"):
        atomic_write(tmp_path, "x")


def test_file_mode_follows_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "m.rcert", b"x")
        (tmp_path / "plain").write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.rcert").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o644


# --- symlinks, special files, modes, the folder's flush ---------------------------------------


def test_a_symlink_is_written_through(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    # A dangling link gets its target created, as open() would.
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "later.csv")
    atomic_write(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "later.csv").read_text() == "made"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.csv", "later.csv",
                                                         "link.csv", "real.csv"]


def _special(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A path to write that is (or links to) something other than a regular file."""
    if kind == "link to /dev/null":
        path = tmp_path / "out.csv"
        path.symlink_to("/dev/null")
        return path, r"it is a character device \(through a symlink\)"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if kind == "fifo":
        return fifo, r"it is a named pipe \(FIFO\)"
    path = tmp_path / "out.csv"
    path.symlink_to(fifo)
    return path, r"it is a named pipe \(FIFO\) \(through a symlink\)"


@pytest.mark.parametrize("kind", ["link to /dev/null", "fifo", "link to fifo"])
def test_a_special_file_is_refused_and_left_alone(tmp_path, kind):
    path, words = _special(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    link = os.readlink(path) if path.is_symlink() else None
    with pytest.raises(RcertError, match=f"^cannot write {re.escape(str(path))}: {words}; "
                                         f"give the path of a regular file$"):
        atomic_write(path, "x")
    with pytest.raises(RcertError, match=f"{words}; use --output - for stdout$"):
        check_writable(path, hint="use --output - for stdout")
    assert sorted(os.listdir(tmp_path)) == before  # no temporary left, nothing replaced
    assert (os.readlink(path) if path.is_symlink() else None) == link
    assert stat.S_ISFIFO(os.stat(path).st_mode) or stat.S_ISCHR(os.stat(path).st_mode)


def test_a_device_itself_is_refused_up_front():
    with pytest.raises(RcertError, match=r"^cannot write /dev/null: it is a character "
                                         r"device; use --output - for stdout$"):
        check_writable("/dev/null", hint="use --output - for stdout")


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_an_existing_file_keeps_its_mode(tmp_path, mode):
    target = tmp_path / "secret.json"
    target.write_text("old")
    target.chmod(mode)
    atomic_write(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == mode
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, "newer")  # through a link: the target's mode
    assert stat.S_IMODE(target.stat().st_mode) == mode and target.read_text() == "newer"


def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    atomic_write(tmp_path / "a.txt", "x")
    assert synced == [False, True]  # the file's bytes, then the folder's entry

    def folders_refuse(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")  # what some file systems answer
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", folders_refuse)
    atomic_write(tmp_path / "a.txt", "y")
    assert (tmp_path / "a.txt").read_text() == "y"


# --- stdout ------------------------------------------------------------------------------------


def test_dash_writes_to_stdout(tmp_path, monkeypatch, capsysbinary):
    monkeypatch.chdir(tmp_path)
    write_output(STDOUT, "text\n")
    write_output(STDOUT, b"\x89PNG\x00")
    assert capsysbinary.readouterr().out == b"text\n\x89PNG\x00"
    assert os.listdir(tmp_path) == []  # no file named "-"
    write_output(tmp_path / "f.txt", "file")
    assert (tmp_path / "f.txt").read_text() == "file"


def test_binary_data_is_not_written_to_a_terminal(monkeypatch, capsysbinary):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    check_output(STDOUT)  # text is fine
    with pytest.raises(RcertError, match=r"^refusing to write binary data to the terminal"):
        check_output(STDOUT, binary=True)
    with pytest.raises(RcertError, match="terminal"):
        write_output(STDOUT, b"\x89PNG")
    assert capsysbinary.readouterr().out == b""


# --- the folder lock ---------------------------------------------------------------------------


def test_a_locked_folder_refuses_a_second_holder_at_once(tmp_path):
    folder = tmp_path
    with locked_folder(folder, "report folder", hint="wait", command="rcert report --x"):
        record = json.loads((folder / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["command"] == "rcert report --x"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["since"])
        started = time.monotonic()
        with pytest.raises(RcertError) as info:
            with locked_folder(folder, "report folder", hint="wait"):
                pytest.fail("a second holder got in")
        assert time.monotonic() - started < 1
        assert str(info.value) == (f"report folder {folder} is in use by rcert pid "
                                   f"{os.getpid()} on host {record['host']} since "
                                   f"{record['since']} (rcert report --x); wait")
    # Let go: the next holder gets in, and the record names no one any more.
    assert (folder / LOCK_NAME).read_bytes() == b""
    with locked_folder(folder, "report folder"):
        pass


def test_a_folder_the_lock_created_for_nothing_is_removed(tmp_path):
    with pytest.raises(RuntimeError), locked_folder(tmp_path / "new", "report folder"):
        raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "new").exists()
    with locked_folder(tmp_path / "made", "report folder") as folder:
        (folder / "kept.txt").write_text("x")
    assert sorted(os.listdir(folder)) == [LOCK_NAME, "kept.txt"]
    with locked_folder(tmp_path, "report folder"):  # there before: kept, even if empty
        pass
    assert tmp_path.is_dir()


def test_a_folder_that_cannot_be_locked_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RcertError, match="it is a file, not a folder"):
        with locked_folder(tmp_path / "file", "report folder"):
            pass
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(RcertError, match=r"its \.lock is not a regular file; remove it$"):
        with locked_folder(tmp_path, "report folder"):
            pass


def test_an_output_that_is_an_input_of_the_run_is_refused(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    link = tmp_path / "alias"
    link.symlink_to(model)
    for output in (model, link):
        with pytest.raises(RcertError, match=r"it is the model this run reads, and writing it "
                                             r"would destroy it; give another output file"):
            check_output(output, inputs={"model": model, "data": "digits:test"})
    assert model.read_bytes() == b"weights"
    check_output(tmp_path / "out.csv", inputs={"model": model, "data": None})


def test_a_path_the_system_cannot_take_is_one_line(tmp_path):
    with pytest.raises(RcertError, match=r"^cannot write .*: File name too long; give another "
                                         r"path$"):
        check_writable(tmp_path / ("x" * 300))
