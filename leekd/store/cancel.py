"""Recording a cancel: the row of a task that never started says "cancelled".

Runs in the query pool, after the engine has taken the job out of memory. The update is
conditional on the row still being queued, so it can never overwrite an outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection

from ..models import QueuedTask, State

log = logging.getLogger("leekd.server")


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


Elsewhere = Callable[[int, str], "dict[str, Any] | None"]


def cancel_unheld(
    task_id: int, served: frozenset[str] | None, elsewhere: Elsewhere | None = None
) -> dict[str, Any]:
    """The answer for a task no queue in memory holds, and no worker runs.

    Finished, or unknown; or queued and owned by another node (several nodes: that node is
    asked, ``elsewhere(id, owner)``, None when the owner is this node); or queued in a queue
    this leekd does not serve (then nothing here holds it and the row is all there is: it
    is cancelled); or it has just run and its outcome is on its way to the database
    (refused: the outcome would overwrite it).
    """
    try:
        row = QueuedTask.objects.filter(pk=task_id).values_list("state", "queue", "owner").first()
    finally:
        connection.close()
    if row is None:
        return {"cancelled": False, "found": False, "reason": f"no task with id {task_id}"}
    state, queue, owner = row
    if state == State.QUEUED and elsewhere is not None and owner:
        answer = elsewhere(task_id, owner)
        if answer is not None:
            return answer if "cancelled" in answer else _unanswered(task_id, queue, owner, answer)
    if state == State.QUEUED and served is not None and queue not in served:
        mark_cancelled(task_id, 0)
        log.info("task %d of unserved queue %r cancelled", task_id, queue)
        return {"cancelled": True, "id": task_id, "queue": queue}
    if state == State.CANCELLED:
        why = "was already cancelled"
    elif state != State.QUEUED:
        why = f"has already {state}; a finished task cannot be cancelled"
    else:
        why = "has just run and its outcome is being recorded"
    return {"cancelled": False, "found": True, "reason": f"task {task_id} {why}"}


def _unanswered(task_id: int, queue: str, owner: str, node: dict[str, Any]) -> dict[str, Any]:
    """The owner gave no answer in time: the row says whether it cancelled the task."""
    try:
        state = QueuedTask.objects.filter(pk=task_id).values_list("state", flat=True).first()
    finally:
        connection.close()
    if state == State.CANCELLED:
        return {"cancelled": True, "id": task_id, "queue": queue, "node": owner}
    host, _, port = str(node.get("address", "")).rpartition(":")
    where = f" --host {host} --port {port}" if host and port.isdigit() else ""
    return {
        "cancelled": False,
        "found": True,
        "reason": f"task {task_id} belongs to node {owner}, which did not answer in time; "
        f"cancel it there: leek-shell{where} cancel {task_id}",
    }
