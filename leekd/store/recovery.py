"""Recovery at start: every task with no outcome goes back to the engine.

One scan of the partial index over unfinished rows, in chunks, so 200,000 waiting tasks
come back in well under a second. Tasks that were running when the last leekd died are
blamed first: one that reaches ``max_deaths`` is failed instead of run again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ..job import Job
from ..models import FailedTask, JobState, QueuedTask
from ..models import Job as JobRow

log = logging.getLogger("leekd.server")

RECOVER_CHUNK = 5000


def recover(put_many: Callable[[Iterable[Job]], object]) -> int:
    """Queue every unfinished task with ``put_many``; returns how many."""
    try:
        return _recover(put_many)
    finally:
        connection.close()


def _recover(put_many: Callable[[Iterable[Job]], object]) -> int:
    n = 0
    rows = (
        QueuedTask.objects.unfinished()
        .order_by("id")
        .values_list(
            "id",
            "name",
            "queue",
            "payload",
            "max_retries",
            "timeout",
            "deaths",
            "priority",
            "run_at",
            "job_id",
            "step",
        )
        .iterator(chunk_size=RECOVER_CHUNK)
    )
    batch: list[Job] = []
    for tid, name, queue, payload, retries, timeout, deaths, priority, run_at, job, step in rows:
        when = run_at.timestamp() if run_at is not None else 0.0
        batch.append(
            Job(
                tid,
                name,
                queue,
                bytes(payload),
                retries,
                timeout,
                priority,
                when,
                deaths=deaths,
                job_id=job or 0,
                step=step or 0,
            )  # fmt: skip
        )
        if len(batch) >= RECOVER_CHUNK:
            put_many(batch)
            n += len(batch)
            batch = []
    put_many(batch)
    return n + len(batch)


def count_deaths(ids: list[int], limit: int) -> int:
    """Blame the tasks that were running when the last leekd died; fail repeat offenders.

    Returns how many were failed.
    """
    try:
        return _count_deaths(ids, limit)
    finally:
        connection.close()


def _count_deaths(ids: list[int], limit: int) -> int:
    poisoned = 0
    with transaction.atomic():
        QueuedTask.objects.unfinished().filter(pk__in=ids).update(deaths=F("deaths") + 1)
        rows = list(QueuedTask.objects.unfinished().filter(pk__in=ids))
        for row in rows:
            if row.deaths < limit:
                log.warning(
                    "task %d %s was running when leekd died (%d of %d allowed); running it again",
                    row.pk,
                    row.name,
                    row.deaths,
                    limit,
                )
                continue
            message = f"leekd died while running it {row.deaths} times"
            FailedTask.objects.create(
                task=row,
                failed_at=timezone.now(),
                attempts=max(row.attempts, row.deaths),
                exc_type="leekd.WorkerDied",
                message=message,
                traceback="",
            )
            QueuedTask.objects.filter(pk=row.pk).update(state="failed")
            if row.job_id is not None:  # a job's step: the job failed with it
                JobRow.objects.filter(pk=row.job_id).update(
                    state=JobState.FAILED,
                    error=f"step {(row.step or 0) + 1} ({row.name}): {message}",
                    updated_at=timezone.now(),
                )
            poisoned += 1
            log.error("task %d %s: %s; recorded as failed", row.pk, row.name, message)
    return poisoned
