"""Purging finished task records: counts, only old finished rows, unfinished ones untouched."""

from __future__ import annotations

import io
import logging
import sqlite3
import time
from datetime import timedelta

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, wait_for

DAY = 86400


def _empty_tables() -> None:
    """Every task record gone, outcomes first, in one transaction (a server may be writing)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM leekd_attempt")
        cur.execute("DELETE FROM leekd_successtask")
        cur.execute("DELETE FROM leekd_failedtask")
        cur.execute("DELETE FROM leekd_queuedtask")


@pytest.fixture
def records(django_db):
    """Start from an empty table; returns a maker of finished/unfinished rows of a given age."""
    from django.utils import timezone

    from leekd.models import FailedTask, QueuedTask, SuccessTask

    _empty_tables()

    def make(state: str, age: timedelta, n: int = 1) -> list[int]:
        when = timezone.now() - age
        made = QueuedTask.objects.bulk_create(
            QueuedTask(name="tests.tasks.add", args_preview="1, 2", payload=b"", enqueued_at=when)
            for _ in range(n)
        )
        if state == "succeeded":
            SuccessTask.objects.bulk_create(
                SuccessTask(task=t, finished_at=when, duration=0.001) for t in made
            )
        elif state == "failed":
            FailedTask.objects.bulk_create(
                FailedTask(task=t, failed_at=when, exc_type="builtins.ValueError", message="old")
                for t in made
            )
        ids = [t.pk for t in made]
        QueuedTask.objects.filter(pk__in=ids).update(state=state)
        return ids

    yield make
    # Unfinished rows with no payload must not be recovered by the next test's server.
    QueuedTask.objects.filter(state="queued", name="tests.tasks.add", payload=b"").delete()


def remaining(ids: list[int]) -> set[int]:
    from leekd.models import QueuedTask

    return set(QueuedTask.objects.filter(pk__in=ids).values_list("pk", flat=True))


def test_purge_deletes_only_old_finished_rows_and_counts_them(client, records):
    from leekd.models import FailedTask, SuccessTask

    # Given old and recent outcomes, and old tasks that never finished,
    old_ok = records("succeeded", timedelta(days=10), 3)
    old_bad = records("failed", timedelta(days=10), 2)
    new_ok = records("succeeded", timedelta(hours=1), 2)
    new_bad = records("failed", timedelta(hours=1))
    unfinished = records("queued", timedelta(days=30), 2)
    # when purging both states older than 7 days,
    reply = client.request("purge", states=["succeeded", "failed"], older_than=7 * DAY)
    # then exactly the old finished rows and their outcomes are gone.
    assert reply == {
        "succeeded": 3,
        "failed": 2,
        "jobs": 0,
        "more": False,
        "dry_run": False,
        "older_than": 7 * DAY,
    }
    assert remaining(old_ok + old_bad) == set()
    assert not SuccessTask.objects.filter(task_id__in=old_ok).exists()
    assert not FailedTask.objects.filter(task_id__in=old_bad).exists()
    assert remaining(new_ok + new_bad + unfinished) == set(new_ok + new_bad + unfinished)
    # Even older_than=0 never touches an unfinished task.
    client.request("purge", states=["succeeded", "failed"], older_than=0)
    assert remaining(new_ok + new_bad + unfinished) == set(unfinished)


def test_purge_one_state_and_dry_run(client, records):
    ok = records("succeeded", timedelta(days=3), 2)
    bad = records("failed", timedelta(days=3), 4)

    reply = client.request("purge", states=["failed"], older_than=DAY, dry_run=True)
    assert (reply["failed"], reply["dry_run"]) == (4, True)
    assert remaining(ok + bad) == set(ok + bad)

    reply = client.request("purge", states=["failed"], older_than=DAY)
    assert reply["failed"] == 4 and "succeeded" not in reply
    assert remaining(ok + bad) == set(ok)


def test_purge_of_cancelled_tasks_ages_them_from_their_push(client, records):
    old = records("cancelled", timedelta(days=3), 3)
    new = records("cancelled", timedelta(hours=1), 2)
    waiting = records("queued", timedelta(days=3), 1)
    reply = client.request("purge", states=["cancelled"], older_than=DAY)
    assert reply["cancelled"] == 3
    assert remaining(old + new + waiting) == set(new + waiting)


def test_purge_works_in_batches_within_a_time_budget(records):
    from leekd.store import purge as maintenance

    ids = records("succeeded", timedelta(days=2), 25)
    # Several small batches in one call,
    assert maintenance.purge(["succeeded"], DAY, batch=7)["succeeded"] == 25
    assert remaining(ids) == set()
    # and with its time used up a call stops early and says there is more.
    ids = records("succeeded", timedelta(days=2), 5)
    result = maintenance.purge(["succeeded"], DAY, batch=2, budget=0)
    assert result["more"] is True and result["succeeded"] == 0
    assert remaining(ids) == set(ids)


def test_purge_rejects_bad_requests(client):
    for args in (
        {"states": ["queued"], "older_than": 0},
        {"states": [], "older_than": 0},
        {"states": ["failed"]},
        {"states": ["failed"], "older_than": -1},
        {"states": ["failed"], "older_than": 1, "sneaky": True},
    ):
        with pytest.raises(leek.LeekRejected):
            client.request("purge", **args)


def test_leek_shell_purge_and_management_command(server, records, capsys):
    from django.core.management import call_command

    from leekd.cli import shell

    old = records("succeeded", timedelta(days=8), 3)
    records("failed", timedelta(days=8), 1)
    code = shell.main(
        ["--port", str(server.port), "purge", "--succeeded", "--older-than", "7d", "--dry-run"]
    )
    assert code == 0
    assert (
        capsys.readouterr().out
        == "would delete 3 succeeded task record(s) finished more than 7d ago\n"
    )
    assert (
        shell.main(
            ["--port", str(server.port), "purge", "--succeeded", "--failed", "--older-than", "1w"]
        )
        == 0
    )
    assert (
        capsys.readouterr().out
        == "deleted 3 succeeded and 1 failed task record(s) finished more than 7d ago\n"
    )
    assert remaining(old) == set()

    out = io.StringIO()
    call_command(
        "leek_purge", "--failed", "--older-than", "1d", "--port", str(server.port), stdout=out
    )
    assert out.getvalue() == "nothing to purge: no failed tasks finished more than 1d ago\n"


def test_leekd_applies_its_retention_setting(make_server, records, caplog):
    caplog.set_level(logging.INFO, logger="leekd")
    old = records("succeeded", timedelta(days=40), 2) + records("failed", timedelta(days=40))
    kept = records("succeeded", timedelta(days=1)) + records("queued", timedelta(days=90))
    # leekd with a 30-day retention purges on start (and every hour after).
    make_server(retention=30 * DAY)
    wait_for(lambda: remaining(old) == set(), what="retention to purge the old rows")
    assert remaining(kept) == set(kept)
    wait_for(lambda: "retention: deleted 2 succeeded, 1 failed and 0 cancelled" in caplog.text)


def test_retention_flag_on_a_real_leekd(leekd_proc, tmp_path):
    # Given a task that succeeded on a leekd that has since stopped, recorded 10 days ago,
    p = leekd_proc("--workers", "1")
    with leek.Client(port=p.port, secret=SECRET) as c:
        task_id = c.push(tasks.add, (1, 1))
        wait_for(lambda: c.status(task_id)["state"] == "succeeded")
    assert p.stop() == 0
    past = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 10 * DAY))
    db = sqlite3.connect(p.db, timeout=10)
    with db:
        db.execute(
            "UPDATE leekd_successtask SET finished_at = ? WHERE task_id = ?", (past, task_id)
        )
    db.close()
    # when leekd starts again with --retention 1w, it deletes it.
    p2 = leekd_proc("--workers", "1", "--retention", "1w", db=p.db)
    wait_for(lambda: not rows(p.db, "SELECT id FROM leekd_queuedtask WHERE id = ?", task_id))
    wait_for(lambda: "retention: deleted 1 succeeded, 0 failed and 0 cancelled" in p2.output())
    assert "deleting task records finished more than 7d ago" in p2.output()
