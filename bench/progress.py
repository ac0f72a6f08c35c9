"""Progress on stderr for phases that take more than a moment.

A redrawn bar on a terminal; on a pipe (CI logs) a plain line every few seconds instead.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

WIDTH = 30


class Progress:
    def __init__(
        self, label: str, total: int, stream: IO[str] | None = None, every: float = 5.0
    ) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every
        self.t0 = time.monotonic()
        self.last = self.t0
        self.done = 0
        self.shown = False

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._show(now)

    def _show(self, now: float, end: str = "") -> None:
        frac = min(self.done / self.total, 1.0)
        elapsed = now - self.t0
        if self.tty:
            bar = "#" * int(frac * WIDTH)
            self.stream.write(
                f"\r  {self.label:<34} [{bar:<{WIDTH}}] {self.done:>9,}/{self.total:,} "
                f"{elapsed:6.1f}s{end}"
            )
        else:
            self.stream.write(
                f"  {self.label}: {self.done:,}/{self.total:,} ({frac:.0%}) after {elapsed:.1f}s\n"
            )
        self.stream.flush()
        self.shown = True

    def finish(self, done: int) -> None:
        """Record the final count (shown by ``close`` if the bar was drawn at all)."""
        self.done = done

    def close(self) -> None:
        # Short phases leave no trace; long ones end with their final count.
        if self.shown:
            self._show(time.monotonic(), end="\n" if self.tty else "")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def note(text: str) -> None:
    """A status line between phases."""
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()
