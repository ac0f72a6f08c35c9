"""Pushes that never leave the process, for tests: run at once (eager) or only recorded (capture).

Both make the same pickling round trip a real push makes — the call is pickled into a
record and loaded back — so a task that cannot be pickled fails in tests too. A ``Client``
whose ``inline`` is one of these hands it every push instead of sending it to leekd.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import pickle
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .errors import LeekError, LeekRejected
from .events import TaskRecord
from .results import outcome_value

_ids = itertools.count(1)


@dataclass
class Captured:
    """A push recorded by capture mode: the call as leekd would load it, and its options."""

    id: int
    name: str
    fn: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    priority: int = 0
    run_at: float = 0.0
    max_retries: int = 0
    timeout: float = 0.0
    unique_key: str = ""


def _load(record: TaskRecord) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    fn, args, kwargs = cloudpickle.loads(record.payload)
    return fn, tuple(args), dict(kwargs)


class Capture:
    """Records pushes; nothing runs. ``pushes`` in push order; ``named(name)`` filters."""

    def __init__(self) -> None:
        self.pushes: list[Captured] = []

    def push(self, records: list[TaskRecord]) -> list[int]:
        ids = []
        for r in records:
            fn, args, kwargs = _load(r)
            c = Captured(
                next(_ids), r.name, fn, args, kwargs, r.queue, r.priority, r.run_at,
                r.max_retries, r.timeout, r.unique_key,
            )  # fmt: skip
            self.pushes.append(c)
            ids.append(c.id)
        return ids

    def named(self, name: str) -> list[Captured]:
        """The captured pushes of the callable ``name`` (``module.qualname``, or its tail)."""
        return [c for c in self.pushes if c.name == name or c.name.endswith("." + name)]

    def result(self, task_id: int, timeout: float | None = None) -> Any:
        raise LeekError(
            f"task {task_id} was captured by leek.testing.capture(), not run; use eager() "
            "to run tasks in tests"
        )

    def clear(self) -> None:
        self.pushes.clear()


class Eager(Capture):
    """Runs each push at once, here, once (no retries, no delay); keeps every outcome.

    ``propagate``: a failing task raises at the push, as a plain call would.
    """

    def __init__(self, propagate: bool = False) -> None:
        super().__init__()
        self.propagate = propagate
        self.outcomes: dict[int, dict[str, Any]] = {}

    def push(self, records: list[TaskRecord]) -> list[int]:
        start = len(self.pushes)
        ids = super().push(records)
        for c in self.pushes[start:]:
            self._run(c)
        return ids

    def _run(self, c: Captured) -> None:
        try:
            value = c.fn(*c.args, **c.kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except Exception as exc:
            self.outcomes[c.id] = {
                "state": "failed",
                "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
            if self.propagate:
                raise
            return
        try:  # as leekd keeps it: pickled, or not at all
            kept: Any = pickle.loads(pickle.dumps(value, protocol=5))
        except Exception:
            kept = None
        self.outcomes[c.id] = {"state": "succeeded", "value": kept}

    def result(self, task_id: int, timeout: float | None = None) -> Any:
        found = self.outcomes.get(task_id)
        if found is None:
            raise LeekRejected(f"no task with id {task_id} ran in eager mode", "not_found")
        if found["state"] == "succeeded":
            return found["value"]
        return outcome_value(task_id, found)[1]  # raises LeekTaskFailed
