"""Retrying failed tasks: a copy of each failure queued as a new task, linked to it.

Runs in the query pool; the new rows go through the store's group commit like any push.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Exists, OuterRef, QuerySet

from leek.protocol import Pushed, TaskRecord

from ..models import FailedTask, QueuedTask
from .commit import Store
from .purge import LOCK
from .requests import RetryRequest

log = logging.getLogger("leekd.maintenance")

COMMIT_WAIT = 30.0  # how long a retry waits for the store to commit its new rows


class _Answer:
    """Both halves of a push token, ``(connection, slot)``, for a thread that waits on it.

    The store hands the token to ``server.resolve_pushes`` on the event loop, which sets
    ``event`` (the ids, or an error) and calls ``flush()``.
    """

    def __init__(self) -> None:
        self.event: Any = None
        self.done = threading.Event()

    def flush(self) -> None:
        self.done.set()


def _matching(req: RetryRequest) -> QuerySet[FailedTask]:
    qs = FailedTask.objects.all()
    if req.failure_ids is not None:
        qs = qs.filter(pk__in=req.failure_ids)
    if req.task_ids is not None:
        qs = qs.filter(task_id__in=req.task_ids)
    if req.name is not None:
        if req.name.endswith("*"):
            qs = qs.filter(task__name__startswith=req.name[:-1])
        else:
            qs = qs.filter(task__name=req.name)
    if req.since is not None:
        qs = qs.filter(failed_at__gte=req.since)
    return qs


def retry_failed(req: RetryRequest, store: Store | None) -> dict[str, Any]:
    """One page of failures matching ``req``, queued again (unless ``dry_run``).

    Each new task is a copy of the failed one with ``retry_of`` pointing at the failure
    record, which stays. ``total`` and ``already_retried`` are counted on the first page
    (cursor 0) only; the client pages on with ``cursor`` and ``until`` while ``more``.
    ``until`` fixes the run to the failures that existed when it began: a retried task that
    fails again must not be picked up by a later page of the same run, and so on forever.
    """
    try:
        with LOCK:
            return _retry_failed(req, store)
    finally:
        connection.close()


def _retry_failed(req: RetryRequest, store: Store | None) -> dict[str, Any]:
    until = req.until
    if until is None:
        until = FailedTask.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    # A job's step is resumed with its job (resume_job), which knows the step and workspace.
    matching = _matching(req).filter(pk__lte=until, task__job__isnull=True)
    retried = Exists(QueuedTask.objects.filter(retry_of=OuterRef("pk")))
    todo = matching if req.again else matching.filter(~retried)
    fields = ["id", "failed_at", "exc_type", "message", "task__id", "task__name", "task__queue"]
    fields += ["task__args_preview", "task__max_retries", "task__timeout"]
    if not req.dry_run:
        fields.append("task__payload")
    page = list(
        todo.filter(pk__gt=req.cursor)
        .select_related("task")
        .only(*fields)
        .order_by("pk")[: req.limit + 1]
    )
    more = len(page) > req.limit
    page = page[: req.limit]
    first = req.cursor == 0
    # Counted before this page is queued: afterwards its failures count as retried.
    total = todo.filter(pk__gt=req.cursor).count() if first else None
    already = matching.filter(retried).count() if first and not req.again else 0
    items = [
        {
            "failure_id": f.pk,
            "task_id": f.task_id,
            "name": f.task.name,
            "queue": f.task.queue,
            "args": f.task.args_preview,
            "failed_at": f.failed_at.isoformat(),
            "error": _short(f"{f.exc_type}: {f.message}"),
        }
        for f in page
    ]
    if page and not req.dry_run:
        if store is None:
            raise DatabaseError("leekd is not ready to take tasks yet")
        records = [
            TaskRecord(
                name=f.task.name,
                payload=bytes(f.task.payload),
                queue=f.task.queue,
                preview=f.task.args_preview,
                max_retries=f.task.max_retries,
                timeout=f.task.timeout,
            )
            for f in page
        ]
        new_ids = _push_and_wait(store, records, [f.pk for f in page])
        for item, new_id in zip(items, new_ids, strict=True):
            item["new_id"] = new_id
        log.info(
            "retried %d failed task(s): %s",
            len(items),
            ", ".join(f"{i['task_id']} as {i['new_id']}" for i in items[:20])
            + (", …" if len(items) > 20 else ""),
        )
    return {
        "tasks": items,
        "cursor": page[-1].pk if page else req.cursor,
        "until": until,
        "more": more,
        "dry_run": req.dry_run,
        "total": total,
        "already_retried": already,
    }


def _push_and_wait(store: Store, records: list[TaskRecord], retry_of: list[int]) -> list[int]:
    answer = _Answer()
    store.submit_push(records, (answer, answer), retry_of=retry_of)
    if not answer.done.wait(COMMIT_WAIT):
        raise TimeoutError(
            f"the database did not confirm the retried tasks within {COMMIT_WAIT:g}s; they may "
            "still be queued: check with --dry-run before retrying again"
        )
    if not isinstance(answer.event, Pushed):
        raise DatabaseError(getattr(answer.event, "message", "retried tasks were not recorded"))
    return list(answer.event.ids)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_job(args: dict[str, Any], store: Store | None) -> Callable[[], dict[str, Any]]:
    """Check a retry_failed request; returns the work to run in the pool."""
    return functools.partial(retry_failed, RetryRequest.parse(args), store)


def is_dry_run(args: dict[str, Any]) -> bool:
    return args.get("dry_run") is True
