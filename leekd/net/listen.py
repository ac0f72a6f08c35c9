"""Where leekd listens: TCP, TCP inside TLS, or a Unix-domain socket.

Everything that can fail on bad settings (a certificate that does not load, a socket path
that is taken) fails in ``Listener()``, before recovery or any thread starts. A Unix socket
gets mode 0600 before ``listen()``: until then every ``connect()`` is refused, so no other
user can get in during start-up either. It is removed on stop, if it is still ours.

Plain TCP on Linux comes with a local socket: an abstract Unix-domain socket (no file; the
kernel keeps one namespace of them per network namespace, the same processes that can
reach the loopback) under a random name. The welcome tells authenticated clients that
name, and a client in the same network namespace moves its connection there: a push then
skips TCP's loopback path on both sides. The name is unguessable and held by leekd for its
whole run, so nobody can be listening on it first; the client still runs the whole
handshake again on it, so the socket proves nothing by itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import ssl
import stat
import sys
from collections.abc import Callable

from leek.errors import LeekConfigError

from ..conf import Config
from .accept import Acceptor, tcp_sockets

log = logging.getLogger("leekd.server")

BACKLOG = 1024
LOCAL_PREFIX = "leek-"  # of the local socket's abstract name: then 32 hex digits


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2 or later with the given certificate chain; clients present no certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Clients never resume sessions; a TLS 1.3 ticket arriving on an idle client connection
    # would only make it look stale.
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise LeekConfigError(f"cannot load TLS certificate {cert} with key {key}: {exc}") from None
    return ctx


def _socket_alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # cannot tell (not ours, backlog full): assume someone is there
    finally:
        probe.close()
    return True


def local_socket() -> tuple[socket.socket, str] | None:
    """A listening abstract Unix-domain socket under a random name, and the name (without
    its leading NUL); None where there are none (not Linux, or address families restricted)."""
    if not sys.platform.startswith("linux"):
        return None
    name = LOCAL_PREFIX + secrets.token_hex(16)
    sock = None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind("\0" + name)
        sock.listen(BACKLOG)
    except OSError as exc:
        if sock is not None:
            sock.close()
        log.info("no local socket (%s); clients on this host use TCP", exc.strerror or exc)
        return None
    return sock, name


def claim_unix_path(path: str) -> socket.socket:
    """A socket bound at ``path`` with mode 0600, not yet listening.

    A stale socket left by a killed server is replaced; a live one, or anything that is
    not a socket, is refused.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise LeekConfigError(f"{path} exists and is not a socket; refusing to replace it")
        if _socket_alive(path):
            raise LeekConfigError(
                f"another server is listening on {path}; stop it first, or choose another --unix"
            )
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """leekd's listening socket(s): prepared in the constructor, served by ``start()``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: Acceptor | None = None
        self.port: int | None = None
        self._unix_sock: socket.socket | None = None
        self._unix_id: tuple[int, int] | None = None
        self.tls: ssl.SSLContext | None = None
        self.local_name: str | None = None  # the local socket's, once listening
        if config.unix:
            self._unix_sock = claim_unix_path(config.unix)
            st = os.stat(config.unix)
            self._unix_id = (st.st_dev, st.st_ino)
        elif config.tls_cert and config.tls_key:
            self.tls = server_tls_context(config.tls_cert, config.tls_key)

    @property
    def where(self) -> str:
        """The address for logs and clients: ``unix:PATH`` or ``HOST:PORT`` (with TLS)."""
        if self.config.unix:
            return f"unix:{self.config.unix}"
        port = self.config.port if self.port is None else self.port
        return f"{self.config.host}:{port}" + (" with TLS" if self.tls else "")

    async def start(self, factory: Callable[[], asyncio.Protocol]) -> Acceptor:
        if self._unix_sock is not None:
            self._unix_sock.listen(BACKLOG)
            self.server = Acceptor([self._unix_sock], factory)
        else:
            socks = tcp_sockets(self.config.host, self.config.port, BACKLOG)
            self.port = socks[0].getsockname()[1] if socks else self.config.port
            local = local_socket() if self.tls is None and self.config.local_socket else None
            if local is not None:
                socks.append(local[0])
                self.local_name = local[1]
                log.info("clients on this host move to a local socket (--no-local-socket: not)")
            self.server = Acceptor(socks, factory, self.tls, self.config.handshake_timeout)
        return self.server

    def close(self) -> None:
        """Stop accepting; remove our Unix socket file (not one another server put there)."""
        if self.server is not None:
            self.server.close()
        elif self._unix_sock is not None:
            self._unix_sock.close()
        path = self.config.unix
        if path and self._unix_id is not None:
            try:
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == self._unix_id:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            self._unix_id = None


__all__ = ["Listener", "claim_unix_path", "server_tls_context"]
