"""Several leekd nodes for one client: where the list comes from, and which node is next.

``LEEK_HOSTS=a:8002,b:8002`` (or ``settings.LEEK["hosts"]``, or ``Client(hosts=...)``)
names nodes sharing one PostgreSQL. Each client starts at a different node, so a fleet of
web processes spreads its pushes, and moves to the next one when a node is unreachable or
refuses a push it did not record. A push sent again carries the same record keys, so a
node that did record it answers with the id it gave instead of recording it twice.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Sequence
from typing import Any

from .conf import django_leek_settings
from .errors import LeekConfigError

_starts = itertools.count(random.randrange(1 << 16))  # where the next client begins


def parse_hosts(value: Any, source: str) -> list[tuple[str, int]]:
    """``"a:8002,b:8002"`` or ``["a:8002", "[::1]:8002"]`` as (host, port) pairs."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise LeekConfigError(f"{source}: {text!r} is not host:port (e.g. 10.0.0.5:8002)")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise LeekConfigError(f"{source} names no host; give host:port entries")
    return out


def resolve_hosts(hosts: Sequence[str] | str | None) -> list[tuple[str, int]] | None:
    """The node list by precedence (argument > LEEK_HOSTS > settings.LEEK), or None."""
    if hosts is not None:
        return parse_hosts(hosts, "hosts argument")
    if os.environ.get("LEEK_HOSTS"):
        return parse_hosts(os.environ["LEEK_HOSTS"], "LEEK_HOSTS")
    leek = django_leek_settings() or {}
    if leek.get("hosts"):
        return parse_hosts(leek["hosts"], "settings.LEEK['hosts']")
    return None


class Hosts:
    """The nodes in a fixed order, and the one this client talks to now."""

    def __init__(self, addresses: list[tuple[str, int]]) -> None:
        self.addresses = addresses
        self.index = next(_starts) % len(addresses)

    @property
    def current(self) -> tuple[str, int]:
        return self.addresses[self.index]

    def advance(self) -> tuple[str, int]:
        self.index = (self.index + 1) % len(self.addresses)
        return self.current
