"""leek, measured from this checkout: ``leekd run`` from the project's venv, 4 workers.

``BENCH_LEEKD_ARGS`` adds flags to ``leekd run`` (e.g. ``--metrics-port 0`` to measure
what metrics cost).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import sys
from pathlib import Path
from typing import Any

from bench import procs

from . import Server, base_env

SECRET = "bench-secret-0123456789abcdef0123"
LEEKD_START = 60.0


def leekd_cmd(
    port: int,
    db: Path,
    workers: int,
    log_level: str = "warning",
    settings: str | None = None,
    unix: Path | None = None,
) -> list[str]:
    """``leekd run`` on the embedded SQLite file ``db``, or with Django ``settings``; on TCP
    ``port``, or on the Unix-domain socket ``unix``."""
    where = ["--settings", settings] if settings else ["--db", str(db)]
    listen = ["--unix", str(unix)] if unix else ["--port", str(port)]
    return [
        sys.executable,
        "-m",
        "leekd",
        "run",
        *listen,
        *where,
        "--workers",
        str(workers),
        "--log-level",
        log_level,
        *shlex.split(os.environ.get("BENCH_LEEKD_ARGS", "")),
    ]


def start_leekd(
    workdir: Path,
    db: Path,
    workers: int,
    log_level: str = "warning",
    log: Path | None = None,
    settings: str | None = None,
    paths: tuple[Path, ...] = (),
    unix: Path | None = None,
) -> tuple[Any, int, Path]:
    """Start leekd and wait until it listens; returns (process, port, log), the port 0 on
    the Unix-domain socket ``unix``. ``paths`` go first on its import path (another
    commit's packages, for ``--baseline``)."""
    port = 0 if unix else procs.free_port()
    log = log or workdir / "leekd.log"
    proc = procs.spawn(
        leekd_cmd(port, db, workers, log_level, settings, unix),
        env=base_env(*paths, LEEK_SECRET=SECRET),
        cwd=workdir,
        log=log,
    )
    up = (lambda: procs.listening_unix(unix)) if unix else (lambda: procs.listening(port))
    procs.wait_until(up, LEEKD_START, "leekd start", proc, log)
    return proc, port, log


class LeekSystem:
    name = "leek"
    column = "leek"
    label = "leek (this checkout), leekd with 4 workers, embedded SQLite (WAL)"

    def start(self, workdir: Path, workers: int = 4) -> Server:
        db = workdir / "leek.sqlite3"
        proc, port, log = start_leekd(workdir, db, workers)
        return Server(
            proc,
            log,
            sys.executable,
            base_env(LEEK_SECRET=SECRET, LEEK_PORT=str(port)),
            {"driver": __name__, "db": str(db)},
        )


class Driver:
    """``leek.push_task_to_queue`` and ``leek.push_many``, as an application calls them."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import leek
        from bench.tasks import noop

        self.leek, self.noop = leek, noop
        self.db = self.connect(spec)

    def connect(self, spec: dict[str, Any]) -> Any:
        """The database the outcomes are counted in, read-only (leekd's SQLite file)."""
        db = sqlite3.connect(spec["db"], timeout=10)
        db.execute("PRAGMA query_only = 1")
        return db

    def push(self) -> bool:
        self.leek.push_task_to_queue(self.noop)
        return True

    def push_many(self, k: int) -> None:
        self.leek.push_many([self.noop] * k)

    def recorded(self) -> int:
        (n,) = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM leekd_successtask)"
            " + (SELECT COUNT(*) FROM leekd_failedtask)"
        ).fetchone()
        return int(n)

    def close(self) -> None:
        self.db.close()
        self.leek.get_client().close()
