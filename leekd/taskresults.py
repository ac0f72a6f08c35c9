"""A ``TaskResult`` read back from leekd's records, for ``LeekBackend.get_result``.

Each attempt that failed and was retried has an ``Attempt`` row; the last attempt is the
task's outcome row. Together they give ``errors`` and ``worker_ids`` (so ``attempts``);
a task still queued is asked about once, to tell READY from RUNNING.
"""

from __future__ import annotations

import pickle
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudpickle
from django.utils.module_loading import import_string

from leek.client import get_client
from leek.errors import LeekError

from .models import Attempt, FailedTask, QueuedTask, SuccessTask
from .taskscompat import TaskError, TaskResult, TaskResultDoesNotExist, TaskResultStatus, set_field


def task_error(exc: BaseException) -> Any:
    return TaskError(
        exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
        traceback="".join(traceback.format_exception(exc)),
    )


def _find(result_id: str) -> QueuedTask | None:
    rows = QueuedTask.objects.defer("args_preview")
    if result_id.isdigit():
        return rows.filter(pk=int(result_id)).first()
    return rows.filter(key=result_id).first() if 0 < len(result_id) <= 64 else None


def read_result(backend: Any, result_id: str) -> Any:
    row = _find(result_id)
    if row is None:
        raise TaskResultDoesNotExist(result_id)
    try:
        _run, (_alias, path, args, kwargs), _ = cloudpickle.loads(bytes(row.payload))
    except Exception as exc:
        raise TaskResultDoesNotExist(f"{result_id} is not a Django task ({exc})") from None
    task = import_string(path)
    retried = list(Attempt.objects.filter(task_id=row.pk).order_by("number"))
    errors = [TaskError(exception_class_path=a.exc_type, traceback=a.traceback) for a in retried]
    workers = [a.worker for a in retried]
    starts = [a.finished_at - timedelta(seconds=a.duration) for a in retried]
    status, finished, value = TaskResultStatus.READY, None, None
    if row.state == "succeeded":
        done = SuccessTask.objects.filter(task_id=row.pk).first()
        status = TaskResultStatus.SUCCESSFUL
        if done is not None:
            finished, workers = done.finished_at, [*workers, done.worker]
            starts.append(done.finished_at - timedelta(seconds=done.duration))
            value = pickle.loads(bytes(done.result)) if done.result is not None else None
    elif row.state in ("failed", "cancelled"):
        status = TaskResultStatus.FAILED
        failed = FailedTask.objects.filter(task_id=row.pk).first()
        if failed is not None:
            finished, workers = failed.failed_at, [*workers, failed.worker]
            starts.append(failed.failed_at - timedelta(seconds=failed.duration))
            errors.append(
                TaskError(exception_class_path=failed.exc_type, traceback=failed.traceback)
            )
    else:
        running = _running(row.pk)
        if running is not None:
            status = TaskResultStatus.RUNNING
            workers.append(str(running.get("worker", "")))
            starts.append(datetime.fromtimestamp(float(running["started_at"]), UTC))
    result = TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=row.enqueued_at,
        started_at=starts[0] if starts else None,
        finished_at=finished,
        last_attempted_at=starts[-1] if starts else None,
        args=args,
        kwargs=kwargs,
        backend=backend.alias,
        errors=errors,
        worker_ids=workers,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        set_field(result, "_return_value", value)
    return result


def _running(task_id: int) -> dict[str, Any] | None:
    """leekd's word on a queued task: running (since when, on which worker), or not."""
    try:
        status = get_client().status(task_id)
    except LeekError:
        return None  # leekd down or unreachable: the record says queued
    if status.get("state") == "running" and "started_at" in status:
        return status
    return None
