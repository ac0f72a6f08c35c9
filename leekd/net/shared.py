"""What every connection of one server shares: the API, the secret, the limits, the logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .api import LeekdAPI
from .authlog import AuthLog, RefusalLog


@dataclass(eq=False)
class Shared:
    api: LeekdAPI
    secret: bytes
    max_frame: int
    max_connections: int
    local: str | None = None  # the local socket's name, told to clients in the welcome
    live: set[Any] = field(default_factory=set)  # accepted and counted
    open: set[Any] = field(default_factory=set)  # every one not yet lost, refused too
    auth_log: AuthLog = field(default_factory=AuthLog)
    refusal_log: RefusalLog = field(default_factory=RefusalLog)
