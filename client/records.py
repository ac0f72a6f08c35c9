"""A call → a TaskRecord: naming, previewing, checking options and pickling a call.

Functions the server can import travel by reference; ``__main__`` functions, lambdas and
closures travel by value (cloudpickle decides). Options never ride in the task's kwargs.
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import reprlib
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import cloudpickle

from .errors import LeekError
from .events import MAX_PRIORITY, MAX_TASKS_PER_PUSH, MAX_UNIQUE_KEY, MIN_PRIORITY, TaskRecord

OPTIONS = frozenset(
    {"queue", "max_retries", "timeout", "priority", "delay", "eta", "unique_key"}
)  # what a push takes besides the call; never the task's own kwargs
MAX_DELAY = 10 * 366 * 86400.0  # ten years: anything later is a mistake

MAX_QUEUE_NAME = 100
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
PREVIEW_LIMIT = 300


def callable_name(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qual = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", "?")
    return f"{module}.{qual}"[:255]


def preview(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short, human-readable rendering of the arguments for the admin and logs."""
    if not args and not kwargs:
        return ""  # a task without arguments: no reprlib calls at all
    try:
        parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
        text = ", ".join(parts)
    except Exception:  # a hostile __repr__ must not stop a push
        text = "<unrepresentable arguments>"
    return text if len(text) <= PREVIEW_LIMIT else text[: PREVIEW_LIMIT - 1] + "…"


_PLAIN = frozenset({int, float, bool, str, type(None)})


def _short(value: Any) -> str:
    """``reprlib``'s rendering; numbers and short strings, the usual arguments, directly."""
    if type(value) in _PLAIN:
        text = repr(value)
        if len(text) <= 40:  # what reprlib leaves whole of each (maxlong, the least)
            return text
    return _repr.repr(value)


def validate_options(queue: str | None, max_retries: int | None, timeout: float | None) -> None:
    if queue is not None and (not isinstance(queue, str) or not 0 < len(queue) <= MAX_QUEUE_NAME):
        raise LeekError(
            f"queue must be a non-empty name of at most {MAX_QUEUE_NAME} characters, not {queue!r}"
        )
    if max_retries is not None and (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 1 <= max_retries <= 1000
    ):
        raise LeekError(f"max_retries is the number of attempts, 1..1000, not {max_retries!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 1e8
    ):
        raise LeekError(f"timeout is a positive number of seconds, not {timeout!r}")


def validate_schedule(priority: int | None, unique_key: str | None) -> None:
    if priority is not None and (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise LeekError(
            f"priority is a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} (higher runs "
            f"first), not {priority!r}"
        )
    if unique_key is not None and (
        not isinstance(unique_key, str) or not 0 < len(unique_key.encode()) <= MAX_UNIQUE_KEY
    ):
        raise LeekError(
            f"unique_key is a non-empty string of at most {MAX_UNIQUE_KEY} bytes, not {unique_key!r}"
        )


def run_at(delay: float | timedelta | None, eta: datetime | None) -> float:
    """When a task may run, as a Unix time; 0.0 for now (no delay and no eta)."""
    if delay is not None and eta is not None:
        raise LeekError("give delay or eta, not both")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise LeekError(f"eta must be a datetime, not {type(eta).__name__}")
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise LeekError(
                f"eta {eta.isoformat()} has no time zone, so it could mean any hour: pass an "
                "aware datetime (django.utils.timezone.now() + ..., or datetime.now(UTC) + ...)"
            )
        when = eta.timestamp()
        return when if when > time.time() else 0.0
    if delay is None:
        return 0.0
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY:
        raise LeekError(
            f"delay is a number of seconds (or a timedelta) from 0 to 10 years, not {delay!r}"
        )
    return time.time() + delay if delay > 0 else 0.0


class _Keys:
    """Idempotency keys: the clock, a random prefix per process and a counter (no system
    call per key; the prefix and counter alone make a key unique).

    The clock comes first so that keys from many clients arrive nearly in order: the unique
    index on them grows at its right edge, and a commit of several clients' pushes writes
    one of its pages instead of one per client. The prefix is drawn again in a forked
    child, so parent and child never share a key.
    """

    def __init__(self) -> None:
        self.reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(12).hex()
        self.counter = itertools.count(1)

    def new(self) -> str:
        return f"{time.time_ns() >> 10:x}{self.prefix}{next(self.counter):x}"


new_key = _Keys().new


def make_record(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    priority: int | None = None,
    delay: float | timedelta | None = None,
    eta: datetime | None = None,
    unique_key: str | None = None,
) -> TaskRecord:
    maker = _Maker(fn, queue, max_retries, timeout, priority, delay, eta, unique_key)
    return maker.record(tuple(args), dict(kwargs or {}))


def make_records(calls: Iterable[Any], **options: Any) -> list[TaskRecord]:
    """A record per call (``fn``, ``(fn, args)`` or ``(fn, args, kwargs)``), ``options`` for all.

    What depends only on the function (its name, its task options, whether it pickles by
    reference) is worked out once per function of the batch, not once per call: for a
    batch of one function's calls that takes a third off the client's time per record.
    """
    makers: dict[int, _Maker] = {}  # by id: each maker holds its function, so ids stay unique
    records = []
    for call in calls:
        if callable(call):
            fn, args, kwargs = call, (), {}
        else:
            fn, args, kwargs = (tuple(call) + ((), None))[:3]
            args, kwargs = tuple(args), dict(kwargs or {})
        maker = makers.get(id(fn))
        if maker is None:
            maker = makers[id(fn)] = _Maker(fn, **options)
        records.append(maker.record(args, kwargs))
    return records


class _Maker:
    """A function's share of its records: checked options, name, and how its calls pickle."""

    __slots__ = ("fn", "target", "name", "queue", "max_retries", "timeout", "priority",
                 "run_at", "unique_key", "by_reference")  # fmt: skip

    def __init__(
        self,
        fn: Callable[..., Any],
        queue: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        unique_key: str | None = None,
    ) -> None:
        if not callable(fn):
            raise LeekError(f"a task must be callable, not {type(fn).__name__}")
        validate_options(queue, max_retries, timeout)
        if priority is not None or unique_key is not None:
            validate_schedule(priority, unique_key)
        target = fn
        if isinstance(fn, Task):
            queue = queue or fn.options.get("queue")
            max_retries = max_retries or fn.options.get("max_retries")
            timeout = timeout or fn.options.get("timeout")
            if priority is None:
                priority = fn.options.get("priority")
            if fn.__module__ == "__main__" or not _is_module_attribute(fn):
                target = fn.__wrapped__  # the plain function: by reference or by value
        self.fn, self.target, self.name = fn, target, callable_name(fn)
        self.queue = queue or "default"
        self.max_retries = max_retries or 0
        self.timeout = float(timeout or 0.0)
        self.priority = priority or 0
        self.run_at = run_at(delay, eta) if delay is not None or eta is not None else 0.0
        self.unique_key = unique_key or ""
        self.by_reference = _by_reference(target)

    def record(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskRecord:
        payload = _standard(self.target, args, kwargs) if self.by_reference else None
        if payload is None:
            try:
                payload = cloudpickle.dumps((self.target, args, kwargs), protocol=5)
            except Exception as exc:
                raise LeekError(f"cannot pickle the task {self.name}: {exc}") from exc
        return TaskRecord(
            self.name,
            payload,
            self.queue,
            preview(args, kwargs),
            self.max_retries,
            self.timeout,
            self.priority,
            self.run_at,
            new_key(),
            self.unique_key,
        )


def _by_reference(target: Any) -> bool:
    """Whether the standard pickler may write calls of ``target``: it names an importable
    function and no module is registered with cloudpickle to travel by value."""
    if getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", True):
        return False  # some module is registered to travel by value (or we cannot tell)
    module = getattr(target, "__module__", None)
    return module not in (None, "__main__") and "<" not in getattr(target, "__qualname__", "<")


def _dumps(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """The standard pickler's output when it equals what cloudpickle would make, else None.

    For a call made only of importable things both pickle by reference, and the standard
    pickler is three times faster. Anything cloudpickle would send by value — ``__main__``,
    lambdas, local or dynamic objects, modules registered for pickling by value — makes the
    standard pickler fail or name ``__main__``, and then cloudpickle does the work.
    """
    return _standard(target, args, kwargs) if _by_reference(target) else None


def _standard(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """``_dumps`` for a target already known to be ``_by_reference``."""
    try:
        payload = pickle.dumps((target, args, kwargs), protocol=5)
    except Exception:
        return None
    return None if b"__main__" in payload else payload


def _is_module_attribute(obj: Any) -> bool:
    """True if ``obj`` is reachable as module.qualname (so it can be pickled by reference)."""
    found: Any = sys.modules.get(obj.__module__)
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is obj


class Task:
    """A function with its task options; ``make_record`` takes the options from it.

    ``leek.tasks.TaskFunction``, what ``@leek.task`` makes, adds the ways to queue it.
    """

    __wrapped__: Callable[..., Any]
    __qualname__: str

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        validate_options(options.get("queue"), options.get("max_retries"), options.get("timeout"))
        validate_schedule(options.get("priority"), None)
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> str:
        # Pickle by reference to the module attribute that holds the decorated object.
        return self.__qualname__

    def __repr__(self) -> str:
        return f"<leek task {callable_name(self)}>"


def batches(records: list[TaskRecord], limit: int) -> list[tuple[TaskRecord, ...]]:
    """``records`` in frames of about ``limit`` bytes and at most MAX_TASKS_PER_PUSH each."""
    if len(records) == 1:  # a lone push, the usual case: the one frame the loop would make
        return [(records[0],)]
    out: list[tuple[TaskRecord, ...]] = []
    batch: list[TaskRecord] = []
    size = 0
    for r in records:
        need = len(r.payload) + len(r.name) + len(r.preview) + 64
        if batch and (size + need > limit or len(batch) >= MAX_TASKS_PER_PUSH):
            out.append(tuple(batch))
            batch, size = [], 0
        batch.append(r)
        size += need
    out.append(tuple(batch))
    return out
