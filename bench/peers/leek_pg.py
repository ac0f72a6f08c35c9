"""leek on PostgreSQL: the same ``leekd run`` as ``leek``, against a PostgreSQL server the
benchmark starts for each round and removes after it (``initdb``, then ``pg_ctl``, with
PostgreSQL's defaults: ``fsync`` and ``synchronous_commit`` on, so every commit waits for
the disk).

The server CPU per task counts PostgreSQL's processes too (the postmaster and the backends
serving leekd): recording a task is their work as much as leekd's. RSS is leekd's alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import procs
from bench.postgres import PostgresError, PostgresServer, PostgresUnavailable

from . import Server, base_env
from .leek import SECRET, start_leekd
from .leek import Driver as SqliteDriver

SETTINGS = '''"""Django settings of the benchmark's leekd on PostgreSQL (written by bench)."""

SECRET_KEY = "leek-bench-not-secret"
INSTALLED_APPS = ["leekd"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": "{port}",
        "NAME": "postgres",
        "USER": "postgres",
    }}
}}
USE_TZ = True
'''


class LeekPgSystem:
    name = "leek-pg"
    column = "leek on PostgreSQL"
    label = (
        "leek (this checkout), leekd with 4 workers, PostgreSQL started by the bench "
        "(fsync and synchronous_commit on); µs CPU includes PostgreSQL's processes"
    )

    def start(self, workdir: Path, workers: int = 4) -> Server:
        try:
            pg = PostgresServer(prefix="leek-bench-pg-")
        except (PostgresUnavailable, PostgresError) as exc:
            raise procs.BenchError(f"--postgres: {exc}") from None
        try:
            pg.start()
            (workdir / "bench_pg_settings.py").write_text(SETTINGS.format(port=pg.port))
            env = base_env(workdir, LEEK_SECRET=SECRET, DJANGO_SETTINGS_MODULE="bench_pg_settings")
            migrate = subprocess.run(
                [sys.executable, "-m", "django", "migrate", "leekd", "-v", "0"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if migrate.returncode:
                raise procs.BenchError(f"migrating leekd's tables failed:\n{migrate.stderr}")
            proc, port, log = start_leekd(
                workdir, workdir / "unused.sqlite3", workers, settings="bench_pg_settings"
            )
        except BaseException as exc:
            pg.destroy()
            if isinstance(exc, PostgresError):
                raise procs.BenchError(f"--postgres: {exc}") from None
            raise
        return Server(  # stopping leekd stops the PostgreSQL server under it too
            proc,
            log,
            sys.executable,
            base_env(workdir, LEEK_SECRET=SECRET, LEEK_PORT=str(port)),
            {"driver": __name__, "port": pg.port, "also_pids": [pg.postmaster_pid()]},
            cleanup=pg.destroy,
        )


class Driver(SqliteDriver):
    """As leek's driver; outcomes are counted in PostgreSQL."""

    def connect(self, spec: dict[str, Any]) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=spec["port"], user="postgres", dbname="postgres", autocommit=True
        )
