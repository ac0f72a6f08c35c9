"""leek with its clients on a Unix-domain socket (``leekd run --unix``, ``LEEK_UNIX``): the
same leekd as ``leek``, with no TCP port at all (``leek``'s clients reach its local socket,
a Unix-domain one too, through TCP first).

The socket lives in a short directory of its own under the system's temporary directory
(a socket path has at most 107 bytes), removed with the server.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench import procs

from . import Server, base_env
from .leek import LEEKD_START, SECRET, leekd_cmd


class UnixServer(Server):
    """leekd and its socket's directory: stopping the one removes the other."""

    sockdir: Path | None = None

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.sockdir is not None:
                shutil.rmtree(self.sockdir, ignore_errors=True)


class LeekUnixSystem:
    name = "leek-unix"
    column = "leek on a Unix socket"
    label = "leek (this checkout), leekd with 4 workers, embedded SQLite (WAL), clients on --unix"

    def start(self, workdir: Path, workers: int = 4) -> Server:
        sockdir = Path(tempfile.mkdtemp(prefix="leek-bench-"))
        sock = sockdir / "leekd.sock"
        log = workdir / "leekd.log"
        proc = None
        try:
            proc = procs.spawn(
                leekd_cmd(0, workdir / "leek.sqlite3", workers, unix=sock),
                env=base_env(LEEK_SECRET=SECRET),
                cwd=workdir,
                log=log,
            )
            procs.wait_until(
                lambda: procs.listening_unix(sock), LEEKD_START, "leekd start", proc, log
            )
        except BaseException:
            if proc is not None:
                procs.stop(proc)
            shutil.rmtree(sockdir, ignore_errors=True)
            raise
        server = UnixServer(
            proc,
            log,
            sys.executable,
            base_env(LEEK_SECRET=SECRET, LEEK_UNIX=str(sock)),
            {"driver": "bench.peers.leek", "db": str(workdir / "leek.sqlite3")},
        )
        server.sockdir = sockdir
        return server
