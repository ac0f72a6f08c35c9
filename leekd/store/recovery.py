"""Recovery at start: every task with no outcome goes back to the engine.

One scan of the partial index over unfinished rows, in chunks, so 200,000 waiting tasks
come back in well under a second. A task that was running alone when the last leekd died
is blamed first: one that reaches ``max_deaths`` is failed instead of run again. Tasks that
were running together are not blamed, since only one of them may have done it: they become
suspects, which the engine runs one at a time until each has finished or died alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.db import connection, transaction
from django.db.models import BinaryField, Case, F, Value, When
from django.db.models.functions import Length
from django.utils import timezone

from ..job import Job
from ..models import FailedTask, JobState, QueuedTask
from ..models import Job as JobRow

log = logging.getLogger("leekd.server")

RECOVER_CHUNK = 5000
INLINE = 16 * 1024  # larger payloads stay in the database until a worker reads them


def recover(put_many: Callable[[Iterable[Job]], object], suspects: Iterable[int] = ()) -> int:
    """Queue every unfinished task with ``put_many``; returns how many."""
    try:
        return _recover(put_many, set(suspects))
    finally:
        connection.close()


def _recover(put_many: Callable[[Iterable[Job]], object], suspects: set[int]) -> int:
    n = 0
    rows = (
        QueuedTask.objects.unfinished()
        .order_by("id")
        .annotate(size=Length("payload"))
        .annotate(
            inline=Case(
                When(size__lte=INLINE, then=F("payload")),
                default=Value(None),
                output_field=BinaryField(),
            )
        )
        .values_list(
            "id",
            "name",
            "queue",
            "inline",
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
        data = None if payload is None else bytes(payload)
        task = Job(
            tid,
            name,
            queue,
            data,
            retries,
            timeout,
            priority,
            when,
            deaths=deaths,
            job_id=job or 0,
            step=step or 0,
        )  # fmt: skip
        task.suspect = tid in suspects
        batch.append(task)
        if len(batch) >= RECOVER_CHUNK:
            put_many(batch)
            n += len(batch)
            batch = []
    put_many(batch)
    return n + len(batch)


def count_deaths(dead: list[int], suspects: list[int], limit: int) -> tuple[int, list[int]]:
    """Judge the last crash: blame a task that died alone, suspect tasks that died together.

    ``dead`` were running when leekd died, ``suspects`` were left unresolved by earlier
    crashes. Returns how many tasks were failed, and the unfinished suspects.
    """
    try:
        return _judge(dead, suspects, limit)
    finally:
        connection.close()


def _judge(dead: list[int], suspects: list[int], limit: int) -> tuple[int, list[int]]:
    unfinished = QueuedTask.objects.unfinished()
    dead = sorted(unfinished.filter(pk__in=dead).values_list("pk", flat=True))
    poisoned = 0
    if len(dead) == 1:
        poisoned = _count_deaths(dead, limit)
        left = set(suspects) - set(dead)
    else:
        left = set(suspects) | set(dead)
        if dead:
            log.warning(
                "tasks %s were running together when leekd died; each runs alone now, "
                "so that only the one that kills leekd is blamed",
                ", ".join(map(str, dead)),
            )
    return poisoned, sorted(unfinished.filter(pk__in=left).values_list("pk", flat=True))


def _count_deaths(ids: list[int], limit: int) -> int:
    poisoned = 0
    with transaction.atomic():
        QueuedTask.objects.unfinished().filter(pk__in=ids).update(deaths=F("deaths") + 1)
        rows = list(QueuedTask.objects.unfinished().filter(pk__in=ids))
        for row in rows:
            if row.deaths < limit:
                log.warning(
                    "task %d %s was running alone when leekd died (%d of %d allowed); running it again",
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
