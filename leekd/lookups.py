"""What leekd's API reads and maintains in the database, for ``Leekd`` (app.py).

Each call imports its store module when first asked (Django's app registry is ready by
then) and runs in the server's query pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Lookups:
    """The blocking ``LeekdAPI`` calls: reads of task records and the maintenance jobs."""

    store: Any
    member: Any

    def nodes_job(self) -> Callable[[], dict[str, Any]]:
        from .node import nodes_job

        return nodes_job(self.member)

    def task_status(self, task_id: int) -> dict[str, Any] | None:
        from .store.queries import task_status  # needs Django's app registry, ready by now

        return task_status(task_id)

    def task_result(self, task_id: int) -> dict[str, Any]:
        from .store.queries import task_result

        return task_result(task_id)

    def latest_failures(self, limit: int) -> list[dict[str, Any]]:
        from .store.queries import latest_failures

        return latest_failures(limit)

    def purge_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        from .store.purge import purge_job

        return purge_job(args)

    def retry_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        from .store.retry import retry_job

        return retry_job(args, self.store)
