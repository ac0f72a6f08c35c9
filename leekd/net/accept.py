"""Accepting connections by ourselves, so that running out of file descriptors stays quiet.

asyncio's own accept loop, on ``EMFILE``, logs a traceback and schedules a restart of
accepting for each of up to ``backlog`` attempts in a row; under a descriptor flood those
restarts multiply into tens of thousands of tracebacks and timers a second (37 MB of log
in 10 s, the loop too busy to answer). Here a full descriptor table pauses accepting for
PAUSE seconds, once, and says so in one log line per LOG_EVERY seconds.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import ssl
import time
from collections.abc import Callable

log = logging.getLogger("leekd.server")

BATCH = 64  # connections accepted per wake-up; each costs a descriptor until refused or served
PAUSE = 0.1  # seconds accepting rests after the process ran out of descriptors
LOG_EVERY = 10.0  # seconds between two log lines about it
_OUT_OF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """Accepts on listening sockets and hands each connection to ``factory``'s protocol."""

    def __init__(
        self,
        socks: list[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self.socks = socks
        self.sockets = socks  # as asyncio.Server names them
        self.factory = factory
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.closed = False
        self.paused_times = 0  # since the last log line
        self._next_log = 0.0
        self._loop = asyncio.get_running_loop()
        self._starting: set[asyncio.Task[object]] = set()
        for sock in socks:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF:
                    self._pause(sock, exc)
                else:
                    log.warning("accept failed on %s: %s", sock.getsockname(), exc)
                return
            conn.setblocking(False)
            task = self._loop.create_task(
                self._loop.connect_accepted_socket(
                    self.factory,
                    conn,
                    ssl=self.tls,
                    ssl_handshake_timeout=self.handshake_timeout if self.tls else None,
                )
            )
            self._starting.add(task)
            task.add_done_callback(functools.partial(self._started, conn))

    def _started(self, conn: socket.socket, task: asyncio.Task[object]) -> None:
        self._starting.discard(task)
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():  # a failed TLS handshake, say
                log.debug("connection not set up: %s", task.exception())
            conn.close()

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        self._loop.remove_reader(sock.fileno())
        self._loop.call_later(PAUSE, self._resume, sock)
        self.paused_times += 1
        now = time.monotonic()
        if now >= self._next_log:
            log.warning(
                "cannot accept connections: %s; pausing accepts for %.1fs each time "
                "(%d time(s) since the last such line); raise the open-file limit "
                "(LimitNOFILE, ulimit -n) or lower --max-connections",
                exc.strerror or exc,
                PAUSE,
                self.paused_times,
            )
            self._next_log, self.paused_times = now + LOG_EVERY, 0

    def _resume(self, sock: socket.socket) -> None:
        if not self.closed:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (live connections stay)."""
        if self.closed:
            return
        self.closed = True
        for sock in self.socks:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in self._starting:
            task.cancel()


def tcp_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to, as asyncio would bind them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE) or []
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:  # one free port for every address
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
            sock.listen(backlog)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def connection_budget(wanted: int, reserve: int) -> tuple[int, int]:
    """How many connections the open-file limit leaves room for, at most ``wanted``; and it.

    Besides the connections, the process needs ``reserve`` descriptors (its database
    connections, each with SQLite's log and shared memory, the ledger, the log file), the
    ones open now, and a BATCH of just-accepted connections that may still be refused.
    """
    import os
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted, -1
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 32
    return max(1, min(wanted, soft - open_now - reserve - BATCH)), soft


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (systemd starts services at 1,024)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return soft
    # An unlimited hard limit is still bounded by the kernel's fs.nr_open.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def fit_connections(wanted: int, workers: int) -> int:
    """``max_connections`` as the open-file limit allows it; says so if that is fewer."""
    room, limit = connection_budget(wanted, reserve=3 * (workers + 4) + 32)
    if room < wanted:
        log.warning(
            "serving at most %d connections, not %d (--max-connections): the open-file "
            "limit is %d, and leekd keeps a reserve for its database, log and ledger; "
            "raise LimitNOFILE (ulimit -n) to serve more",
            room,
            wanted,
            limit,
        )
    return room
