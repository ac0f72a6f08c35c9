"""One round of one system: start its server, run the client, read the server's memory.

The client reads the server's CPU itself, at the edges of its timed windows: it is given the
pid of the server's root process (``server_pid``), whose process tree it measures.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.peers import ROOT

SETTLE = 0.5  # seconds between the warm-up and reading the idle RSS
READY_TIMEOUT = 120.0


class EventReader:
    """JSON lines from the client's stdout, read on a thread so every wait can be bounded."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise procs.BenchError(
                    f"{what}: no answer from the client in {timeout:g}s"
                ) from None
            if line is None:
                code = self.proc.wait(10)
                raise procs.BenchError(f"{what}: the client exited with {code} (see above)")
            if line.startswith(b"{"):
                return dict(json.loads(line))


def run_round(system: Any, workdir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Figures of one round; the server and the client are gone when it returns."""
    workdir.mkdir(parents=True)
    server = system.start(workdir)
    client = None
    try:
        spec = {**spec, **server.spec, "server_pid": server.proc.pid}
        client = procs.spawn(
            [server.python, "-m", "bench.drive", json.dumps(spec)],
            env=server.env,
            cwd=ROOT,
            log=workdir / "client.log",
            pipes=True,
            stderr_to_terminal=True,
        )
        events = EventReader(client)
        events.next(READY_TIMEOUT, f"{system.name} warm-up")
        time.sleep(SETTLE)
        idle = procs.rss_mib(server.proc.pid)
        assert client.stdin is not None
        client.stdin.write(b"go\n")
        client.stdin.flush()
        # Waits for outcomes and for pushers, each bounded by spec["timeout"], plus the pushes.
        waits = 4 + 3 * len(spec["clients"])
        result = events.next(waits * spec["timeout"] + 60, f"{system.name} workload")
        figures = dict(result["figures"])
        figures["idle_rss"] = idle
        figures["peak_rss"] = procs.peak_mib(server.proc.pid)
        figures["server_processes"] = len(procs.descendants(server.proc.pid))
        if server.proc.poll() is not None:
            raise procs.BenchError(f"{system.name} exited during the round{procs.tail(server.log)}")
        return figures
    except procs.BenchError as exc:
        raise procs.BenchError(f"{exc}{procs.tail(server.log)}") from None
    finally:
        if client is not None:
            procs.stop(client, timeout=5)
        server.stop()
