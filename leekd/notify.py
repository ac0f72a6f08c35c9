"""systemd's readiness protocol (sd_notify) without a dependency: one datagram per state."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("leekd.server")


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to $NOTIFY_SOCKET; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def announce_ready(where: str, workers: str, python: str, refusing: bool = False) -> None:
    """The start-up line with the real address, and READY=1 for systemd."""
    from leek import __version__

    note = " (refusing pushes: the database does not take writes)" if refusing else ""
    pid = os.getpid()
    log.info(
        "leekd %s listening on %s (pid %d, %s, Python %s)%s",
        __version__,
        where,
        pid,
        workers,
        python,
        note,
    )
    sd_notify(f"READY=1\nSTATUS=listening on {where}{note}\nMAINPID={pid}")
