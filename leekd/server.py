"""The asyncio transport: bytes → protocol events → ``handle_*`` → answers, in order.

The event loop never runs task code and never waits on the database: the pushes read in
one loop turn are committed together, by the loop itself when that cannot block (see
``store.py``) and otherwise by the store's writer thread, and answered once committed;
status reads run in a small thread pool. Each connection answers its requests in the order
they arrived, so clients may pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import cloudpickle

from leek.protocol import (
    CLOSED,
    NEED_DATA,
    ClientHello,
    Connection,
    Error,
    ErrorCode,
    ProtocolError,
    Push,
    Pushed,
    Reply,
    Request,
    Role,
    State,
    TaskRecord,
    Welcome,
)

if TYPE_CHECKING:
    from .app import Leekd

log = logging.getLogger("leekd.server")

MAX_PIPELINE = 512  # answers owed on one connection before we stop reading from it
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


class _Slot:
    """An answer owed to a client, filled in when ready and sent in request order."""

    __slots__ = ("event",)

    def __init__(self, event: Any = None) -> None:
        self.event = event


class AuthLog:
    """Logs failed authentications with the peer, at most ``burst`` lines per minute."""

    line = "authentication failed from %s: %s"
    summary = "%d more failed authentications in the last minute"

    def __init__(self, burst: int = 10) -> None:
        self.burst = burst
        self.window = 0.0
        self.count = 0
        self.suppressed = 0

    def failed(self, peer: str, why: str) -> None:
        now = time.monotonic()
        if now - self.window > 60:
            if self.suppressed:
                log.warning(self.summary, self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        self.count += 1
        if self.count <= self.burst:
            log.warning(self.line, peer, why)
        else:
            self.suppressed += 1


class RefusalLog(AuthLog):
    """Logs connections refused over ``max_connections``, as rate-limited as ``AuthLog``."""

    line = "refusing %s: %s"
    summary = "%d more connections refused in the last minute"


class LeekConnection(asyncio.Protocol):
    def __init__(self, app: Leekd) -> None:
        self.app = app
        self.conn = Connection(Role.SERVER, app.secret, app.config.max_frame)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.pending: deque[_Slot] = deque()
        self.paused = False
        self.write_paused = False
        self.opened = self.last_active = time.monotonic()
        self.closing = False

    # ---- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        assert self.transport is not None
        self.app.open_protocols.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        if self.app.draining:  # accepted just before the listener closed
            self.transport.close()
            self.closing = True
            return
        limit = self.app.config.max_connections
        if len(self.app.connections) >= limit:
            why = f"leekd has {limit} connections open, its limit (--max-connections); try later"
            self.app.refusal_log.failed(self.peer, why)
            # Tagged with the secret: a real client reads why, and closes.
            self.transport.write(self.conn.send(Error(ErrorCode.UNAVAILABLE, why)))
            self.transport.close()
            self.closing = True
            return
        self.app.connections.add(self)
        self.transport.write(self.conn.start())

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        self.app.open_protocols.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            self._process()
        except ProtocolError as exc:
            self._protocol_error(exc)

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        try:
            self._process()
        except ProtocolError as exc:
            self._protocol_error(exc)
        return False

    # ---- dispatch

    def _process(self) -> None:
        while not self.closing:
            event = self.conn.next_event()
            if event is NEED_DATA or event is CLOSED:
                return
            self.last_active = time.monotonic()  # whole frames only: trickled bytes do not count
            if isinstance(event, ClientHello):
                self.handle_hello(event)
            elif isinstance(event, Push):
                self.handle_push(event)
            elif isinstance(event, Request):
                handler = getattr(self, f"handle_{event.op}", None)
                if handler is None:
                    self._answer(_Slot(Error(ErrorCode.REJECTED, f"{event.op!r} is not supported")))
                else:
                    handler(event.args)
            if len(self.pending) >= MAX_PIPELINE and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()
                return

    def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.code == ErrorCode.AUTH:
            self.app.auth_log.failed(self.peer, str(exc))
        else:
            log.info("dropping %s: %s", self.peer, exc)
        if self.transport is not None and not self.transport.is_closing():
            try:
                # An error the client can read if it got as far as the handshake.
                if self.conn.state is State.HANDSHAKE or exc.code != ErrorCode.AUTH:
                    self.transport.write(self.conn.send(Error(exc.code, str(exc))))
            except Exception:
                pass
            self.transport.close()
        self.closing = True

    def _answer(self, slot: _Slot) -> None:
        self.pending.append(slot)
        self.flush()

    def flush(self) -> None:
        """Send every answer that is ready, in request order."""
        if self.transport is None or self.transport.is_closing():
            self.pending.clear()
            return
        out = []
        while self.pending and self.pending[0].event is not None:
            out.append(self.conn.send(self.pending.popleft().event))
        if out:
            self.last_active = time.monotonic()
            self.transport.write(b"".join(out))
        if self.paused and len(self.pending) < MAX_PIPELINE // 4:
            self.paused = False
            if not self.write_paused:
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        """The peer does not read its answers: read no more requests until it does."""
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.paused and not self.transport.is_closing():
            self.transport.resume_reading()

    # ---- handlers

    def handle_hello(self, event: ClientHello) -> None:
        info = self.app.server_info()
        self.pending.append(_Slot(Welcome(info)))
        self.flush()

    def handle_push(self, event: Push) -> None:
        slot = _Slot()
        self.pending.append(slot)
        if self.app.draining:
            slot.event = Error(
                ErrorCode.UNAVAILABLE,
                "leekd is stopping and takes no new tasks; push again once it is back",
            )
            self.flush()
            return
        problem = record_problem(event.tasks)
        if problem:
            slot.event = Error(ErrorCode.REJECTED, problem)
            self.flush()
            return
        problem = self.app.version_problem(self.conn.peer_info, event.tasks)
        if problem:
            slot.event = Error(ErrorCode.VERSION, problem)
            self.flush()
            return
        self.app.push(event.tasks, (self, slot))

    def _reply(self, data: Any) -> None:
        self._answer(_Slot(Reply(data)))

    def _in_pool(self, fn: Callable[[], Any], wrap: Callable[[Any], Any]) -> None:
        slot = _Slot()
        self.pending.append(slot)
        future = asyncio.get_running_loop().run_in_executor(self.app.pool, fn)

        def done(f: asyncio.Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                log.error("request failed: %s: %s", type(exc).__name__, exc)
                slot.event = Error(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
            else:
                slot.event = wrap(f.result())
            self.flush()

        future.add_done_callback(done)

    def handle_ping(self, args: dict[str, Any]) -> None:
        self._reply(self.app.ping_info())

    def handle_waiting(self, args: dict[str, Any]) -> None:
        self._reply(self.app.work.waiting())

    def handle_handled(self, args: dict[str, Any]) -> None:
        self._reply(self.app.work.handled())

    def handle_stats(self, args: dict[str, Any]) -> None:
        self._reply(self.app.stats())

    def handle_status(self, args: dict[str, Any]) -> None:
        task_id = args.get("id")
        if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 1:
            self._answer(
                _Slot(Error(ErrorCode.REJECTED, "status needs a task id (a positive integer)"))
            )
            return
        running = self.app.work.is_running(task_id)

        def wrap(row: dict[str, Any] | None) -> Any:
            if row is None:
                return Error(ErrorCode.NOT_FOUND, f"no task with id {task_id}")
            if running and row["state"] == "queued":
                row["state"] = "running"
            return Reply(row)

        from . import queries  # needs Django's app registry, ready by now

        self._in_pool(lambda: queries.task_status(task_id), wrap)

    def handle_drain(self, args: dict[str, Any]) -> None:
        """Stop gracefully, as SIGTERM does: for hosts where signals cannot reach leekd."""
        log.info("drain requested by %s", self.peer)
        already = self.app.draining
        self._reply({"draining": True, "already": already, "pid": os.getpid()})
        if not already:
            self.app.request_stop()

    def handle_purge(self, args: dict[str, Any]) -> None:
        from . import maintenance

        self._maintenance(lambda: maintenance.purge_job(args))

    def handle_retry_failed(self, args: dict[str, Any]) -> None:
        from . import maintenance

        if self.app.draining and not maintenance.is_dry_run(args):
            self._answer(_Slot(Error(ErrorCode.UNAVAILABLE, "leekd is stopping; retry later")))
            return
        self._maintenance(lambda: maintenance.retry_job(args, self.app.store))

    def _maintenance(self, check: Callable[[], Callable[[], Any]]) -> None:
        """Check the arguments here, do the database work in the pool (maintenance.py)."""
        try:
            job = check()
        except ValueError as exc:
            self._answer(_Slot(Error(ErrorCode.REJECTED, str(exc))))
            return
        self._in_pool(job, Reply)


# What the columns hold; checked here so one bad record cannot fail a group commit that
# carries other clients' pushes (PostgreSQL enforces these lengths, SQLite does not).
MAX_NAME, MAX_QUEUE, MAX_PREVIEW, MAX_RETRIES = 255, 100, 300, 1000


def record_problem(tasks: tuple[TaskRecord, ...]) -> str | None:
    for t in tasks:
        if len(t.name) > MAX_NAME or len(t.queue) > MAX_QUEUE or len(t.preview) > MAX_PREVIEW:
            return (
                f"task {t.name[:60]!r}: name, queue or preview too long "
                f"(at most {MAX_NAME}, {MAX_QUEUE} and {MAX_PREVIEW} characters)"
            )
        if t.max_retries > MAX_RETRIES:
            return f"task {t.name[:60]!r}: max_retries {t.max_retries} is over {MAX_RETRIES}"
    return None


def resolve_pushes(items: list[tuple[Any, list[int] | Exception]]) -> None:
    """Runs on the event loop: answer every push of one commit."""
    touched = set()
    for (proto, slot), result in items:
        if isinstance(result, Exception):
            slot.event = Error(ErrorCode.UNAVAILABLE, f"not recorded, push again later: {result}")
        else:
            slot.event = Pushed(tuple(result))
        touched.add(proto)
    for proto in touched:
        proto.flush()


def make_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="leekd-query")


def client_pickle_problem(peer: dict[str, Any], payloads: Iterable[bytes]) -> str | None:
    """Why by-value payloads from this client would be unsafe to load here, or None.

    cloudpickle serialises ``__main__`` functions and lambdas as bytecode, which is only
    valid for the same Python minor version; loading it elsewhere can crash the interpreter.
    A by-value payload always names cloudpickle's own reconstructors, hence the byte test.
    """
    theirs_py, theirs_cp = peer.get("python"), peer.get("cloudpickle")
    if theirs_py == PYTHON and theirs_cp == cloudpickle.__version__:
        return None
    if not any(b"cloudpickle" in p for p in payloads):
        return None
    return (
        f"this task is pickled by value (it is defined in __main__, or is a lambda or closure), "
        f"and the client runs Python {theirs_py} with cloudpickle {theirs_cp} while leekd runs "
        f"Python {PYTHON} with cloudpickle {cloudpickle.__version__}; loading it could crash "
        "leekd. Move the function into an importable module, or run both on the same versions."
    )


__all__ = [
    "LeekConnection",
    "AuthLog",
    "RefusalLog",
    "resolve_pushes",
    "make_pool",
    "client_pickle_problem",
]
