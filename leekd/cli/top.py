"""``leek-shell top``: leekd's queues, workers and latest failures, redrawn every second.

No curses: the view is drawn with a handful of ANSI escapes (alternate screen, cursor home,
erase line) that every terminal emulator understands, and keys are read in cbreak mode, so
``q`` quits without Enter; Ctrl-C quits too. It needs a terminal on both ends and says so
otherwise: scripts want ``leek-shell stats --json``. Rates are per second, measured between
two refreshes from leekd's counters.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import sys
import termios
import time
import tty
from datetime import datetime
from typing import Any, TextIO

import leek
from leek.errors import LeekConfigError, LeekConnectionError

from ..conf import format_duration

ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
LEAVE = "\x1b[?25h\x1b[?1049l"
HOME, ERASE_LINE, ERASE_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
BOLD, RED, RESET = "\x1b[1m", "\x1b[31m", "\x1b[0m"
COLUMNS = ("waiting", "scheduled", "running", "succeeded", "failed", "retried")
QUIT_KEYS = (b"q", b"Q", b"\x03")

Sample = tuple[float, dict[str, Any]]  # (monotonic time, stats)


def rates(before: Sample | None, after: Sample) -> dict[str, tuple[float, float]]:
    """Per queue: (finished per second, failed per second) between two samples."""
    if before is None:
        return {}
    dt = after[0] - before[0]
    if dt <= 0:
        return {}
    old = before[1].get("queues", {})
    out = {}
    for queue, now in after[1].get("queues", {}).items():
        was = old.get(queue, {})
        done = (now.get("succeeded", 0) + now.get("failed", 0)) - (
            was.get("succeeded", 0) + was.get("failed", 0)
        )
        failed = now.get("failed", 0) - was.get("failed", 0)
        out[queue] = (max(done, 0) / dt, max(failed, 0) / dt)
    return out


def render(
    stats: dict[str, Any],
    failures: list[dict[str, Any]],
    per_second: dict[str, tuple[float, float]],
    where: str,
    problem: str = "",
) -> list[str]:
    """The frame as lines (without escapes but for bold and red): pure, for the tests."""
    workers = stats.get("workers", {})
    lines = [
        f"{BOLD}leekd {stats.get('version', '?')} at {where}{RESET}  up "
        f"{format_duration(stats.get('uptime', 0))}  workers {workers.get('busy', 0)}/"
        f"{workers.get('total', 0)} busy  {stats.get('waiting', 0)} waiting  "
        f"{stats.get('connections', 0)} connection(s)  {datetime.now():%H:%M:%S}",
        "q or Ctrl-C quits" + (f"   {RED}{problem}{RESET}" if problem else ""),
        "",
    ]
    queues = stats.get("queues", {})
    rows = [("queue", *COLUMNS, "done/s", "failed/s")]
    for queue, counts in sorted(queues.items()):
        done, bad = per_second.get(queue, (None, None))
        rows.append(
            (
                queue,
                *(str(counts.get(c, 0)) for c in COLUMNS),
                "-" if done is None else f"{done:.1f}",
                "-" if bad is None else f"{bad:.1f}",
            )
        )
    if len(rows) == 1:
        lines.append("no tasks seen since leekd started")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for n, r in enumerate(rows):
            cells = [r[0].ljust(widths[0])] + [
                v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)
            ]
            line = "  ".join(cells)
            lines.append(f"{BOLD}{line}{RESET}" if n == 0 else line)
    lines += ["", f"{BOLD}latest failures{RESET}"]
    if not failures:
        lines.append("none")
    for f in failures:
        when = f.get("failed_at", "")[11:19]
        note = " (retried)" if f.get("retried") else ""
        message = " ".join(str(f.get("message", "")).split())
        lines.append(
            f"#{f.get('id')} {when} {f.get('queue')} {f.get('name')}: "
            f"{RED}{f.get('exc_type', '').rpartition('.')[2]}{RESET}: {message}{note}"
        )
    return lines


class Screen:
    """The terminal while ``top`` runs: cbreak keys, alternate screen, restored on exit."""

    def __init__(self, keys: TextIO, out: TextIO) -> None:
        self.fd = keys.fileno()
        self.out = out
        self._saved: list[Any] | None = None

    def __enter__(self) -> Screen:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        self.out.write(ENTER)
        self.out.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.write(LEAVE)
        self.out.flush()
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def draw(self, lines: list[str]) -> None:
        size = shutil.get_terminal_size()
        shown = [fit(line, size.columns) + ERASE_LINE for line in lines[: size.lines - 1]]
        self.out.write(HOME + "\n".join(shown) + "\n" + ERASE_BELOW)
        self.out.flush()

    def quit_pressed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a key; True if it says quit."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 64)
                if not data or any(k in data for k in QUIT_KEYS):
                    return True
        return False


def fit(line: str, width: int) -> str:
    """Cut a line to the terminal's width, not counting the escapes in it."""
    visible = len(line) - sum(line.count(e) * len(e) for e in (BOLD, RED, RESET))
    if visible <= width:
        return line
    plain = line.replace(BOLD, "").replace(RED, "").replace(RESET, "")
    return plain[: max(width - 1, 0)] + "…"


def cmd_top(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    if not (sys.stdin.isatty() and out.isatty()):
        raise LeekConfigError(
            "top draws a live view and needs a terminal (stdin and stdout); in scripts use "
            "`leek-shell stats --json`"
        )
    before: Sample | None = None
    stats: dict[str, Any] = {}
    failures: list[dict[str, Any]] = []
    try:
        with Screen(sys.stdin, out) as screen:
            while True:
                problem = ""
                try:
                    stats, failures = (
                        client.stats(),
                        client.request("failures", limit=args.failures),
                    )
                    sample = (time.monotonic(), stats)
                    per_second = rates(before, sample)
                    before = sample
                except LeekConnectionError as exc:
                    problem, per_second = f"unreachable: {exc}", {}
                screen.draw(render(stats, failures, per_second, client.address, problem))
                if screen.quit_pressed(args.interval):
                    return
    except KeyboardInterrupt:
        return
