"""What a connection may ask of the rest of leekd: the narrow interface ``app.py`` implements.

The transport knows nothing of queues, workers or the database; every request it serves is
one of these calls. Calls marked *blocking* run in the server's query pool, never on the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

from leek.protocol import TaskRecord


class LeekdAPI(Protocol):
    draining: bool  # True once a stop began: no new pushes
    pool: Executor  # where blocking calls run
    served_queues: frozenset[str] | None  # pushes to other queues are refused; None: any

    def push(self, records: tuple[TaskRecord, ...], token: Any) -> None:
        """Commit these records; ``resolve_pushes`` later answers ``token``."""

    def ping_info(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...

    def waiting(self) -> int: ...

    def handled(self) -> int: ...

    def is_running(self, task_id: int) -> bool: ...

    def running_info(self, task_id: int) -> dict[str, Any] | None:
        """While a worker runs the task: when this attempt started (Unix time), and who."""

    def task_status(self, task_id: int) -> dict[str, Any] | None:
        """The task's record, or None (blocking)."""

    def task_result(self, task_id: int) -> dict[str, Any]:
        """The task's result, ``pending``, ``purged`` or ``unknown`` (blocking)."""

    def watch_result(
        self, task_id: int, fn: Callable[[dict[str, Any]], None]
    ) -> Callable[[], None]:
        """On the loop: call ``fn`` with the result once the task's outcome is committed;
        returns a function that cancels the watch."""

    def task_cancelled(self, task_id: int) -> None:
        """On the loop: the task was cancelled; answer the result waits for it."""

    def cancel(self, task_id: int) -> dict[str, Any]:
        """Cancel a task that has not started (blocking): ``{"cancelled": True, ...}``, or
        ``{"cancelled": False, "found": bool, "reason": str}``."""

    def status_of_key(self, key: str) -> dict[str, Any] | None:
        """The record pushed with this client-made key, or None (blocking)."""

    def latest_failures(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` failures, newest first (blocking)."""

    def purge_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """Check a purge request (``ValueError`` for the client); returns the blocking work."""

    def retry_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """Check a retry_failed request; returns the blocking work."""

    def nodes_job(self) -> Callable[[], dict[str, Any]]:
        """Check a nodes request (``ValueError`` on one node); returns the blocking work."""

    def schedules(self) -> list[dict[str, Any]]:
        """Every periodic schedule with its last and next tick (blocking)."""

    def create_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """Check a create_job request; returns the blocking work (the job committed)."""

    def job_status(self, job_id: int) -> dict[str, Any] | None:
        """A multi-step job's record, or None (blocking)."""

    def resume_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """Check a resume_job request; returns the blocking work."""

    def request_stop(self, force: bool = False) -> None: ...
