"""The ``@task`` decorator: a function that runs inline when called and queues with ``.delay()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client import get_client
from .records import Task

OPTIONS = {"queue", "priority", "max_retries", "timeout", "on_commit"}


class TaskFunction(Task):
    """A function decorated with ``@leek.task``: call it to run inline, ``.delay()`` to queue it."""

    def delay(self, *args: Any, **kwargs: Any) -> int | None:
        """Queue a call with these arguments; returns the task id once it is durable
        (None inside ``atomic()``: the push waits for the commit)."""
        return get_client().push(self, args, kwargs)

    def push(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> int | None:
        """Queue a call with per-call options (``queue``, ``priority``, ``delay``/``eta``,
        ``unique_key``, ``max_retries``, ``timeout``, ``on_commit``)."""
        return get_client().push(self, args, kwargs, **options)


def task(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``@task`` or ``@task(queue=..., priority=..., max_retries=..., timeout=..., on_commit=...)``."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(f"unknown task options: {', '.join(sorted(unknown))}")
    if fn is not None:
        return TaskFunction(fn, options)
    return lambda f: TaskFunction(f, options)
