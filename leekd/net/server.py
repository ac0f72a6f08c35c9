"""The server: a listener, its live connections, and their phased close.

``app.py`` hands it the API (what a connection may ask of leekd) and starts it on a
listener; on stop it closes in phases, each wait bounded: stop accepting, answer the
requests in flight, close the connections, abort the ones that never finish closing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from leek.protocol import State

from .accept import Acceptor
from .api import LeekdAPI
from .connection import LeekConnection
from .listen import Listener
from .shared import Shared

log = logging.getLogger("leekd.server")

ANSWER_WAIT = 5.0  # seconds the answers in flight get at a stop
CLOSE_WAIT = 1.0  # seconds closing transports get before they are aborted


class Server:
    def __init__(
        self,
        api: LeekdAPI,
        secret: bytes,
        *,
        max_frame: int,
        max_connections: int,
        handshake_timeout: float,
        idle_timeout: float,
    ) -> None:
        self.shared = Shared(api, secret, max_frame, max_connections)
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self._server: Acceptor | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def connections(self) -> set[LeekConnection]:
        return self.shared.live

    async def start(self, listener: Listener) -> None:
        self._server = await listener.start(lambda: LeekConnection(self.shared))
        self.shared.local = listener.local_name
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections that never finished the handshake, or went silent.

        The handshake is timed from the connect, so trickling bytes cannot stretch it; an
        authenticated connection from its last complete frame, so can a half-sent frame not.
        A connection still there one round after its close (a peer that reads nothing, so
        the answers cannot be flushed) is aborted.
        """
        interval = min(1.0, self.handshake_timeout / 4, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for c in list(self.shared.live):
                if c.transport is None or c.pending:
                    continue
                if c.conn.state is State.READY:
                    silent, limit = now - c.last_active, self.idle_timeout
                else:
                    silent, limit = now - c.opened, self.handshake_timeout
                if silent <= limit:
                    continue
                if c.transport.is_closing():
                    c.transport.abort()
                else:
                    log.info("closing %s: silent for %.1fs", c.peer, silent)
                    c.transport.close()

    def stop_accepting(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Answer what is in flight (bounded), then close every connection."""
        live, opened = self.shared.live, self.shared.open
        for c in list(live):
            if c.waits:
                c.end_waits("leekd is stopping; ask for the result again once it is back")
        deadline = time.monotonic() + ANSWER_WAIT
        while any(c.pending for c in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for c in list(live):
            if c.transport:
                c.transport.close()
        # A transport closes on the loop's next turns; let it, or its socket leaks at exit.
        deadline = time.monotonic() + CLOSE_WAIT
        while opened and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for c in list(opened):  # a TLS peer that never completes the close
            if c.transport:
                c.transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)
