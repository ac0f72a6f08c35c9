"""A backend for Django's Tasks framework (``django.tasks``, or the ``django_tasks`` backport).

    TASKS = {"default": {"BACKEND": "leekd.backend.LeekBackend", "QUEUES": ["default", "mail"]}}

``enqueue`` pushes by reference: leekd runs ``run_task``, which imports the task by its
module path and calls it with the JSON arguments Django requires. A ``TaskResult``'s ``id``
is the push's client-made key, so it exists before the push is sent (an on-commit push has
one too); ``get_result`` reads the records leekd keeps in the project's database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import checks
from django.utils import timezone
from django.utils.module_loading import import_string

from leek import oncommit
from leek.client import get_client
from leek.conf import resolve_secret
from leek.errors import LeekAuthError, LeekConfigError, LeekConnectionError, LeekError
from leek.records import MAX_QUEUE_NAME, make_record

from .taskscompat import (
    BaseTaskBackend,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    set_field,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)


class LeekBackend(BaseTaskBackend):
    """Tasks run by leekd. ``OPTIONS``: ``on_commit`` (default: ``LEEK["on_commit"]``, on),
    ``max_retries`` (attempts, default leekd's), ``timeout`` (seconds per attempt)."""

    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.on_commit: bool | None = self.options.get("on_commit")
        self.max_retries: int | None = self.options.get("max_retries")
        self.timeout: float | None = self.options.get("timeout")

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        result = TaskResult(
            task=task,
            id="",
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,  # JSON-normalised here, as Django requires (TypeError otherwise)
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        record = make_record(
            run_task,
            (self.alias, task.module_path, result.args, result.kwargs),
            queue=task.queue_name,
            priority=task.priority,
            eta=_aware(task.run_after),
            max_retries=self.max_retries,
            timeout=self.timeout,
        )
        record.name = task.module_path[:255]  # the admin and logs show the task, not run_task
        set_field(result, "id", record.key)
        client = get_client()

        def send() -> None:
            client.push_records([record])
            set_field(result, "enqueued_at", timezone.now())
            task_enqueued.send(type(self), task_result=result)

        if client.deferred(self.on_commit):
            oncommit.defer(send)
        else:
            send()
        return result

    def get_result(self, result_id: str) -> Any:
        from .taskresults import read_result

        return read_result(self, str(result_id))

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        out: list[checks.CheckMessage] = list(super().check(**kwargs))
        for name in sorted(self.queues):
            if not isinstance(name, str) or not 0 < len(name) <= MAX_QUEUE_NAME:
                out.append(
                    checks.Error(
                        f"TASKS[{self.alias!r}]['QUEUES'] has {name!r}; leek queue names are "
                        f"1..{MAX_QUEUE_NAME} characters.",
                        id="leekd.E020",
                    )
                )
        try:
            client = get_client()
            resolve_secret(client._secret_arg)
        except LeekConfigError as exc:
            return [*out, checks.Error(f"leek has no usable secret: {exc}", id="leekd.E021")]
        try:
            with _probe(client) as probe:
                probe.ping()
        except LeekAuthError as exc:
            out.append(checks.Error(f"leekd refused this project's secret: {exc}", id="leekd.E022"))
        except (LeekConnectionError, LeekError) as exc:
            out.append(
                checks.Warning(
                    f"leekd is not reachable at {client.address}; tasks cannot be enqueued "
                    f"until it runs ({exc}).",
                    hint="python manage.py leekd start",
                    id="leekd.W020",
                )
            )
        return out


def _probe(client: Any) -> Any:
    from leek import Client

    return Client(
        client.host,
        client.port,
        client._secret_arg,
        connect_timeout=0.5,
        timeout=2.0,
        unix=client.transport.unix,
        tls=client.transport.tls,
        tls_ca=client.transport.tls_ca,
    )


def _aware(when: datetime | None) -> datetime | None:
    if when is None or timezone.is_aware(when):
        return when
    return timezone.make_aware(when)  # USE_TZ = False: the current time zone's wall clock


def run_task(alias: str, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """In leekd: run the Django task ``path`` and return its JSON-normalised value.

    Sends ``task_started`` and ``task_finished`` (the latter once the outcome is final:
    success, or failure of the last attempt) with the backend's class as sender.
    """
    from .job import current

    task = import_string(path)
    try:
        backend: Any = task_backends[alias]
    except Exception:
        backend = None
    sender = type(backend) if isinstance(backend, BaseTaskBackend) else LeekBackend
    job = getattr(current, "job", None)
    result = _running_result(task, backend, alias, job, args, kwargs)
    task_started.send(sender, task_result=result)
    final = job is None or job.attempts >= getattr(current, "allowed", 1)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = normalize_json(value)
    except BaseException as exc:
        if final:
            from .taskresults import task_error

            result.errors.append(task_error(exc))
            _finish(result, TaskResultStatus.FAILED)
            task_finished.send(sender, task_result=result)
        raise
    set_field(result, "_return_value", value)
    _finish(result, TaskResultStatus.SUCCESSFUL)
    task_finished.send(sender, task_result=result)
    return value


def _finish(result: Any, status: Any) -> None:
    set_field(result, "status", status)
    set_field(result, "finished_at", timezone.now())


def _running_result(task: Any, backend: Any, alias: str, job: Any, args: Any, kwargs: Any) -> Any:
    """The TaskResult a running task sees (its context) and the signals carry."""
    now = timezone.now()
    if job is not None and isinstance(backend, LeekBackend):
        try:
            result = backend.get_result(str(job.id))
        except Exception:
            result = None
        if result is not None:
            set_field(result, "status", TaskResultStatus.RUNNING)
            set_field(result, "last_attempted_at", now)
            if result.started_at is None:
                set_field(result, "started_at", now)
            set_field(result, "worker_ids", list(job.workers or []))
            return result
    return TaskResult(
        task=task,
        id=str(job.id) if job is not None else "",
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=list(job.workers or []) if job is not None else ["eager"],
    )


__all__ = ["LeekBackend", "run_task"]
