"""Multi-step jobs in the database: creating one, resuming a failed one, reading one.

Creating and resuming run in the server's query pool, each in one transaction that holds
the job row and the task of the step to run, committed before the request is answered.
The step outcomes themselves are written by the group commit (steps.py).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..job import Job as Step
from ..models import FailedTask, Job, JobState, QueuedTask
from .purge import LOCK
from .rows import Fence, owned
from .steps import step_preview


def _step_task(
    job: Job, name: str, retry_of: FailedTask | None = None, owner: Fence | None = None
) -> Step:
    now = timezone.now()
    task = QueuedTask.objects.create(
        **owned(owner),
        queue=job.queue,
        name=name,
        args_preview=step_preview(job.pk, job.step),
        payload=b"",
        enqueued_at=now,
        job=job,
        step=job.step,
        retry_of=retry_of,
    )
    return Step(task.pk, name, job.queue, b"", job_id=job.pk, step=job.step)


def create_job(
    name: str, first: str, workspace: dict[str, Any], queue: str, owner: Fence | None = None
) -> Step:
    """A new job and its first step's task, in one commit; returns that task."""
    try:
        with transaction.atomic():
            now = timezone.now()
            job = Job.objects.create(
                name=name, queue=queue, workspace=workspace, created_at=now, updated_at=now
            )
            return _step_task(job, first, owner=owner)
    finally:
        connection.close()  # pool threads come and go; never leave a connection behind


def resume_job(job_id: int, steps: dict[str, list[str]], owner: Fence | None = None) -> Step:
    """Queue a failed job's failed step again, with the workspace its last good step saved.

    ``ValueError`` (for the client) when there is no such job or it has not failed.
    """
    try:
        with LOCK, transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id).first()
            if job is None:
                raise ValueError(f"no job with id {job_id}")
            if job.state != JobState.FAILED:
                raise ValueError(f"job {job_id} is {job.state}: only a failed job is resumed")
            names = steps.get(job.name)
            if names is None or job.step >= len(names):
                raise ValueError(
                    f"job {job_id} is a {job.name!r} job, which settings.LEEK['jobs'] no longer "
                    f"has (or with fewer than {job.step + 1} steps)"
                )
            failure = (
                FailedTask.objects.filter(task__job=job, task__step=job.step)
                .order_by("-pk")
                .first()
            )
            job.state, job.error, job.updated_at = JobState.READY, "", timezone.now()
            job.save(update_fields=["state", "error", "updated_at"])
            return _step_task(job, names[job.step], failure, owner)
    finally:
        connection.close()


def load_step(job_id: int, step: int) -> tuple[str, dict[str, Any]]:
    """When a step starts (in its worker): mark the job processing; its name and workspace."""
    with transaction.atomic():
        Job.objects.filter(pk=job_id).update(
            state=JobState.PROCESSING, step=step, updated_at=timezone.now()
        )
        row = Job.objects.filter(pk=job_id).values_list("name", "workspace").first()
    if row is None:
        raise LookupError(f"job {job_id} is gone from the database")
    workspace = row[1]
    if isinstance(workspace, str):  # a JSON text column on some backends
        workspace = json.loads(workspace)
    return row[0], dict(workspace or {})


def job_status(job_id: int) -> dict[str, Any] | None:
    try:
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return None
        tasks = list(
            QueuedTask.objects.filter(job=job)
            .order_by("-id")
            .values("id", "step", "state", "attempts")[:20]
        )
    finally:
        connection.close()
    return {
        "id": job.pk,
        "name": job.name,
        "queue": job.queue,
        "state": job.state,
        "step": job.step,
        "workspace": job.workspace,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "tasks": tasks[::-1],
    }
