"""The global guard: whatever escapes a command ends as one line and a documented exit code.

* A user error (:class:`~rcert.errors.RcertError`, a bad option) is ``rcert: error: ...`` and
  exit 2; the command line's own handling in :mod:`rcert.cli.main`.
* Running out of memory (``MemoryError``, numpy's and torch's allocation failures) is one
  line suggesting a smaller ``--memory-mb`` or ``--limit``, exit 2: the run asked for more
  than the machine has, which a setting fixes.
* Anything else is a bug in rcert: one line naming it and where it happened, exit
  :data:`INTERNAL` (70, ``EX_SOFTWARE`` of sysexits.h), and the traceback kept in a log file
  (:func:`crash_log`) or, with ``RCERT_DEBUG=1``, printed.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

#: Exit status of an internal error (a bug in rcert).
INTERNAL = 70


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n`` for a newline in a path, say),
    so that a message is always exactly one line on the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def debugging() -> bool:
    """Whether ``RCERT_DEBUG`` asks for tracebacks."""
    return os.environ.get("RCERT_DEBUG", "") not in ("", "0")


def print_traceback(exc: BaseException) -> None:
    """The traceback behind ``exc`` (and its cause) on stderr, when debugging."""
    if debugging():
        traceback.print_exception(exc, file=sys.stderr)


def silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush does not fail
    again on a pipe whose reader has gone."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def out_of_memory_line() -> str:
    """The one line for an allocation failure."""
    return ("rcert: error: out of memory: the run needed more memory than this machine has; "
            "lower --memory-mb (smaller chunks of work), --n-samples or the number of inputs "
            "(--limit), or, when training, --hidden or --batch-size")


def _log_folder() -> Path:
    explicit = os.environ.get("RCERT_LOG_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".local", "state")
    return Path(state) / "rcert"


def crash_log(exc: BaseException, argv: Sequence[str]) -> Path | None:
    """Write the traceback of ``exc`` with what is needed to reproduce it to a new log file
    (``$RCERT_LOG_DIR``, else ``$XDG_STATE_HOME/rcert``, else the temporary folder); return
    its path, or None when no folder could take it."""
    from rcert import __version__

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = "".join([
        f"rcert {__version__}, Python {platform.python_version()}, {platform.platform()}\n",
        f"command: rcert {' '.join(argv)}\n\n",
        *traceback.format_exception(exc),
    ])
    for folder in (_log_folder(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"rcert-crash-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback inside rcert, as ``file:line``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}rcert{os.sep}" in f.filename] or frames
    if not ours:
        return "an unknown place"
    frame = ours[-1]
    parts = Path(frame.filename).parts
    short = "/".join(parts[parts.index("rcert"):]) if "rcert" in parts else frame.filename
    return f"{short}:{frame.lineno}"


def internal_error_line(exc: BaseException, log: Path | None) -> str:
    """The one line for a bug: what failed, where, and what to send with the report."""
    message = one_line(str(exc))[:160]
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    kept = (f"the traceback is in {log}" if log is not None
            else "rerun with RCERT_DEBUG=1 to see the traceback")
    return (f"rcert: internal error: {what} (at {_where(exc)}); this is a bug in rcert, "
            f"please report it with the command line and {kept}")
