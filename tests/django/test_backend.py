"""``leekd.backend.LeekBackend`` through a real leekd: Django's standard tasks, end to end.

Runs on whichever framework this Django has: ``django.tasks`` (6.x) or the backport (5.2).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from datetime import timedelta

import pytest

import leek
from leekd.taskscompat import (
    FRAMEWORK,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)

from ..helpers import wait_for

TASKS = {
    "default": {
        "BACKEND": "leekd.backend.LeekBackend",
        "QUEUES": ["default", "mail"],
    }
}


@pytest.fixture
def backend_server(make_server, monkeypatch):
    from django.test import override_settings

    server = make_server(workers=2, max_retries=2)
    monkeypatch.setenv("LEEK_PORT", str(server.port))
    with override_settings(TASKS=TASKS):
        leek.client.reset_client()
        from .. import djtasks

        importlib.reload(djtasks)  # validated against this backend
        yield server, djtasks
    leek.client.reset_client()


def finished(result, timeout=15.0):
    wait_for(lambda: (result.refresh(), result.is_finished)[1], timeout=timeout)
    return result


def test_framework_is_the_one_this_django_has():
    import django

    assert ("django.tasks" if django.VERSION >= (6,) else "django_tasks") == FRAMEWORK


def test_enqueue_get_result_and_the_statuses(backend_server, tmp_path):
    server, djtasks = backend_server
    from leekd.models import QueuedTask

    gate = tmp_path / "go"
    blockers = [djtasks.wait_for_file.enqueue(str(gate)) for _ in range(2)]
    queued = djtasks.add.enqueue(2, 3)
    assert isinstance(queued.id, str) and queued.status == TaskResultStatus.READY
    backend = djtasks.add.get_backend()
    # Given both workers busy: the blocked ones RUNNING, the one behind them READY
    wait_for(lambda: backend.get_result(blockers[0].id).status == TaskResultStatus.RUNNING)
    running = backend.get_result(blockers[0].id)
    assert running.started_at is not None and len(running.worker_ids) == 1
    assert running.attempts == 1 and not running.is_finished
    ready = backend.get_result(queued.id)
    assert ready.status == TaskResultStatus.READY and ready.enqueued_at is not None
    with pytest.raises(ValueError):
        ready.return_value  # noqa: B018
    row = QueuedTask.objects.get(key=queued.id)
    assert row.name == "tests.djtasks.add" and row.args_preview.startswith("'default', 'tests")
    # When they are released, Then each result is SUCCESSFUL with its value
    gate.touch()
    done = finished(queued)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 5
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.last_attempted_at == done.started_at and done.attempts == 1
    same = djtasks.add.get_result(str(row.pk))  # the record's id works too
    assert same.return_value == 5 and same.args == [2, 3]


def test_failures_carry_every_attempt_with_its_traceback(backend_server):
    _, djtasks = backend_server
    result = finished(djtasks.fail.enqueue("no luck"))
    assert result.status == TaskResultStatus.FAILED and result.attempts == 2
    assert len(result.worker_ids) == 2 and len(result.errors) == 2
    for error in result.errors:
        assert error.exception_class_path == "builtins.ValueError"
        assert error.exception_class is ValueError
        assert "raise ValueError(message)" in error.traceback and "no luck" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018


def test_queue_priority_run_after_and_json_values(backend_server):
    from django.utils import timezone

    from leekd.models import QueuedTask

    _, djtasks = backend_server
    mailed = djtasks.mail.enqueue("ann@example.com")
    row = QueuedTask.objects.get(key=mailed.id)
    assert (row.queue, row.priority) == ("mail", 7)
    assert finished(mailed).return_value == {"sent": ["ann@example.com"], "count": 1}
    with pytest.raises(Exception, match="Queue 'nope' is not valid for backend"):
        djtasks.add.using(queue_name="nope")
    later = djtasks.add.using(run_after=timezone.now() + timedelta(seconds=1.5), priority=-5)
    t0 = time.monotonic()
    deferred = later.enqueue(1, 1)
    assert QueuedTask.objects.get(key=deferred.id).run_at is not None
    assert djtasks.add.get_backend().get_result(deferred.id).status == TaskResultStatus.READY
    assert finished(deferred).return_value == 2 and time.monotonic() - t0 >= 1.4
    with pytest.raises(TypeError):
        djtasks.add.enqueue(object(), 1)  # not JSON: refused at enqueue, as Django does


def test_takes_context_sees_the_attempt(backend_server, tmp_path):
    _, djtasks = backend_server
    result = finished(djtasks.attempt_number.enqueue(str(tmp_path)))
    assert result.return_value == 2 and result.attempts == 2
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"]


def test_async_task_and_aget_result(backend_server):
    _, djtasks = backend_server
    result = finished(djtasks.async_double.enqueue(21))
    assert result.return_value == 42
    again = asyncio.run(djtasks.async_double.get_backend().aget_result(result.id))
    assert again.return_value == 42 and again.status == TaskResultStatus.SUCCESSFUL


def test_signals_are_sent_with_the_backend_class(backend_server):
    from leekd.backend import LeekBackend

    _, djtasks = backend_server
    seen: list[tuple[str, type, str]] = []

    def receiver(signal_name):
        def got(sender, task_result, **kwargs):
            seen.append((signal_name, sender, str(task_result.status)))

        return got

    handlers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(handlers["enqueued"])
    task_started.connect(handlers["started"])
    task_finished.connect(handlers["finished"])
    try:
        finished(djtasks.add.enqueue(1, 2))
        wait_for(lambda: len(seen) == 3)
    finally:
        task_enqueued.disconnect(handlers["enqueued"])
        task_started.disconnect(handlers["started"])
        task_finished.disconnect(handlers["finished"])
    assert [(n, s) for n, s, _ in seen] == [
        ("enqueued", LeekBackend),
        ("started", LeekBackend),
        ("finished", LeekBackend),
    ]
    assert seen[1][2] == TaskResultStatus.RUNNING and seen[2][2] == TaskResultStatus.SUCCESSFUL


def test_unknown_ids_and_on_commit(backend_server):
    from django.db import transaction

    from leekd.models import QueuedTask

    _, djtasks = backend_server
    backend = djtasks.add.get_backend()
    for bad in ("no-such-key", "999999999", ""):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(bad)
    with transaction.atomic():
        pending = djtasks.add.enqueue(4, 4)
        assert pending.id and not QueuedTask.objects.filter(key=pending.id).exists()
    assert finished(pending).return_value == 8


def test_check_warns_when_leekd_is_down_and_errors_without_a_secret(
    backend_server, monkeypatch, tmp_path
):
    _, djtasks = backend_server
    backend = djtasks.add.get_backend()
    assert backend.check() == []
    monkeypatch.setenv("LEEK_PORT", "1")
    leek.client.reset_client()
    (warning,) = backend.check()
    assert warning.id == "leekd.W020" and "127.0.0.1:1" in warning.msg
    monkeypatch.delenv("LEEK_SECRET")
    monkeypatch.setenv("LEEK_SECRET_FILE", str(tmp_path / "no-key"))
    leek.client.reset_client()
    (error,) = backend.check()
    assert error.id == "leekd.E021" and "no leek secret" in error.msg
