"""The blocking client: one persistent, authenticated connection per process.

A ``Client`` is thread-safe (one request at a time on its connection), reconnects when leekd
restarted under it, and after ``fork()`` the child opens its own connection instead of
sharing its parent's socket.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import cloudpickle

from .conf import resolve_address, resolve_secret, resolve_transport
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
from .protocol import (
    CLOSED,
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    Connection,
    Error,
    ErrorCode,
    ProtocolError,
    Push,
    Pushed,
    Reply,
    Request,
    Role,
    ServerHello,
    TaskRecord,
    Welcome,
)
from .records import OPTIONS, batches, make_record
from .transport import client_tls_context, open_socket, stale
from .version import __version__

_RECV = 65536  # below malloc's mmap threshold: a bigger buffer costs a page-faulting mmap per recv
_FRAME_BUDGET = 4 * 1024 * 1024  # split push_many into frames of about this size
_forks = 0  # forks between the first process and this one: a socket from before is a parent's


def client_info() -> dict[str, Any]:
    v = sys.version_info
    return {
        "python": f"{v.major}.{v.minor}",
        "cloudpickle": cloudpickle.__version__,
        "leek": __version__,
        "pid": os.getpid(),
    }


class Client:
    """A connection to leekd. Arguments override ``LEEK_*`` env vars and ``settings.LEEK``.

    ``unix`` connects to a Unix-domain socket instead of TCP; ``tls=True`` wraps TCP in TLS,
    checking leekd's certificate against ``tls_ca`` (or the system's CAs) and the host name.
    ``hosts`` (or ``LEEK_HOSTS``) lists several nodes to fail over between (hosts.py).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        secret: str | bytes | None = None,
        *,
        connect_timeout: float = 2.0,
        timeout: float = 60.0,
        max_frame: int = DEFAULT_MAX_FRAME,
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
        self.max_frame = max_frame
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._conn: Connection | None = None
        self._forks = _forks  # which process made the socket, without a getpid() per call
        self.server_info: dict[str, Any] = {}

    @property
    def address(self) -> str:
        if self.transport.unix:
            return f"unix:{self.transport.unix}"
        return f"{self.host}:{self.port}" + (" (TLS)" if self.transport.tls else "")

    # ---- public API

    def push(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> int:
        """Queue ``fn(*args, **kwargs)``; returns its id once leekd has committed it."""
        if options:
            unknown = set(options) - OPTIONS
            if unknown:
                raise TypeError(
                    f"unknown push options: {', '.join(sorted(unknown))} (a push takes "
                    f"{', '.join(sorted(OPTIONS))}; pass the task's own arguments in kwargs)"
                )
        record = make_record(fn, tuple(args), kwargs, **options)
        return self.push_records([record])[0]

    def push_many(self, calls: Iterable[Any], **options: Any) -> list[int]:
        """Queue calls (``fn``, ``(fn, args)``, ``(fn, args, kwargs)``) in few round trips."""
        records = []
        for call in calls:
            if callable(call):
                fn, args, kwargs = call, (), None
            else:
                fn, args, kwargs = (tuple(call) + ((), None))[:3]
            records.append(make_record(fn, tuple(args), kwargs, **options))
        return self.push_records(records)

    def push_records(self, records: list[TaskRecord]) -> list[int]:
        if not records:
            return []
        frames = [Push(b) for b in batches(records, min(_FRAME_BUDGET, self.max_frame // 2))]
        ids: list[int] = []
        try:
            replies = self._roundtrip(frames)
        except LeekTimeout as exc:
            raise LeekTimeout.of_push(exc, [r.key for r in records if r.key]) from None
        for reply in replies:
            if not isinstance(reply, Pushed):
                raise LeekProtocolError(f"expected task ids, got {type(reply).__name__}")
            ids.extend(reply.ids)
        if len(ids) != len(records):
            raise LeekProtocolError(f"pushed {len(records)} tasks but got {len(ids)} ids")
        return ids

    def request(self, op: str, **args: Any) -> Any:
        (reply,) = self._roundtrip([Request(op, args)])
        if not isinstance(reply, Reply):
            raise LeekProtocolError(f"expected a reply, got {type(reply).__name__}")
        return reply.data

    def ping(self) -> dict[str, Any]:
        """leekd's health: status ("ok", "draining", or "unavailable": the database takes no
        writes, ``database`` says why), version, uptime, workers."""
        return self.request("ping")

    def waiting(self) -> int:
        """Tasks queued and not yet started."""
        return int(self.request("waiting"))

    def handled(self) -> int:
        """Tasks finished (succeeded or failed) since leekd started."""
        return int(self.request("handled"))

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def status(self, task_id: int) -> dict[str, Any]:
        """One task's state: queued, running, succeeded or failed, with attempts and error."""
        return self.request("status", id=int(task_id))

    def cancel(self, task_id: int) -> dict[str, Any]:
        """Cancel a task that has not started (due or scheduled): it never runs, and its
        record says "cancelled". Raises ``LeekRejected`` (with the reason) for a task that
        is running or finished, and for an unknown id."""
        return self.request("cancel", id=int(task_id))

    def status_of_key(self, key: str) -> dict[str, Any]:
        """The task recorded for a push with this key (``LeekTimeout.keys``); LeekRejected
        with code "not_found" if that push was never recorded."""
        return self.request("status_of_key", key=str(key))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Client:
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
        self._sock = None
        self._conn = None
        self._forks = _forks

    def _roundtrip(self, events: list[Any]) -> list[Any]:
        """Send ``events`` and read their answers, all within ``timeout`` (LeekTimeout)."""
        with self._lock:
            self._deadline = time.monotonic() + self.timeout
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
            self._sock, self._conn = None, None  # the parent's socket: leave it alone
            self._forks = _forks
        if self._sock is not None and stale(self._sock):
            self._drop()
        fresh = self._sock is None
        while True:
            if self._sock is None:
                self._open()
            try:
                return self._exchange(events)
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
        assert self._sock is not None and self._conn is not None
        data = (
            self._conn.send(events[0])
            if len(events) == 1
            else b"".join([self._conn.send(e) for e in events])
        )
        try:
            self._sock.settimeout(max(self._deadline - time.monotonic(), 1e-3))
            self._sock.sendall(data)
        except TimeoutError:
            raise LeekTimeout(
                f"leekd at {self.address} did not take our request within {self.timeout:g}s"
            ) from None
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
        assert self._sock is not None and self._conn is not None
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
                    self._sock.settimeout(max(self._deadline - time.monotonic(), 1e-3))
                    data = self._sock.recv(_RECV)
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
        sock.settimeout(self.timeout)
        self._sock, self._conn = sock, Connection(Role.CLIENT, secret.key, self.max_frame)
        self._forks = _forks
        try:
            hello = self._read_event()
            if isinstance(hello, Error):
                raise_error(hello, self.address)  # refused before the greeting
            if not isinstance(hello, ServerHello):
                raise LeekProtocolError("leekd did not greet us")
            sock.sendall(self._conn.hello(client_info()))
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


_default: Client | None = None
_default_lock = threading.Lock()


def get_client() -> Client:
    """The process's shared client, created on first use from the environment/settings."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def _reset_after_fork() -> None:
    global _default, _default_lock, _forks
    _forks += 1
    _default_lock = threading.Lock()
    if _default is not None:
        _default._sock, _default._conn = None, None
        _default._forks = _forks
        _default._lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_after_fork)
