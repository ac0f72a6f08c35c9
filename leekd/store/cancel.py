"""Recording a cancel: the row of a task that never started says "cancelled".

Runs in the query pool, after the engine has taken the job out of memory. The update is
conditional on the row still being queued, so it can never overwrite an outcome.
"""

from __future__ import annotations

from django.db import DatabaseError, connection

from ..models import QueuedTask, State


def mark_cancelled(task_id: int, attempts: int) -> None:
    """Record the task as cancelled; ``DatabaseError`` if the row is no longer queued."""
    try:
        changed = (
            QueuedTask.objects.unfinished()
            .filter(pk=task_id)
            .update(state=State.CANCELLED, attempts=attempts)
        )
    finally:
        connection.close()  # pool threads come and go; never leave a connection behind
    if changed != 1:
        raise DatabaseError(f"task {task_id} is no longer queued in the database")


def state_of(task_id: int) -> tuple[str, str] | None:
    """The task's (state, queue), or None if there is no such task."""
    try:
        return QueuedTask.objects.filter(pk=task_id).values_list("state", "queue").first()
    finally:
        connection.close()
