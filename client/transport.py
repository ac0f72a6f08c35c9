"""How a client reaches leekd: plain TCP, TCP inside TLS, or a Unix-domain socket.

TLS only protects the transport; leek's own handshake and per-frame HMAC still run inside
it, so a client needs the shared secret whatever the transport.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import struct
import sys
import time

from .errors import LeekConfigError, LeekConnectionError

# Below malloc's mmap threshold: a bigger buffer costs a page-faulting mmap per recv.
RECV_SIZE = 65536
_TIMEVAL = struct.Struct("@ll")  # struct timeval on Linux: seconds and microseconds, both long
_SLACK = 0.05  # the receive timeout is set again when the time left moves by more than this


def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify leekd's certificate chain (``ca_file`` or the system's CAs) and its host name."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise LeekConfigError(f"cannot load the TLS CA file {ca_file}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def open_socket(
    host: str,
    port: int,
    *,
    unix: str | None,
    tls: ssl.SSLContext | None,
    connect_timeout: float,
    where: str,
) -> socket.socket:
    """A connected socket (TLS handshake done), or ``LeekConnectionError`` saying what to check."""
    if unix:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(unix)
        except OSError as exc:
            sock.close()
            raise LeekConnectionError(
                f"leekd is not reachable at {where} ({exc.strerror or exc}); is it running with "
                "`--unix` on that path, and may this user open it (mode 0600: same user only)?"
            ) from None
        return sock
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as exc:
        raise LeekConnectionError(
            f"leekd is not reachable at {where} ({exc.strerror or exc}); is it running? "
            "Check with `leekd status` or `leek-shell ping`, and that LEEK_HOST/LEEK_PORT match."
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise LeekConnectionError(
            f"leekd's TLS certificate at {where} did not verify ({exc.verify_message}); give "
            "the client the CA that signed it (tls_ca= / LEEK_TLS_CA) and connect with the "
            "host name the certificate names"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise LeekConnectionError(
            f"TLS handshake with leekd at {where} failed ({exc}); is leekd running with "
            "--tls-cert/--tls-key?"
        ) from None


def stale(sock: socket.socket) -> bool:
    """True if an idle connection was closed by the server (say, it restarted)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        readable = poller.poll(0)
    except (OSError, ValueError):
        return True
    # Readable while idle: either end of stream, or bytes nobody asked for. Both: reconnect.
    return bool(readable)


class Wire:
    """A connected socket, read and written against a deadline (``time.monotonic()``).

    A plain socket on Linux stays in blocking mode: a send that fits in its buffer goes out
    with ``MSG_DONTWAIT``, and a receive waits under the kernel's own timeout
    (``SO_RCVTIMEO``, set again only when the time left has moved), so that a round trip is
    one ``send`` and one ``recv``. Python's socket timeout would add four system calls (an
    ``ioctl`` per ``settimeout``, a ``poll`` before the send and the receive). TLS
    sockets, and other systems, keep Python's timeouts. Raises ``TimeoutError`` at the
    deadline.

    A Unix-domain socket on Linux waits for its answer in ``poll`` instead, then reads
    without blocking: a thread asleep in ``recv`` there is woken a second time in each round
    trip, when leekd reads the request (freeing its send space wakes every sleeper on the
    socket; ``poll`` waiting for input only is not woken by that). One context switch per
    push instead of two, for one more system call.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.kernel_timeouts = sys.platform == "linux" and not isinstance(sock, ssl.SSLSocket)
        self.armed = -1.0  # seconds the kernel's receive timeout is set to; -1: none set
        self.poller: select.poll | None = None  # set: receive as _recv_polled does
        if self.kernel_timeouts:
            sock.settimeout(None)
            if sock.family == socket.AF_UNIX:  # Linux has it (kernel_timeouts)
                self.poller = select.poll()
                self.poller.register(sock, select.POLLIN)

    def _arm(self, left: float) -> None:
        if not left - _SLACK <= self.armed <= left:
            seconds = int(left)
            timeval = _TIMEVAL.pack(seconds, max(int((left - seconds) * 1e6), 0 if seconds else 1))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self.armed = left

    def sendall(self, data: bytes | memoryview, deadline: float) -> None:
        if self.kernel_timeouts:
            try:  # what fits in the socket's buffer, the usual case: one send, no waiting
                sent = self.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        # The rest under Python's timeout, which holds for the whole sendall: a send with
        # the kernel's timeout may go on while its peer keeps reading a little at a time.
        self.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        try:
            self.sock.sendall(data)
        finally:
            if self.kernel_timeouts:
                self.sock.settimeout(None)

    def recv(self, deadline: float) -> bytes:
        if self.poller is not None:
            return self._recv_polled(self.poller, deadline)
        while True:
            left = max(deadline - time.monotonic(), 1e-3)
            if not self.kernel_timeouts:
                self.sock.settimeout(left)
                return self.sock.recv(RECV_SIZE)
            self._arm(left)
            try:
                return self.sock.recv(RECV_SIZE)
            except BlockingIOError:  # the kernel's receive timeout, perhaps set for less
                if time.monotonic() >= deadline:
                    raise TimeoutError("receive timed out") from None

    def _recv_polled(self, poller: select.poll, deadline: float) -> bytes:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("receive timed out")
            if poller.poll(math.ceil(left * 1000)):  # readable, closed or failed
                try:
                    return self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
                except BlockingIOError:  # woken with nothing to read after all
                    pass
