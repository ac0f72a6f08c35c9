"""Test helpers: a leekd subprocess with bounded waits, and polling with deadlines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789abcdef"


def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def lines(path: Path) -> list[str]:
    """The lines of a file tasks append to; none while it does not exist."""
    return path.read_text().splitlines() if path.exists() else []


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["LEEK_SECRET"] = SECRET
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra)
    return env


class LeekdProcess:
    """``leekd run`` as a child process on an ephemeral port; the port is read from its log."""

    def __init__(
        self, db: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.db = db
        self.args = list(args)
        self.env = env or subprocess_env()
        self.log = log or db.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self, timeout: float = 30.0) -> LeekdProcess:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "leekd",
                    "run",
                    "--port",
                    "0",
                    "--db",
                    str(self.db),
                    *self.args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(self.db.parent),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            m = re.search(r"listening on [^\s]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"leekd exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"leekd did not start in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log.read_bytes()[self._log_offset :].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
