"""Rate-limited logs of refused peers: a flood of bad logins costs lines, not megabytes."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("leekd.server")


class AuthLog:
    """Logs failed authentications with the peer, at most ``burst`` lines per minute."""

    line = "authentication failed from %s: %s"
    summary = "%d more failed authentications in the last minute"

    def __init__(self, burst: int = 10) -> None:
        self.burst = burst
        self.window = 0.0
        self.count = 0
        self.suppressed = 0

    def failed(self, peer: str, why: str) -> None:
        now = time.monotonic()
        if now - self.window > 60:
            if self.suppressed:
                log.warning(self.summary, self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        self.count += 1
        if self.count <= self.burst:
            log.warning(self.line, peer, why)
        else:
            self.suppressed += 1


class RefusalLog(AuthLog):
    """Logs connections refused over ``max_connections``, as rate-limited as ``AuthLog``."""

    line = "refusing %s: %s"
    summary = "%d more connections refused in the last minute"
