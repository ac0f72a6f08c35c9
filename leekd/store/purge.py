"""Purge and retention: deleting finished records in small batches, off the event loop.

No transaction holds the database's write lock for long (the store's writer waits for it).
``LOCK`` is shared with retries: a retry links its new task to a failure record, and a purge
deleting that record in between would make the store's commit fail on the foreign key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..conf import format_duration
from ..models import FailedTask, Job, QueuedTask, State, SuccessTask
from .requests import FINISHED, PurgeRequest

log = logging.getLogger("leekd.maintenance")

PURGE_BATCH = 500  # rows per delete transaction
PURGE_BUDGET = 5.0  # seconds of deleting per request; the client asks again while "more"
RETENTION_INTERVAL = 3600.0
RETENTION_BUDGET = 1.0  # short turns, so the pool stays free for status queries

LOCK = threading.Lock()


def _finished_before(state: str, cutoff: datetime) -> QuerySet[Any]:
    """Ids of tasks that reached ``state`` before ``cutoff``, oldest first (indexed; a
    cancelled task, which has no outcome row, counts from when it was pushed)."""
    if state == State.CANCELLED:
        return (
            QueuedTask.objects.filter(state=state, enqueued_at__lt=cutoff)
            .order_by("id")
            .values_list("id", flat=True)
        )
    if state == State.SUCCEEDED:
        return (
            SuccessTask.objects.filter(finished_at__lt=cutoff, task__state=state)
            .order_by("finished_at")
            .values_list("task_id", flat=True)
        )
    return (
        FailedTask.objects.filter(failed_at__lt=cutoff, task__state=state)
        .order_by("failed_at")
        .values_list("task_id", flat=True)
    )


def purge(
    states: Sequence[str],
    older_than: float,
    *,
    dry_run: bool = False,
    batch: int = PURGE_BATCH,
    budget: float = PURGE_BUDGET,
) -> dict[str, Any]:
    """Delete tasks that finished in ``states`` more than ``older_than`` seconds ago.

    Deleting the task row removes its outcome row too (CASCADE); a retry that pointed at a
    deleted failure keeps running, unlinked. Works for at most ``budget`` seconds and says
    ``more`` when rows are left, so one request never holds the pool for long.
    """
    try:
        return _purge(states, older_than, dry_run, batch, budget)
    finally:
        connection.close()  # pool threads come and go; never leave a connection behind


def _purge(
    states: Sequence[str], older_than: float, dry_run: bool, batch: int, budget: float
) -> dict[str, Any]:
    cutoff = timezone.now() - timedelta(seconds=older_than)
    counts = dict.fromkeys(states, 0)
    deadline = time.monotonic() + budget
    more = False
    for state in states:
        if dry_run:
            counts[state] = _finished_before(state, cutoff).count()
            continue
        while not more:
            if time.monotonic() > deadline:
                more = True
                break
            with LOCK, transaction.atomic():
                ids = list(_finished_before(state, cutoff)[:batch])
                if ids:
                    _, per_model = QueuedTask.objects.filter(pk__in=ids, state=state).delete()
                    counts[state] += per_model.get(QueuedTask._meta.label, 0)
            if len(ids) < batch:
                break
    jobs, more = _purge_jobs(states, cutoff, dry_run, batch, deadline, more)
    return {**counts, "jobs": jobs, "more": more, "dry_run": dry_run, "older_than": older_than}


_JOB_STATES = {"succeeded": "completed", "failed": "failed"}  # task state → job state


def _purge_jobs(
    states: Sequence[str], cutoff: datetime, dry_run: bool, batch: int, deadline: float, more: bool
) -> tuple[int, bool]:
    """Multi-step jobs that completed (with "succeeded") or failed before ``cutoff``, with
    their steps' task records."""
    finished = [_JOB_STATES[s] for s in states if s in _JOB_STATES]
    old = Job.objects.filter(state__in=finished, updated_at__lt=cutoff).order_by("updated_at")
    if dry_run:
        return old.count(), more
    deleted = 0
    while not more:
        if time.monotonic() > deadline:
            return deleted, True
        with LOCK, transaction.atomic():
            ids = list(old.values_list("pk", flat=True)[:batch])
            if ids:
                _, per_model = Job.objects.filter(pk__in=ids, state__in=finished).delete()
                deleted += per_model.get(Job._meta.label, 0)
        if len(ids) < batch:
            break
    return deleted, more


def start_retention(
    keep: float, pool: Executor, stopping: Callable[[], bool]
) -> asyncio.Task[None] | None:
    """Purge records finished more than ``keep`` seconds ago, now and every hour; None when
    ``keep`` is 0 (retention off). ``stopping`` ends a round early when leekd drains."""
    if not keep:
        return None
    log.info(
        "retention: deleting task records finished more than %s ago, hourly",
        format_duration(keep),
    )
    return asyncio.create_task(_retain(keep, pool, stopping))


async def _retain(keep: float, pool: Executor, stopping: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    step = functools.partial(purge, FINISHED, keep, budget=RETENTION_BUDGET)
    while True:
        total = dict.fromkeys((*FINISHED, "jobs"), 0)
        t0 = time.monotonic()
        try:
            while not stopping():
                result = await loop.run_in_executor(pool, step)
                for kind in total:
                    total[kind] += result[kind]
                if not result["more"]:
                    break
        except Exception as exc:  # the database may be down: try again next time
            log.error("retention: purge failed (%s: %s); next try in 1h", type(exc).__name__, exc)
        else:
            log.log(
                logging.INFO if any(total.values()) else logging.DEBUG,
                "retention: deleted %d succeeded, %d failed and %d cancelled task records and %d "
                "jobs finished more than %s ago (%.2fs)",
                total["succeeded"],
                total["failed"],
                total["cancelled"],
                total["jobs"],
                format_duration(keep),
                time.monotonic() - t0,
            )
        await asyncio.sleep(RETENTION_INTERVAL)


def purge_job(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Check a purge request; returns the work to run in the pool."""
    req = PurgeRequest.parse(args)
    return functools.partial(purge, req.states, req.older_than, dry_run=req.dry_run)
