"""The workload's task functions, importable by every system's workers (stdlib only)."""

from __future__ import annotations

import time


def noop() -> None:
    return None


def block(seconds: float) -> float:
    """Keeps one worker busy, so the tasks pushed behind it stay waiting."""
    time.sleep(seconds)
    return seconds
