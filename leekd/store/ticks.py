"""Periodic schedules in the database: each schedule's last tick, claimed once.

``claim`` moves a schedule's ``last_tick`` from the value this leekd read to the new tick
with a conditional UPDATE and, in the same transaction, inserts the tick's task. Of
several leekd processes on one database, whoever updates the row wins; the others see
nothing updated, read the new value and wait for the tick after it. The claim and the
task commit together, so a crash leaves either both or neither.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from leek.protocol import TaskRecord

from ..job import Job
from ..models import QueuedTask, Schedule
from .rows import owned


def prepare(first: dict[str, datetime]) -> dict[str, datetime | None]:
    """A row for every schedule (``first``: its initial last tick); returns the last ticks."""
    try:
        known = dict(Schedule.objects.filter(pk__in=list(first)).values_list("name", "last_tick"))
        for name, tick in first.items():
            if name in known:
                continue
            try:
                with transaction.atomic():
                    Schedule.objects.create(name=name, last_tick=tick)
            except IntegrityError:  # another leekd made it meanwhile
                pass
        return dict(Schedule.objects.filter(pk__in=list(first)).values_list("name", "last_tick"))
    finally:
        connection.close()


def claim(
    name: str,
    old: datetime | None,
    new: datetime,
    record: TaskRecord | None,
    owner: tuple[str, int] | None = None,
) -> tuple[datetime | None, bool, Job | None]:
    """Move ``name`` from tick ``old`` to ``new``, queueing ``record`` with it (None: skip
    the tick). Returns the schedule's last tick as the database now has it, whether this
    leekd won the claim, and the task to hand to the engine."""
    try:
        with transaction.atomic():
            rows: Any = Schedule.objects.filter(pk=name)
            rows = rows.filter(last_tick=old) if old is not None else rows.filter(last_tick=None)
            won = rows.update(last_tick=new, claimed_at=timezone.now())
            if not won:
                stored = Schedule.objects.filter(pk=name).values_list("last_tick", flat=True)
                return stored.first(), False, None
            if record is None:
                return new, True, None
            task = QueuedTask.objects.create(
                **owned(owner),  # with several nodes: the claimer's, as its pushes are
                queue=record.queue,
                name=record.name,
                args_preview=record.preview,
                payload=record.payload,
                enqueued_at=timezone.now(),
                max_retries=record.max_retries,
                timeout=record.timeout,
                priority=record.priority,
            )
            Schedule.objects.filter(pk=name).update(last_task=task.pk)
        job = Job(
            task.pk,
            record.name,
            record.queue,
            record.payload,
            record.max_retries,
            record.timeout,
            record.priority,
        )
        return new, True, job
    finally:
        connection.close()


def rows(names: list[str]) -> dict[str, dict[str, Any]]:
    """Each schedule's last tick and last task, with that task's state."""
    try:
        found = {
            # Until a first claim, last_tick is only where counting starts: nothing ran.
            s.name: {"last_tick": s.last_tick if s.claimed_at else None, "last_task": s.last_task}
            for s in Schedule.objects.filter(pk__in=names)
        }
        ids = [r["last_task"] for r in found.values() if r["last_task"]]
        states = dict(QueuedTask.objects.filter(pk__in=ids).values_list("id", "state"))
    finally:
        connection.close()
    for r in found.values():
        r["last_state"] = states.get(r["last_task"])
    return found
