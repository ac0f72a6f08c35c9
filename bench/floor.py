"""The machine's floor: a bare Python echo round trip over loopback, between two processes.

No push can be answered faster than the time a few bytes take to cross 127.0.0.1 to another
process and back, so the benchmark measures that beside the systems: with a blocking
socket server (the cheapest a Python server gets) and with an asyncio server on the event
loop leekd runs on (uvloop where it is installed), each answering in a subprocess of its
own; and, for comparison, the blocking server on a Unix-domain socket (leekd's ``--unix``).

Beside the latency it reports the echo server's CPU per round trip (``cpu_us``, from
``/proc/PID/schedstat``, in nanoseconds): the least any server on this loop spends to read
a request and answer it, whatever it does in between.

``python -m bench.floor SERVER [PATH]`` is that subprocess: it prints its address and
echoes one connection until it closes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.drive import percentile

MESSAGE = b"x" * 64  # about the size of an authenticated ping
SERVERS = ("threaded", "asyncio", "unix")


def serve_threaded(unix: str | None = None) -> None:
    if unix:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(unix)
        listener.listen()
    else:
        listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        print(listener.getsockname() if unix else listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        if not unix:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)


def serve_asyncio() -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            done.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await done.wait()

    done = asyncio.Event()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())


def cpu_ns(pid: int) -> int:
    """CPU time a single-threaded process has run, in nanoseconds (0 where not known)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def round_trips(server: str, count: int) -> dict[str, float]:
    """p50/p99 in ms of ``count`` echo round trips to a fresh ``server`` subprocess, and its
    CPU per round trip in µs."""
    with tempfile.TemporaryDirectory() as tmp:
        return _round_trips(server, count, os.path.join(tmp, "echo.sock"))


def _round_trips(server: str, count: int, path: str) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", server, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if server == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(address)
        else:
            sock = socket.create_connection(("127.0.0.1", int(address)), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            lat = []
            cpu0 = 0
            for i in range(count + count // 10):  # the first tenth warms up, uncounted
                if i == count // 10:
                    cpu0 = cpu_ns(proc.pid)
                t = time.perf_counter()
                sock.sendall(MESSAGE)
                got = 0
                while got < len(MESSAGE):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the echo server closed the connection")
                    got += len(chunk)
                if i >= count // 10:
                    lat.append(time.perf_counter() - t)
            cpu = (cpu_ns(proc.pid) - cpu0) / 1000 / count if cpu0 else 0.0
        return {
            "p50": percentile(lat, 50) * 1000,
            "p99": percentile(lat, 99) * 1000,
            "cpu_us": cpu,
        }
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(count: int = 2000) -> dict[str, dict[str, float]]:
    return {server: round_trips(server, count) for server in SERVERS}


if __name__ == "__main__":
    if sys.argv[1] == "unix":
        serve_threaded(sys.argv[2])
    elif sys.argv[1] == "threaded":
        serve_threaded()
    else:
        serve_asyncio()
