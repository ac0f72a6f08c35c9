"""The module-level API: each call goes through the process's shared client (``get_client``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .client import get_client


def push_task_to_queue(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int | None:
    """Queue ``fn(*args, **kwargs)`` on leekd; returns the task id once it is durable
    (None inside ``atomic()``: the push waits for the commit)."""
    return get_client().push(fn, args, kwargs)


def push(
    fn: Callable[..., Any],
    args: Iterable[Any] = (),
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> int | None:
    """Queue ``fn(*args, **kwargs)`` with options: ``queue``, ``priority``, ``delay`` (seconds
    or a timedelta) or ``eta`` (an aware datetime), ``unique_key``, ``max_retries``,
    ``timeout``, ``on_commit``."""
    return get_client().push(fn, args, kwargs, **options)


def push_many(calls: Iterable[Any], **options: Any) -> list[int] | None:
    return get_client().push_many(calls, **options)


def cancel(task_id: int) -> dict[str, Any]:
    """Cancel a task that has not started; ``LeekRejected`` says why not, if it cannot be."""
    return get_client().cancel(task_id)


def result(task_id: int, timeout: float | None = None) -> Any:
    """Wait for a task's return value (see ``Client.result``), on a connection of its own."""
    return get_client().waiter().result(task_id, timeout)
