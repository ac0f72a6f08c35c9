"""leek on PostgreSQL: the same ``leekd run`` as ``leek``, against a PostgreSQL server the
benchmark starts for each round and removes after it (``initdb``, then ``pg_ctl``, with
PostgreSQL's defaults: ``fsync`` and ``synchronous_commit`` on, so every commit waits for
the disk).

The server CPU per task counts PostgreSQL's processes too (the postmaster and the backends
serving leekd): recording a task is their work as much as leekd's. RSS is leekd's alone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import procs

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


def pg_tool(name: str) -> str:
    """The PostgreSQL server binary ``name``, on PATH or in Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    raise procs.BenchError(
        f"--postgres needs PostgreSQL's server binaries ({name} not found); install "
        "postgresql (Debian: apt-get install postgresql)"
    )


class PostgresServer:
    """A throwaway PostgreSQL cluster, run as ``postgres`` when we are root.

    Its directory is its own under the system's temporary directory, not the run's: the
    ``postgres`` user must reach it, and the run's may sit below directories only we can
    enter. ``stop`` removes it.
    """

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="leek-bench-pg-"))
        self.data = self.dir / "data"
        self.port = procs.free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise procs.BenchError(
                    "--postgres as root needs a 'postgres' user to run the server"
                ) from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.user = "postgres"

    def _run(self, *cmd: str) -> None:
        full = ["runuser", "-u", self.user, "--", *cmd] if self.user else list(cmd)
        done = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise procs.BenchError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        except procs.BenchError:
            pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PgServer(Server):
    """leekd and the PostgreSQL server under it: stopping one stops both."""

    postgres: PostgresServer | None = None

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.postgres is not None:
                self.postgres.stop()


class LeekPgSystem:
    name = "leek-pg"
    column = "leek on PostgreSQL"
    label = (
        "leek (this checkout), leekd with 4 workers, PostgreSQL started by the bench "
        "(fsync and synchronous_commit on); µs CPU includes PostgreSQL's processes"
    )

    def start(self, workdir: Path, workers: int = 4) -> Server:
        pg = PostgresServer()
        pg.start()
        try:
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
        except BaseException:
            pg.stop()
            raise
        server = PgServer(
            proc,
            log,
            sys.executable,
            base_env(workdir, LEEK_SECRET=SECRET, LEEK_PORT=str(port)),
            {"driver": __name__, "port": pg.port, "also_pids": [pg.postmaster_pid()]},
        )
        server.postgres = pg
        return server


class Driver(SqliteDriver):
    """As leek's driver; outcomes are counted in PostgreSQL."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import psycopg

        import leek
        from bench.tasks import noop

        self.leek, self.noop = leek, noop
        self.db: Any = psycopg.connect(
            host="127.0.0.1", port=spec["port"], user="postgres", dbname="postgres", autocommit=True
        )

    def recorded(self) -> int:
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM leekd_successtask)"
            " + (SELECT COUNT(*) FROM leekd_failedtask)"
        ).fetchone()
        return int(row[0])
