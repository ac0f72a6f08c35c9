"""``leek-shell top`` in a real pseudo-terminal, and the ``failures`` request it reads."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import sys
import termios
import time

import pytest

from leek.errors import LeekRejected

from .. import tasks
from ..helpers import subprocess_env, wait_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PtyReader:
    """Everything a child wrote to its terminal, read within deadlines."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.raw = b""

    def read_until(
        self, pattern: str, timeout: float = 15.0, start: int = 0, raw: bool = False
    ) -> re.Match[str]:
        """Wait for ``pattern`` in the text after ``start`` (escapes removed unless ``raw``)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.raw.decode(errors="replace") if raw else self.text()
            found = re.search(pattern, text[start:], re.S)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout}s in:\n{text[-3000:]}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    self.raw += os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed its end
                    time.sleep(0.01)

    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace"))


def own_terminal() -> None:
    """In the child: a session of its own with the pty as its controlling terminal (^C)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def top(server):
    """Start ``leek-shell top`` on a pseudo-terminal; yields (process, reader, master fd)."""
    started = []

    def start(*extra: str):
        master, slave = os.openpty()
        os.set_blocking(master, False)
        proc = subprocess.Popen(
            [sys.executable, "-m", "leekd.cli.shell", "--port", str(server.port), "top", *extra],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=subprocess_env(COLUMNS="120", LINES="40"),
            close_fds=True,
            preexec_fn=own_terminal,
        )
        os.close(slave)
        started.append((proc, master))
        return proc, PtyReader(master), master

    yield start
    for proc, master in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def test_top_draws_refreshes_and_quits_on_q(server, client, top):
    # Given a leekd that ran a task on "mail" and saw one fail,
    done = client.push(tasks.add, (1, 2), queue="mail")
    bad = client.push(tasks.fail, ("top boom",), max_retries=1)
    wait_for(lambda: client.status(done)["state"] == "succeeded")
    wait_for(lambda: client.status(bad)["state"] == "failed")
    # when top runs in a terminal,
    proc, screen, master = top("--interval", "0.2")
    # then it draws the queues, the workers and the failure, on the alternate screen,
    first = screen.read_until(r"mail\s+0\s+0\s+0\s+1\s+0\s+0")
    screen.read_until(r"workers 0/2 busy")
    screen.read_until(rf"#{bad} \d\d:\d\d:\d\d default tests\.tasks\.fail: ValueError: top boom")
    assert b"\x1b[?1049h" in screen.raw
    # it refreshes by itself: a second task on "mail" shows up without a key pressed,
    again = client.push(tasks.add, (3, 4), queue="mail")
    wait_for(lambda: client.status(again)["state"] == "succeeded")
    screen.read_until(r"mail\s+0\s+0\s+0\s+2\s+0\s+0", start=first.end())
    # with a rate once two samples exist,
    screen.read_until(r"done/s\s+failed/s.*mail(\s+\d+){6}\s+\d+\.\d\s+\d+\.\d")
    # and q quits at once, leaving the terminal as it found it.
    os.write(master, b"q")
    assert proc.wait(10) == 0
    screen.read_until(r"\x1b\[\?1049l", raw=True)
    assert screen.raw.rstrip().endswith(b"\x1b[?25h\x1b[?1049l")


def test_top_quits_on_ctrl_c(server, top):
    proc, screen, master = top()
    screen.read_until(r"q or Ctrl-C quits")
    os.write(master, b"\x03")  # the terminal turns it into SIGINT
    assert proc.wait(10) == 0


def test_top_refuses_without_a_terminal(server):
    done = subprocess.run(
        [sys.executable, "-m", "leekd.cli.shell", "--port", str(server.port), "top"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert done.returncode == 1
    assert "needs a terminal" in done.stderr and "stats --json" in done.stderr
    assert done.stdout == ""


def test_failures_request_is_newest_first_and_bounded(server, client):
    ids = [client.push(tasks.fail, (f"no {i}",), max_retries=1) for i in range(3)]
    for task_id in ids:
        wait_for(lambda t=task_id: client.status(t)["state"] == "failed")
    latest, every = client.request("failures", limit=2), client.request("failures", limit=100)
    assert len(latest) == 2 and latest == every[:2]
    assert {f["id"] for f in every} >= set(ids)
    assert [f["failed_at"] for f in every] == sorted((f["failed_at"] for f in every), reverse=True)
    one = client.request("failures", limit=1)[0]
    assert one["exc_type"] == "builtins.ValueError" and one["message"].startswith("no ")
    assert one["queue"] == "default" and one["name"] == "tests.tasks.fail"
    assert one["retried"] is False and one["attempts"] == 1
    for bad in (0, 101, "3", True):
        with pytest.raises(LeekRejected, match="limit from 1 to 100"):
            client.request("failures", limit=bad)
