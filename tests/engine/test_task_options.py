"""Delayed tasks and priorities: when a task may run, and which ready task runs first."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, wait_for


def stamps(directory: Path) -> list[tuple[str, float]]:
    path = directory / "stamps"
    if not path.exists():
        return []
    return [(n, float(t)) for n, t in (line.split() for line in path.read_text().splitlines())]


def test_a_delayed_task_runs_no_earlier_than_due(client, tmp_path):
    t0 = time.time()
    client.push(tasks.stamp, (str(tmp_path), "late"), delay=1.0)
    client.push(tasks.stamp, (str(tmp_path), "soon"))
    wait_for(lambda: len(stamps(tmp_path)) == 2, timeout=10, what="both tasks ran")
    ran = dict(stamps(tmp_path))
    assert ran["late"] >= t0 + 1.0
    assert ran["soon"] < ran["late"]


def test_eta_and_timedelta_delay(client, tmp_path):
    due = datetime.now(UTC) + timedelta(seconds=0.8)
    client.push(tasks.stamp, (str(tmp_path), "eta"), eta=due)
    client.push(tasks.stamp, (str(tmp_path), "td"), delay=timedelta(seconds=0.5))
    wait_for(lambda: len(stamps(tmp_path)) == 2, timeout=10, what="both tasks ran")
    ran = dict(stamps(tmp_path))
    assert ran["eta"] >= due.timestamp()
    assert ran["td"] < ran["eta"]


def test_scheduled_tasks_are_counted_apart_from_waiting_ones(client, tmp_path):
    task_id = client.push(tasks.noop, queue="later", delay=3600)
    stats = client.stats()
    assert stats["queues"]["later"]["scheduled"] == 1
    assert stats["queues"]["later"]["waiting"] == 0
    assert client.waiting() == 0
    client.cancel(task_id)  # later servers on this test database would recover it


def test_bad_times_are_refused_before_sending(client):
    with pytest.raises(leek.LeekError, match="time zone"):
        client.push(tasks.noop, eta=datetime.now() + timedelta(hours=1))  # noqa: DTZ005
    with pytest.raises(leek.LeekError, match="not both"):
        client.push(tasks.noop, delay=1, eta=datetime.now(UTC))
    with pytest.raises(leek.LeekError, match="delay"):
        client.push(tasks.noop, delay=-1)
    with pytest.raises(leek.LeekError, match="priority"):
        client.push(tasks.noop, priority=True)


def test_higher_priority_runs_first_and_equals_in_order(make_server, tmp_path):
    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        c.push(tasks.sleep, (0.5,))  # holds the only worker while the rest queue up
        wait_for(lambda: app.busy() == 1, what="the blocker started")
        for name, priority in [("low", -5), ("mid1", 0), ("high", 10), ("mid2", 0), ("top", 100)]:
            c.push(tasks.stamp, (str(tmp_path), name), priority=priority)
        wait_for(lambda: len(stamps(tmp_path)) == 5, timeout=10, what="all ran")
    assert [n for n, _ in stamps(tmp_path)] == ["top", "high", "mid1", "mid2", "low"]


def test_a_delayed_task_survives_kill_9_and_one_due_meanwhile_runs_promptly(leekd_proc, tmp_path):
    # Given a leekd with a task due in an hour and one due in a second
    p = leekd_proc()
    with leek.Client(port=p.port, secret=SECRET) as c:
        hour = c.push(tasks.noop, delay=3600)
        soon = c.push(tasks.stamp, (str(tmp_path), "soon"), delay=1.5)
    # When leekd is killed before either is due, and started again after the second fell due
    p.kill()
    time.sleep(1.6)
    p.start()
    started = time.time()
    # Then the overdue one runs within a second, and the hourly one is still scheduled
    wait_for(lambda: stamps(tmp_path), timeout=5, what="the overdue task ran")
    assert stamps(tmp_path)[0][1] - started < 1.0
    with leek.Client(port=p.port, secret=SECRET) as c:
        assert c.stats()["queues"]["default"]["scheduled"] == 1
        assert c.waiting() == 0
    ((state, run_at),) = rows(p.db, "SELECT state, run_at FROM leekd_queuedtask WHERE id = ?", hour)
    assert state == "queued" and run_at is not None
    wait_for(
        lambda: (
            rows(p.db, "SELECT state FROM leekd_queuedtask WHERE id = ?", soon) == [("succeeded",)]
        ),
        what="outcome recorded",
    )


def test_retries_wait_their_backoff(make_server, tmp_path):
    # retry_delay 0.3s, doubling: attempts at about 0, 0.3 and 0.9 seconds
    app = make_server(retry_delay=0.3)
    with leek.Client(port=app.port, secret=SECRET) as c:
        task_id = c.push(tasks.fail_stamped, (str(tmp_path), "try", 2), max_retries=3)
        wait_for(lambda: len(stamps(tmp_path)) == 3, timeout=10, what="three attempts")
        wait_for(lambda: c.status(task_id)["state"] == "succeeded", what="the third succeeded")
        # both failed attempts went through the timer heap as retries
        assert c.stats()["queues"]["default"]["retried"] == 2
    times = [t for _, t in stamps(tmp_path)]
    assert times[1] - times[0] >= 0.3
    assert times[2] - times[1] >= 0.6
