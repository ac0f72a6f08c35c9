"""How a client reaches leekd: plain TCP, TCP inside TLS, or a Unix-domain socket.

TLS only protects the transport; leek's own handshake and per-frame HMAC still run inside
it, so a client needs the shared secret whatever the transport.
"""

from __future__ import annotations

import select
import socket
import ssl

from .errors import LeekConfigError, LeekConnectionError


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
