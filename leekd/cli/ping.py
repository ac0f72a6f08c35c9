"""Ping leekd at an address as it logs (and the pidfile records) them."""

from __future__ import annotations

from typing import Any

TLS_SUFFIX = " with TLS"


def ping(address: str, secret: str | bytes | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Ping leekd at an address as it logs them: ``HOST:PORT``, ``unix:PATH``, ``… with TLS``."""
    from leek import Client

    options: dict[str, Any] = {"connect_timeout": min(2.0, timeout), "timeout": timeout}
    if address.startswith("unix:"):
        client = Client(secret=secret, unix=address[len("unix:") :], **options)
    else:
        tls = address.endswith(TLS_SUFFIX)
        host, _, port = address.removesuffix(TLS_SUFFIX).rpartition(":")
        if tls:
            options["tls"] = True
        client = Client(_connect_host(host.strip("[]")), int(port), secret, **options)
    with client:
        return client.ping()


def _connect_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
