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

from . import Server, base_env
from .leek import SECRET, start_leekd


class LeekUnixSystem:
    name = "leek-unix"
    column = "leek on a Unix socket"
    label = "leek (this checkout), leekd with 4 workers, embedded SQLite (WAL), clients on --unix"

    def start(self, workdir: Path, workers: int = 4) -> Server:
        sockdir = Path(tempfile.mkdtemp(prefix="leek-bench-"))
        sock = sockdir / "leekd.sock"
        db = workdir / "leek.sqlite3"
        try:
            proc, _, log = start_leekd(workdir, db, workers, unix=sock)
        except BaseException:
            shutil.rmtree(sockdir, ignore_errors=True)
            raise
        return Server(  # stopping leekd removes its socket's directory too
            proc,
            log,
            sys.executable,
            base_env(LEEK_SECRET=SECRET, LEEK_UNIX=str(sock)),
            {"driver": "bench.peers.leek", "db": str(db)},
            cleanup=lambda: shutil.rmtree(sockdir, ignore_errors=True),
        )
