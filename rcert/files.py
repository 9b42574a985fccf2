"""Writing files so that a failure never leaves a half-written or corrupted one, and the
lock that keeps two runs out of one folder.

:func:`atomic_write` writes through a symlink (the link stays, its target is replaced),
keeps an existing file's permission bits, and refuses a target that is not a regular file
(a device such as ``/dev/stdout``, a named pipe, a socket) rather than replacing it;
:func:`write_output` takes :data:`STDOUT` (``-``) for standard output.
:func:`locked_folder` holds an OS lock on ``FOLDER/.lock`` for as long as a run writes into
the folder; the OS releases it when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rcert.errors import RcertError, with_hint
from rcert.reading import kind_of

#: The output name that means standard output, as for most command-line tools.
STDOUT = "-"

#: The lock file of a folder (:func:`locked_folder`); hidden, and never part of its content.
LOCK_NAME = ".lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



def _resolved(path: Path) -> tuple[Path, str]:
    """Where writing ``path`` lands (a symlink's final target), and the words that say a
    symlink was followed, for messages."""
    if path.is_symlink():
        return Path(os.path.realpath(path)), " (through a symlink)"
    return path, ""


def check_writable(path: str | os.PathLike, hint: str = "") -> Path:
    """Fail early, before long work, if ``path`` cannot be written: return it as a Path.

    Its folder must exist, and what is there now (followed through symlinks) must be
    nothing or a regular file: a folder, a device, a named pipe or a socket is refused,
    since replacing it would break it and writing into it is not writing a file; so is the
    file this process's stdout or stderr goes to (``/dev/stdout`` while stdout is redirected
    to a file). ``hint`` ends the message then (e.g. how to write to stdout instead).
    """
    path = Path(path)
    try:
        return _check_writable(path, hint)
    except OSError as exc:  # e.g. a name too long, a loop of symlinks
        raise RcertError(f"cannot write {path}: {exc.strerror or exc}; give another path"
                         ) from None


def _check_writable(path: Path, hint: str) -> Path:
    target, through = _resolved(path)
    if not target.parent.is_dir():
        raise RcertError(f"cannot write {path}: folder {target.parent} does not exist; "
                         f"create it first")
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise RcertError(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise RcertError(f"cannot write {path}: it is a folder{through}; give a file name")
    if not stat.S_ISREG(info.st_mode):
        raise RcertError(f"cannot write {path}: it is {kind_of(info.st_mode)}{through}"
                         f"{with_hint(hint or 'give the path of a regular file')}")
    if _is_own_stream(info):
        raise RcertError(f"cannot write {path}: it is the file this process's stdout or "
                         f"stderr goes to{through}"
                         f"{with_hint(hint or 'replacing it would lose what they wrote')}")
    return path


def _is_own_stream(info: os.stat_result) -> bool:
    """Whether ``info`` is the file behind this process's stdout or stderr (``/dev/stdout``
    while stdout is redirected to a file): replacing it would cut that output off."""
    for fd in (1, 2):
        try:
            own = os.fstat(fd)
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (info.st_dev, info.st_ino):
            return True
    return False


def check_output(path: str | os.PathLike, *, binary: bool = False, hint: str = "",
                 inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """Fail early if the output ``path`` cannot be written: :data:`STDOUT`, refused for
    ``binary`` data while stdout is a terminal, or a file (:func:`check_writable`) that is
    none of the run's ``inputs`` (what each is, by path: ``{"model": ...}``), which
    writing the output would destroy."""
    if str(path) != STDOUT:
        check_writable(path, hint)
        for what, source in (inputs or {}).items():
            if source is not None and _same_file(path, source):
                raise RcertError(f"cannot write {path}: it is the {what} this run reads, and "
                                 f"writing it would destroy it; give another output file")
    elif binary and sys.stdout.isatty():
        raise RcertError("refusing to write binary data to the terminal; redirect stdout "
                         "(> file) or give a file name instead of -")


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either is missing: they cannot be one file
        return False


def write_output(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to stdout if ``path`` is :data:`STDOUT`, else to the file atomically
    (:func:`atomic_write`); bytes go to stdout unchanged (:func:`check_output` first)."""
    if str(path) != STDOUT:
        atomic_write(path, data)
        return
    check_output(path, binary=isinstance(data, bytes))
    if isinstance(data, str):
        sys.stdout.write(data)
    else:
        sys.stdout.flush()  # what was printed before comes first
        sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, so that a rename survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is done
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` all at once or not at all.

    The bytes go to a temporary file in the same folder, are flushed to disk, and then
    replace ``path`` in one rename (the folder is flushed too); an existing file at
    ``path`` stays intact until then. A symlink is written through: its target is
    replaced and the link stays. An existing file keeps its permission bits; a new one
    gets those a plain ``open()`` would give. See :func:`check_writable` for what is refused.
    """
    path = check_writable(path)
    target, _ = _resolved(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    except OSError as exc:
        raise RcertError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise RcertError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        # mkstemp creates the file private (0600): give it the mode the old file had.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RcertError(f"cannot write {path}: {exc.strerror}") from exc
        raise
    _sync_folder(target.parent)


def _holder(command: str | None) -> bytes:
    """What the lock file records about this process, as one JSON line."""
    now = datetime.datetime.now(datetime.UTC)
    if command is None:
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "since": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "command": command[:300]}) + "\n").encode()


def _describe_holder(fd: int) -> str:
    """The holder a lock file records, in words; the holder writes it just after taking
    the lock, so an empty record is read again for a moment before giving up on it."""
    for _ in range(20):
        raw = os.pread(fd, 4096, 0)
        if raw.endswith(b"\n"):
            break
        time.sleep(0.025)
    try:
        who = json.loads(raw)
        text = (f"rcert pid {int(who['pid'])} on host {who['host']} since {who['since']} "
                f"({who['command']})")
    except (ValueError, KeyError, TypeError):
        return "another rcert process"
    return " ".join(text.split())  # one line, whatever the record holds


def _open_lock(folder: Path, purpose: str) -> int:
    """The lock file's descriptor, the file created if need be; a one-line error if the
    folder cannot hold it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise RcertError(f"cannot use {purpose} {folder}: it is a file, not a folder; "
                         f"give a folder") from None
    except OSError as exc:
        raise RcertError(f"cannot use {purpose} {folder}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RcertError(f"cannot use {purpose} {folder}: its {LOCK_NAME} is not a regular "
                         f"file; remove it")
    return fd


def _lock(folder: Path, purpose: str, hint: str) -> int:
    """An open descriptor of ``folder/.lock`` holding its exclusive lock."""
    while True:
        fd = _open_lock(folder, purpose)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _describe_holder(fd) if exc.errno in (errno.EAGAIN, errno.EACCES) else ""
            os.close(fd)
            if not holder:
                raise RcertError(f"cannot lock {purpose} {folder}: {exc.strerror}") from None
            raise RcertError(f"{purpose} {folder} is in use by {holder}{with_hint(hint)}"
                             ) from None
        try:
            current = os.stat(folder / LOCK_NAME, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        # The holder before us removed the lock file of a folder it had created, after we
        # opened it: our lock is on a file that no longer exists. Take the new one.
        os.close(fd)


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike, purpose: str, *, hint: str = "",
                  command: str | None = None) -> Iterator[Path]:
    """Hold the folder's lock while the block runs; yield the folder as a Path.

    ``folder`` is created if need be. The lock is an OS lock (``flock``) on
    ``folder/.lock``, which records the holder (pid, host, start time in UTC and
    ``command``, by default this process's command line); the OS drops it when the process
    ends, even when it is killed. A second holder fails at once, without waiting, with a
    one-line RcertError that names ``purpose`` ("report folder"), the holder and ``hint``.
    A folder this call created that holds nothing but the lock file when the block ends (a
    run that failed before writing anything) is removed again.
    """
    folder = Path(folder)
    created = not folder.exists()
    fd = _lock(folder, purpose, hint)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder(command), 0)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a stale record would name a process that is gone
            # Removed while still locked: a process that opened the file meanwhile finds
            # it locked, or sees it was removed (:func:`_lock`) and starts over.
            if created and os.listdir(folder) == [LOCK_NAME]:
                (folder / LOCK_NAME).unlink()
                folder.rmdir()
        os.close(fd)
