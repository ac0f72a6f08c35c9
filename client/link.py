"""The wire under a ``Client``: one authenticated connection, its handshake, its round trips.

Thread-safe (one exchange at a time), reconnects once when an idle connection turns out to
be stale (leekd restarted), and after ``fork()`` never touches the parent's socket.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Self

import cloudpickle

from .conf import django_leek_settings, resolve_address, resolve_secret, resolve_transport
from .errors import (
    LeekAuthError,
    LeekConnectionError,
    LeekError,
    LeekProtocolError,
    LeekTimeout,
    LeekUnavailable,
    raise_error,
)
from .hosts import Hosts, resolve_hosts
from .inline import Capture, Eager
from .protocol import (
    CLOSED,
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    Connection,
    Error,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    Role,
    ServerHello,
    Welcome,
)
from .transport import Wire, client_tls_context, open_socket, stale
from .version import __version__

_FRAME_ADVICE = (
    "pass large data by reference (a file path, a database id) rather than in the "
    "arguments, or raise LEEK['max_frame'] on leekd and its clients alike"
)
_LOCAL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # of leekd's local socket, from its welcome
STALE_AFTER = 1.0  # a connection idle longer is checked for a close before it is used
_forks = 0  # forks between the first process and this one: a socket from before is a parent's


def client_info() -> dict[str, Any]:
    v = sys.version_info
    return {
        "python": f"{v.major}.{v.minor}",
        "cloudpickle": cloudpickle.__version__,
        "leek": __version__,
        "pid": os.getpid(),
    }


def too_large(name: str, size: int, limit: int) -> str:
    return (
        f"the task {name} is about {size} bytes, over the {limit}-byte frame limit; {_FRAME_ADVICE}"
    )


def forked() -> None:
    """In a child after ``fork()``: every socket made before belongs to the parent."""
    global _forks
    _forks += 1


def forks() -> int:
    return _forks


class Link:
    """A connection to leekd. Arguments override ``LEEK_*`` env vars and ``settings.LEEK``."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        secret: str | bytes | None = None,
        *,
        connect_timeout: float = 2.0,
        timeout: float = 60.0,
        max_frame: int | None = None,
        unix: str | None = None,
        tls: bool | None = None,
        tls_ca: str | None = None,
        hosts: Sequence[str] | str | None = None,
    ) -> None:
        self.host, self.port = resolve_address(host, port)
        found = resolve_hosts(hosts) if hosts or (host is None and port is None) else None
        self.hosts = Hosts(found) if found else None
        if self.hosts is not None:
            self.host, self.port = self.hosts.current
        self.transport = resolve_transport(
            unix, tls, tls_ca, tcp_given=host is not None or port is not None
        )
        self._tls: ssl.SSLContext | None = None
        self._secret_arg = secret
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._deadline = 0.0  # of the request under way (monotonic)
        leek = django_leek_settings() or {}
        self.max_frame = int(max_frame or leek.get("max_frame") or DEFAULT_MAX_FRAME)
        # Inside atomic(), pushes wait for the commit unless told otherwise.
        self.on_commit = bool(leek.get("on_commit", True))
        # Tests: pushes run here at once (eager) or are only recorded (capture); see inline.py.
        self.inline: Capture | None = None
        if leek.get("eager"):
            self.inline = Eager(propagate=leek.get("eager") == "propagate")
        elif leek.get("capture"):
            self.inline = Capture()
        self._lock = threading.RLock()
        self._waiters = threading.local()  # per thread, a client for waits (Client.waiter)
        self._waiter_clients: list[Any] = []
        self._sock: socket.socket | None = None
        self._wire: Wire | None = None  # self._sock, read and written against the deadline
        self._conn: Connection | None = None
        self._used = 0.0  # when the last exchange on self._sock ended (monotonic)
        self._forks = _forks  # which process made the socket, without a getpid() per call
        self.server_info: dict[str, Any] = {}
        self._remote = ""  # the local socket name this process could not use: stay on TCP

    @property
    def address(self) -> str:
        if self.transport.unix:
            return f"unix:{self.transport.unix}"
        return f"{self.host}:{self.port}" + (" (TLS)" if self.transport.tls else "")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport

    def _drop(self) -> None:
        if self._sock is not None and self._forks == _forks:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = self._wire = None
        self._conn = None
        self._forks = _forks

    def _roundtrip(self, events: list[Any], wait: float = 0.0) -> list[Any]:
        """Send ``events`` and read their answers, all within ``timeout`` (plus ``wait``, the
        time a result request may wait on leekd's side), else ``LeekTimeout``."""
        with self._lock:
            self._deadline = time.monotonic() + self.timeout + wait
            for _ in range(len(self.hosts.addresses) - 1 if self.hosts else 0):
                try:
                    return self._roundtrip_here(events)
                except LeekTimeout:
                    raise  # no time left for another host
                except (LeekConnectionError, LeekUnavailable):  # the same records go on
                    self._drop()
                    assert self.hosts is not None
                    self.host, self.port = self.hosts.advance()
            return self._roundtrip_here(events)

    def _roundtrip_here(self, events: list[Any]) -> list[Any]:
        if self._forks != _forks:
            self._sock, self._wire, self._conn = None, None, None  # the parent's: leave it alone
            self._forks = _forks
        if (
            self._sock is not None
            and time.monotonic() - self._used > STALE_AFTER
            and stale(self._sock)
        ):
            self._drop()
        fresh = self._sock is None
        while True:
            if self._sock is None:
                self._open()
            try:
                replies = self._exchange(events)
                self._used = time.monotonic()
                return replies
            except LeekTimeout:
                self._drop()  # an answer may still come on it: never read as another's
                raise
            except (OSError, LeekConnectionError) as exc:
                self._drop()
                if fresh or time.monotonic() >= self._deadline:
                    raise LeekConnectionError(
                        f"lost the connection to leekd at {self.address}: {exc}"
                    ) from exc
            # A connection that looked alive failed (leekd restarted, say): one fresh attempt
            # in the time left. A push sent again carries the same keys: leekd records each
            # record at most once.
            fresh = True

    def _exchange(self, events: list[Any]) -> list[Any]:
        assert self._wire is not None and self._conn is not None
        try:
            data = (
                self._conn.send(events[0])
                if len(events) == 1
                else b"".join([self._conn.send(e) for e in events])
            )
        except LocalProtocolError as exc:
            self._drop()  # frames may have been numbered but not sent
            raise LeekError(f"cannot send this request: {exc}; {_FRAME_ADVICE}") from None
        try:
            self._wire.sendall(data, self._deadline)
        except TimeoutError:
            raise LeekTimeout(
                f"leekd at {self.address} did not take our request within {self.timeout:g}s"
            ) from None
        return self._read_replies(events)

    def _read_replies(self, events: list[Any]) -> list[Any]:
        replies = []
        for _ in events:
            event = self._read_event()
            if isinstance(event, Error):
                if len(events) > 1:
                    self._drop()  # answers still owed for the rest of the pipeline
                raise_error(event, self.address)
            replies.append(event)
        return replies

    def _read_event(self) -> Any:
        assert self._wire is not None and self._conn is not None
        while True:
            try:
                event = self._conn.next_event()
            except ProtocolError as exc:
                self._drop()
                if exc.code == ErrorCode.AUTH:
                    raise LeekAuthError(
                        f"leekd at {self.address} does not share our secret ({exc}); give leekd "
                        "and its clients the same LEEK_SECRET / settings.LEEK['secret'] "
                        "(or the same Django SECRET_KEY)"
                    ) from None
                raise LeekProtocolError(
                    f"leekd at {self.address} broke the protocol: {exc}"
                ) from None
            if event is NEED_DATA:
                try:
                    data = self._wire.recv(self._deadline)  # set by _roundtrip, our only caller
                except TimeoutError:
                    raise LeekTimeout(
                        f"leekd at {self.address} did not answer within {self.timeout:g}s"
                    ) from None
                self._conn.receive_data(data)
                continue
            if event is CLOSED:
                raise LeekConnectionError(f"leekd at {self.address} closed the connection")
            return event

    def _open(self) -> None:
        secret = resolve_secret(self._secret_arg)
        if self.transport.tls and self._tls is None:
            self._tls = client_tls_context(self.transport.tls_ca)
        sock = open_socket(
            self.host,
            self.port,
            unix=self.transport.unix,
            tls=self._tls,
            connect_timeout=self.connect_timeout,
            where=self.address,
        )
        self._handshake(sock, secret)
        local = self.server_info.get("local")
        if local is not None and self._tls is None and not self.transport.unix:
            self._move_local(local, secret)

    def _move_local(self, name: Any, secret: Any) -> None:
        """Move to leekd's local socket, named in its welcome, if this process can reach it
        (the same network namespace); else, or if anything fails there, stay on TCP."""
        if not isinstance(name, str) or not _LOCAL_NAME.fullmatch(name) or name == self._remote:
            return
        if not hasattr(socket, "AF_UNIX"):  # a system without Unix-domain sockets
            return
        tcp = (self._sock, self._wire, self._conn, self.server_info)
        try:
            sock = open_socket(
                self.host,
                self.port,
                unix="\0" + name,
                tls=None,
                connect_timeout=self.connect_timeout,
                where=self.address,
            )
            self._handshake(sock, secret)  # on failure it has closed ``sock``
        except (LeekError, OSError):  # another host or network namespace, or not allowed
            self._sock, self._wire, self._conn, self.server_info = tcp
            self._remote = name
            return
        if tcp[0] is not None:
            tcp[0].close()

    def _handshake(self, sock: socket.socket, secret: Any) -> None:
        """Greet leekd on the connected ``sock``, which then carries this link's requests."""
        self._sock, self._wire = sock, Wire(sock)
        self._conn = Connection(Role.CLIENT, secret.key, self.max_frame)
        self._forks = _forks
        try:
            hello = self._read_event()
            if isinstance(hello, Error):
                raise_error(hello, self.address)  # refused before the greeting
            if not isinstance(hello, ServerHello):
                raise LeekProtocolError("leekd did not greet us")
            self._wire.sendall(self._conn.hello(client_info()), self._deadline)
            welcome = self._read_event()
            if isinstance(welcome, Error):
                raise_error(welcome, self.address)
            if not isinstance(welcome, Welcome):
                raise LeekProtocolError("leekd did not welcome us")
            self.server_info = welcome.info
        except LeekAuthError as exc:
            self._drop()
            raise LeekAuthError(
                f"{exc} [this client's secret comes from {secret.source}]"
            ) from None
        except LeekError:
            self._drop()
            raise
        except OSError as exc:
            self._drop()
            raise LeekConnectionError(
                f"leekd at {self.address} dropped the connection during the handshake ({exc})"
            ) from None
