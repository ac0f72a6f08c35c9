"""Unique keys (held in the database, across restarts) and cancelling tasks not yet started."""

from __future__ import annotations

import pytest

import leek
from leek.records import make_record

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, wait_for
from .test_task_options import stamps

BY_KEY = "SELECT id, state FROM leekd_queuedtask WHERE unique_key = ? ORDER BY id"


def scheduled(c) -> int:
    return c.stats()["queues"].get("default", {}).get("scheduled", 0)


@pytest.fixture
def k(tmp_path):
    """Keys of this test: the in-process servers share one database file."""
    return lambda name: f"{tmp_path.name}:{name}"


def tidy(c, *ids: int) -> None:
    """Cancel what a test left scheduled: later servers on the shared database recover it."""
    for task_id in ids:
        c.cancel(task_id)


def state(db, task_id: int) -> str:
    return rows(db, "SELECT state FROM leekd_queuedtask WHERE id = ?", task_id)[0][0]


def test_a_unique_key_returns_the_unfinished_task_and_stores_nothing(client, django_db, k):
    before = scheduled(client)
    first = client.push(tasks.noop, delay=3600, unique_key=k("report:7"))
    assert client.push(tasks.noop, unique_key=k("report:7")) == first
    assert client.push(tasks.add, (1, 2), queue="other", unique_key=k("report:7")) == first
    assert rows(django_db, BY_KEY, k("report:7")) == [(first, "queued")]
    other = client.push(tasks.noop, delay=3600, unique_key=k("report:8"))
    assert other != first
    assert scheduled(client) == before + 2  # the duplicates queued nothing
    tidy(client, first, other)


def test_duplicates_in_one_commit_do_not_fail_the_other_pushes(client, django_db, k):
    before = scheduled(client)
    records = [
        make_record(tasks.noop, delay=3600, unique_key=k("batch")),
        make_record(tasks.noop, delay=3600),
        make_record(tasks.noop, delay=3600, unique_key=k("batch")),
        make_record(tasks.noop, delay=3600, unique_key=k("other")),
    ]
    ids = client.push_records(records)
    assert ids[0] == ids[2] and len(set(ids)) == 3
    assert [i for i, _ in rows(django_db, BY_KEY, k("batch"))] == [ids[0]]
    # a push sent again whole (same client-made keys) is recorded once as well
    assert client.push_records(records) == ids
    assert scheduled(client) == before + 3
    tidy(client, *set(ids))


def test_a_unique_key_is_free_again_once_its_task_finished(client, django_db, k):
    first = client.push(tasks.noop, unique_key=k("nightly"))
    wait_for(lambda: state(django_db, first) == "succeeded", what="the first one finished")
    second = client.push(tasks.fail, max_retries=1, unique_key=k("nightly"))
    assert second != first
    wait_for(lambda: state(django_db, second) == "failed", what="the second one failed")
    third = client.push(tasks.noop, delay=3600, unique_key=k("nightly"))
    assert third not in (first, second)
    client.cancel(third)
    fourth = client.push(tasks.noop, delay=3600, unique_key=k("nightly"))
    assert fourth not in (first, second, third)
    tidy(client, fourth)


def test_a_unique_key_holds_across_kill_9_and_restart(leekd_proc):
    # Given a scheduled task holding a key
    p = leekd_proc()
    with leek.Client(port=p.port, secret=SECRET) as c:
        first = c.push(tasks.noop, delay=3600, unique_key="welcome:42")
    # When leekd is killed and started again
    p.kill()
    p.start()
    # Then the key is still held, and a cancel frees it
    with leek.Client(port=p.port, secret=SECRET) as c:
        assert c.push(tasks.noop, unique_key="welcome:42") == first
        assert c.stats()["queues"]["default"]["scheduled"] == 1
        assert c.cancel(first)["cancelled"] is True
        assert c.push(tasks.noop, delay=3600, unique_key="welcome:42") != first
    assert len(rows(p.db, BY_KEY, "welcome:42")) == 2


def test_a_cancelled_scheduled_task_never_runs_and_is_recorded(client, django_db, tmp_path):
    # Given two scheduled tasks, one of which is cancelled
    doomed = client.push(tasks.stamp, (str(tmp_path), "doomed"), delay=0.5)
    later = client.push(tasks.stamp, (str(tmp_path), "later"), delay=0.7)
    before = scheduled(client)
    assert client.status(doomed)["state"] == "scheduled"
    reply = client.cancel(doomed)
    assert scheduled(client) == before - 1
    assert client.stats()["queues"]["default"]["cancelled"] >= 1
    assert reply == {"cancelled": True, "id": doomed, "queue": "default"}
    # When the other one is due and has run
    wait_for(lambda: stamps(tmp_path), timeout=10, what="the later task ran")
    wait_for(lambda: state(django_db, later) == "succeeded", what="its outcome")
    # Then the cancelled one never ran, and its record says so
    assert [n for n, _ in stamps(tmp_path)] == ["later"]
    assert state(django_db, doomed) == "cancelled"
    assert client.status(doomed)["state"] == "cancelled"
    with pytest.raises(leek.LeekRejected, match="already cancelled"):
        client.cancel(doomed)


def test_a_due_task_waiting_for_a_worker_can_be_cancelled(make_server, django_db, tmp_path):
    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        blocker = c.push(tasks.sleep, (0.5,))
        wait_for(lambda: app.is_running(blocker), what="the blocker started")
        waiting = c.push(tasks.stamp, (str(tmp_path), "waiting"), priority=5)
        after = c.push(tasks.stamp, (str(tmp_path), "after"))
        assert c.waiting() >= 2
        n = c.waiting()
        c.cancel(waiting)
        assert c.waiting() == n - 1
        wait_for(lambda: state(django_db, after) == "succeeded", what="the next one ran")
    assert [n for n, _ in stamps(tmp_path)] == ["after"]
    assert state(django_db, waiting) == "cancelled"


def test_cancelling_a_running_finished_or_unknown_task_is_refused(make_server, django_db):
    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        running = c.push(tasks.sleep, (1.0,))
        wait_for(lambda: app.is_running(running), what="it started")
        with pytest.raises(leek.LeekRejected, match=f"task {running} is running"):
            c.cancel(running)
        wait_for(lambda: state(django_db, running) == "succeeded", what="it finished")
        with pytest.raises(leek.LeekRejected, match="has already succeeded") as refused:
            c.cancel(running)
        assert refused.value.code == "rejected"
        with pytest.raises(leek.LeekRejected, match="no task with id") as unknown:
            c.cancel(10**9)
        assert unknown.value.code == "not_found"
        with pytest.raises(leek.LeekRejected, match="positive integer"):
            c.request("cancel", id="7")
