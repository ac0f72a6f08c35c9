"""A hand-driven peer for attacking a live leekd: raw sockets, frames built by hand.

It speaks the protocol only as far as a test says, so tests can send what no real client
would: garbage, forged tags, replayed frames, half a frame. Every read is bounded.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
import uuid
from pathlib import Path

import pytest

import leek
from leek.link import client_info
from leek.protocol import (
    TAG_SIZE,
    Connection,
    ErrorCode,
    FrameType,
    Role,
    ServerHello,
    Welcome,
)

from . import tasks
from .helpers import SECRET, wait_for


def frame(ftype: int, payload: bytes, tag: bytes | None = None) -> bytes:
    """A well-formed frame; with no ``tag``, a random (so wrong) one."""
    tag = os.urandom(TAG_SIZE) if tag is None else tag
    return struct.pack("!I", 1 + len(payload) + TAG_SIZE) + bytes([ftype]) + payload + tag


def error_code(raw: bytes) -> ErrorCode | None:
    """The code of an error frame, read without checking its tag (tests only)."""
    if len(raw) < 7 or raw[4] != FrameType.ERROR:
        return None
    return ErrorCode(struct.unpack_from("!H", raw, 5)[0])


def frame_types(raw: bytes) -> list[int]:
    """The type of each whole frame in ``raw``."""
    types, pos = [], 0
    while pos + 5 <= len(raw):
        (length,) = struct.unpack_from("!I", raw, pos)
        types.append(raw[pos + 4])
        pos += 4 + length
    return types


class RawPeer:
    def __init__(
        self,
        port: int | None = None,
        unix: str | None = None,
        timeout: float = 5.0,
        bufsize: int | None = None,
    ) -> None:
        family = socket.AF_UNIX if unix is not None else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if bufsize:  # small kernel buffers: back-pressure shows up sooner
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        self.sock.settimeout(timeout)
        self.sock.connect(unix if unix is not None else ("127.0.0.1", port))
        self.timeout = timeout

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def recv_frame(self) -> bytes:
        """One whole frame as it came off the wire (length prefix included)."""
        head = self._recv_exact(4)
        (length,) = struct.unpack("!I", head)
        assert length <= 1 << 20, f"server sent a {length}-byte frame"
        return head + self._recv_exact(length)

    def handshake(self, secret: bytes = SECRET.encode()) -> Connection:
        """A real handshake; returns the client side of the protocol, ready for requests."""
        conn = Connection(Role.CLIENT, secret)
        conn.receive_data(self.recv_frame())
        assert isinstance(conn.next_event(), ServerHello)
        self.hello = conn.hello(client_info())
        self.sock.sendall(self.hello)
        conn.receive_data(self.recv_frame())
        assert isinstance(conn.next_event(), Welcome)
        return conn

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, interval: float, limit: float) -> float | None:
        """Send ``data`` a byte at a time; seconds until the server hung up, None if it did not."""
        t0 = time.monotonic()
        for b in data:
            if time.monotonic() - t0 > limit:
                return None
            try:
                self.sock.sendall(bytes([b]))
            except OSError:
                return time.monotonic() - t0
            readable, _, _ = select.select([self.sock], [], [], interval)
            if readable:
                try:
                    if not self.sock.recv(65536, socket.MSG_PEEK):
                        return time.monotonic() - t0
                except OSError:
                    return time.monotonic() - t0
                self.sock.recv(65536)  # an answer or an error frame: read on
        return None

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything the server sends until it closes; fails if it does not within ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server did not close the connection; got {data[:80]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            except TimeoutError:
                continue
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assert_serves(
    directory: Path, timeout: float = 20.0, secret: str | None = SECRET, **client: object
) -> None:
    """leekd answers ping and runs a normal push to the end (``secret=None``: look it up)."""
    name = f"ok-{uuid.uuid4().hex[:8]}"
    with leek.Client(secret=secret, **client) as c:  # type: ignore[arg-type]
        assert c.ping()["status"] == "ok"
        c.push(tasks.touch, (str(directory), name))
    wait_for(lambda: (directory / name).exists(), timeout=timeout, what=f"task {name} to run")


class Evil:
    """Unpickling this creates ``path``: proof that a payload was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def report_line(config: pytest.Config, line: str) -> None:
    """Print past pytest's output capture, so soak counts show in every run."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)
