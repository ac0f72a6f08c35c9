"""``@leek.periodic``: declare, next to a function, that leekd runs it on a schedule.

The decorator only records the function in ``REGISTRY``; leekd reads it after importing
the task modules, exactly as it reads ``settings.LEEK["schedule"]``. The schedule's name is
the function's dotted name. Nothing here talks to leekd or imports Django.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .records import callable_name

OPTIONS = frozenset(
    {"cron", "every", "args", "kwargs", "queue", "priority", "max_retries", "timeout"}
    | {"tz", "catch_up", "name"}
)

REGISTRY: dict[str, dict[str, Any]] = {}  # schedule name → entry, as in LEEK["schedule"]


def periodic(
    *, cron: str | None = None, every: str | float | None = None, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@periodic(cron="*/15 * * * *")`` or ``@periodic(every="15m")``; other options as in
    ``settings.LEEK["schedule"]`` (``args``, ``kwargs``, ``queue``, ``priority``,
    ``max_retries``, ``timeout``, ``tz``, ``catch_up``, ``name``). Returns the function as is."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(f"unknown periodic options: {', '.join(sorted(unknown))}")
    if (cron is None) == (every is None):
        raise TypeError("periodic needs cron= or every=, not both")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        target = callable_name(fn)
        entry = {k: v for k, v in options.items() if k != "name"}
        entry["task"] = target
        entry["cron" if cron is not None else "every"] = cron if cron is not None else every
        REGISTRY[str(options.get("name") or target)] = entry
        return fn

    return register
