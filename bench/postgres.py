"""A throwaway PostgreSQL server: ``initdb`` into a directory of its own, start, stop, remove.

The benchmark's ``--postgres`` runs leek on one (PostgreSQL's defaults, every commit
flushed); the tests start theirs here too, with ``fsync`` off. Standard library only, so
either side imports it anywhere.

The directory is under ``/tmp``, not the caller's: as root the server runs as the
``postgres`` user, which must reach it, and a caller's directory may sit below ones only
root can enter.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresUnavailable(Exception):
    """This machine cannot run a throwaway server: no binaries, or no user to run them."""


class PostgresError(RuntimeError):
    """``initdb`` or ``pg_ctl`` failed; the message holds their output."""


def find_tool(name: str) -> str | None:
    """PostgreSQL's server binary ``name``, on PATH or in Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    return None


def run_as() -> str | None:
    """The user the server must run as (``postgres`` when we are root: PostgreSQL refuses
    root), None for ourselves; PostgresUnavailable when it cannot be run at all."""
    if not find_tool("initdb") or not find_tool("pg_ctl"):
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed "
            "(Debian: apt-get install postgresql)"
        )
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no 'postgres' user to run the server"
        ) from None
    return "postgres"


class PostgresServer:
    """A cluster made at construction (``initdb``); ``start`` and ``stop`` as often as
    wanted, ``destroy`` stops it and removes its directory."""

    def __init__(self, fsync: bool = True, prefix: str = "leek-pg-") -> None:
        self.user = run_as()
        self.initdb, self.pg_ctl = str(find_tool("initdb")), str(find_tool("pg_ctl"))
        self.fsync = fsync
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.data = self.dir / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        try:
            self._run(
                self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, *cmd: str) -> None:
        full = ["runuser", "-u", self.user, "--", *cmd] if self.user else list(cmd)
        out = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise PostgresError(f"{' '.join(cmd)} failed: {out.stdout}{out.stderr}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            opts += " -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def destroy(self) -> None:
        try:
            self.stop()
        except PostgresError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)
