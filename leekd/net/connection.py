"""One client connection: bytes → protocol events → ``handle_*`` → answers, in order.

The event loop never runs task code and never waits on the database: pushes go to the
API's ``push`` (group commit, answered by ``resolve_pushes`` once committed), status reads
run in a small thread pool. Each connection answers its requests in the order they
arrived, so clients may pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

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
    Request,
    Role,
    State,
)

from .handlers import Handlers, Slot
from .results import ResultRequests
from .shared import Shared

log = logging.getLogger("leekd.server")

MAX_PIPELINE = 512  # answers owed on one connection before we stop reading from it


class LeekConnection(Handlers, ResultRequests, asyncio.Protocol):
    """One client: bytes in, events to ``handle_*`` (handlers.py), answers out in order."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.api = shared.api
        self.conn = Connection(Role.SERVER, shared.secret, shared.max_frame)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.tcp = False
        self.pending: deque[Slot] = deque()
        self.waits: dict[Any, Any] = {}  # result requests still waiting (results.py)
        self.paused = False
        self.write_paused = False
        self.opened = self.last_active = time.monotonic()
        self.closing = False

    # ---- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        assert self.transport is not None
        self.shared.open.add(self)
        peer = transport.get_extra_info("peername")
        self.tcp = isinstance(peer, tuple)
        self.peer = f"{peer[0]}:{peer[1]}" if self.tcp else str(peer or "unix")
        if self.api.draining:  # accepted just before the listener closed
            self.transport.close()
            self.closing = True
            return
        limit = self.shared.max_connections
        if len(self.shared.live) >= limit:
            why = f"leekd has {limit} connections open, its limit (--max-connections); try later"
            self.shared.refusal_log.failed(self.peer, why)
            # Tagged with the secret: a real client reads why, and closes.
            self.transport.write(self.conn.send(Error(ErrorCode.UNAVAILABLE, why)))
            self.transport.close()
            self.closing = True
            return
        self.shared.live.add(self)
        self.transport.write(self.conn.start())

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.live.discard(self)
        self.shared.open.discard(self)
        self.closing = True
        if self.waits:
            self.end_waits("connection lost")

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            self._process()
        except ProtocolError as exc:
            self._protocol_error(exc)
        except MemoryError:
            self._out_of_memory()

    def _out_of_memory(self) -> None:
        """Reading a push took more memory than there is: say so, instead of a reset.

        Its buffer goes with the connection, which closes here.
        """
        why = "leekd is out of memory: not recorded, push again later (or push smaller tasks)"
        log.error("out of memory reading from %s; closing it", self.peer)
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(self.conn.send(Error(ErrorCode.UNAVAILABLE, why)))
            except Exception:
                pass
            self.transport.close()
        self.closing = True

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
                    self._answer(Slot(Error(ErrorCode.REJECTED, f"{event.op!r} is not supported")))
                else:
                    handler(event.args)
            if len(self.pending) >= MAX_PIPELINE and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()
                return

    def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.code == ErrorCode.AUTH:
            self.shared.auth_log.failed(self.peer, str(exc))
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
