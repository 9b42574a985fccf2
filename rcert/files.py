"""Writing files so that a failure never leaves a half-written or corrupted one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rcert.errors import RcertError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before long work, if ``path`` cannot be written: return it as a Path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise RcertError(f"cannot write {path}: folder {path.parent} does not exist; "
                         f"create it first")
    if path.is_dir():
        raise RcertError(f"cannot write {path}: it is a folder; give a file name")
    return path


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` all at once or not at all.

    The bytes go to a temporary file in the same folder, are flushed to disk, and then
    replace ``path`` in one rename; an existing file at ``path`` stays intact until then.
    """
    path = check_writable(path)
    folder = path.parent
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise RcertError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RcertError(f"cannot write {path}: {exc.strerror}") from exc
        raise
