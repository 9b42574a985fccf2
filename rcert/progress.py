"""Progress on stderr for long work; stdout stays clean for machine-readable output."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A one-line progress indicator.

    On a terminal the line is redrawn in place (at most ten times a second); elsewhere
    (CI logs, pipes) a line is printed at each tenth of the work, so logs stay short.

    Parameters
    ----------
    total
        Units of work expected.
    desc
        What is being done, printed before the counts.
    enabled
        False makes every method a no-op.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.status = ""
        self._tty = self.enabled and self.stream.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, n: int = 1, status: str = "") -> None:
        """Record ``n`` more units done, with an optional status text (e.g. a loss)."""
        if not self.enabled:
            return
        self.done = min(self.done + n, self.total)
        self.status = status or self.status
        now = time.monotonic()
        decile = 10 * self.done // self.total
        if self._tty and (now - self._last_draw > 0.1 or self.done == self.total):
            self._last_draw = now
            self.stream.write("\r" + self._line(now))
            self.stream.flush()
        elif not self._tty and decile > self._last_decile:
            self._last_decile = decile
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()

    def _line(self, now: float) -> str:
        pct = 100 * self.done / self.total
        text = f"{self.desc}: {pct:5.1f}% ({self.done}/{self.total}) {now - self._start:6.1f}s"
        return f"{text} {self.status}".rstrip()

    def close(self) -> None:
        """End the line on a terminal."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
