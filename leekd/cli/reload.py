"""``leekd run --reload``: restart leekd when a Python file it loaded changes (development).

As Django's ``runserver`` does: a parent starts the same command as a child with
``RUN_MAIN=true`` (Django's ``get_child_arguments``) and starts it again whenever it exits with
code 3; the parent passes SIGTERM on to the child. In the child, unlike ``runserver``, a change
does not end the process at once: a thread watching the files (Django's ``StatReloader``
snapshots) asks leekd for a graceful stop (running tasks finish, waiting ones stay queued),
and only then does the child exit with 3.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("leekd.cli")

RESTART = 3  # the exit code Django's reloader restarts on
INTERVAL = 1.0  # seconds between looks at the files


def in_child() -> bool:
    return os.environ.get("RUN_MAIN") == "true"


def run_parent() -> int:
    """Start leekd in a child and start it again after each change; returns its last exit code.

    Ctrl-C reaches the child from the terminal itself, so the parent ignores SIGINT (passing
    it on would make it a second, forcing signal).
    """
    from django.utils import autoreload

    log.info("--reload: leekd restarts when a Python file changes (development only)")
    command = [str(a) for a in autoreload.get_child_arguments()]
    env = {**os.environ, "RUN_MAIN": "true"}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child: subprocess.Popen[bytes] | None = None

    def forward(sig: int, frame: object) -> None:
        if child is not None:
            child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    while True:
        child = subprocess.Popen(command, env=env, close_fds=False)
        code = child.wait()
        if code != RESTART:
            return code


class Watcher(threading.Thread):
    """Looks at every loaded module's file each INTERVAL; on a change, calls ``changed(path)``
    once and ends. The first look is taken here, before leekd serves, so a change made
    once it listens is always seen."""

    def __init__(self, changed: Callable[[Path], None]) -> None:
        super().__init__(name="leekd-reload", daemon=True)
        from django.utils.autoreload import StatReloader

        self.changed = changed
        self.stop_event = threading.Event()
        self.fired = False
        self.reloader = StatReloader()
        self.seen = dict(self.reloader.snapshot_files())

    def run(self) -> None:
        while not self.stop_event.wait(INTERVAL):
            for path, mtime in self.reloader.snapshot_files():
                before = self.seen.setdefault(path, mtime)
                if mtime != before:
                    self.fired = True
                    log.info("%s changed; restarting leekd", path)
                    self.changed(path)
                    return
