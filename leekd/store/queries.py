"""Reads and maintenance the server runs off the event loop (in its small thread pool)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..job import result_reply
from ..models import FailedTask, QueuedTask, SuccessTask


def task_status(task_id: int) -> dict[str, Any] | None:
    try:
        return _task_status(task_id)
    finally:
        connection.close()  # pool threads come and go; never leave a connection behind


def _task_status(task_id: int) -> dict[str, Any] | None:
    row = (
        QueuedTask.objects.filter(pk=task_id)
        .values(
            "id",
            "name",
            "queue",
            "state",
            "attempts",
            "enqueued_at",
            "args_preview",
            "retry_of_id",
            "priority",
            "run_at",
        )
        .first()
    )
    if row is None:
        return None
    row["enqueued_at"] = row["enqueued_at"].isoformat()
    run_at = row["run_at"]
    if row["state"] == "queued" and run_at is not None and run_at > timezone.now():
        row["state"] = "scheduled"  # waiting for its run_at, in leekd's timer heap
    row["run_at"] = run_at.isoformat() if run_at is not None else None
    if row["state"] == "succeeded":
        s = (
            SuccessTask.objects.filter(task_id=task_id)
            .values("finished_at", "duration", "attempts")
            .first()
        )
        if s:
            row.update(
                finished_at=s["finished_at"].isoformat(),
                duration=s["duration"],
                attempts=s["attempts"],
            )
    elif row["state"] == "failed":
        f = (
            FailedTask.objects.filter(task_id=task_id)
            .values("id", "failed_at", "attempts", "exc_type", "message", "traceback")
            .first()
        )
        if f:
            row.update(
                failure_id=f["id"],
                finished_at=f["failed_at"].isoformat(),
                attempts=f["attempts"],
                error=f"{f['exc_type']}: {f['message']}",
                traceback=f["traceback"],
            )
    return row


def status_of_key(key: str) -> dict[str, Any] | None:
    """The task recorded for a push with this client-made key (after a ``LeekTimeout``)."""
    try:
        task_id = QueuedTask.objects.filter(key=key).values_list("pk", flat=True).first()
        return None if task_id is None else _task_status(task_id)
    finally:
        connection.close()


def task_result(task_id: int) -> dict[str, Any]:
    """What ``result`` answers: the outcome, ``pending``, or why there is none."""
    try:
        return _task_result(task_id)
    finally:
        connection.close()


MAX_FAILURES = 100  # rows one ``failures`` request may ask for
MESSAGE_PREVIEW = 300  # characters of each message it carries


def latest_failures(limit: int) -> list[dict[str, Any]]:
    """The latest final failures, newest first, with what ``leek-shell top`` shows of each."""
    try:
        return _latest_failures(min(limit, MAX_FAILURES))
    finally:
        connection.close()


def _task_result(task_id: int) -> dict[str, Any]:
    state = QueuedTask.objects.filter(pk=task_id).values_list("state", flat=True).first()
    if state is None:
        if QueuedTask.objects.filter(pk__gt=task_id).exists():
            return {
                "state": "purged",
                "message": f"task {task_id}'s record was deleted (purge or retention), "
                "and its result with it",
            }
        return {"state": "unknown", "message": f"no task with id {task_id}"}
    if state == "succeeded":
        result = SuccessTask.objects.filter(task_id=task_id).values_list("result", flat=True)
        value = result.first()
        return result_reply(True, bytes(value) if value is not None else None)
    if state == "failed":
        f = (
            FailedTask.objects.filter(task_id=task_id)
            .values("exc_type", "message", "traceback")
            .first()
        ) or {}
        return result_reply(False, None, **f)
    if state == "cancelled":
        return {"state": "cancelled"}
    return {"state": "pending"}


def _latest_failures(limit: int) -> list[dict[str, Any]]:
    retried = Exists(QueuedTask.objects.filter(retry_of=OuterRef("pk")))
    rows = (
        FailedTask.objects.order_by("-failed_at", "-id")
        .annotate(retried=retried)
        .values(
            "id",
            "task_id",
            "task__name",
            "task__queue",
            "failed_at",
            "attempts",
            "exc_type",
            "message",
            "retried",
        )[:limit]
    )
    return [
        {
            "failure_id": r["id"],
            "id": r["task_id"],
            "name": r["task__name"],
            "queue": r["task__queue"],
            "failed_at": r["failed_at"].isoformat(),
            "attempts": r["attempts"],
            "exc_type": r["exc_type"],
            "message": r["message"][:MESSAGE_PREVIEW],
            "retried": bool(r["retried"]),
        }
        for r in rows
    ]
