"""Faults: hung tasks, tasks that kill leekd, and hostile task behaviour."""

from __future__ import annotations

import time

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for


def finished(client, task_id):
    return client.status(task_id)["state"] in ("succeeded", "failed")


def test_time_limit_interrupts_python_code(make_server):
    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        task_id = c.push(tasks.busy_loop, (30,), timeout=0.3, max_retries=1)
        wait_for(lambda: finished(c, task_id), timeout=10)
        st = c.status(task_id)
        assert st["state"] == "failed"
        assert "TaskTimeout" in st["error"] and "time limit of 0.3s" in st["error"]
        # the worker survived and takes the next task
        nxt = c.push(tasks.add, (1, 1))
        wait_for(lambda: finished(c, nxt))
        assert c.status(nxt)["state"] == "succeeded"
        assert app.watchdog is not None and app.watchdog.retired == 0


def test_default_time_limit_from_config(make_server):
    app = make_server(workers=1, timeout=0.2, max_retries=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        task_id = c.push(tasks.busy_loop, (30,))
        wait_for(lambda: finished(c, task_id), timeout=10)
        assert "time limit" in c.status(task_id)["error"]


def test_stuck_worker_is_retired_and_replaced(make_server):
    # Given one worker stuck in a C call (time.sleep) that ignores the timeout exception,
    app = make_server(workers=1, kill_after=0.3)
    with leek.Client(port=app.port, secret=SECRET) as c:
        stuck = c.push(tasks.sleep, (20,), timeout=0.2)
        # when its limit and the kill delay have passed,
        wait_for(lambda: finished(c, stuck), timeout=10)
        # then the task is failed with a timeout error, the thread retired and replaced,
        st = c.status(stuck)
        assert st["state"] == "failed" and "did not stop" in st["error"]
        assert app.watchdog is not None and app.watchdog.retired == 1
        # and capacity holds: the next task runs at once on the replacement.
        nxt = c.push(tasks.add, (2, 2))
        wait_for(lambda: finished(c, nxt), timeout=5)
        assert c.status(nxt)["state"] == "succeeded"
        assert c.stats()["workers"]["total"] == 1


def test_noisy_tasks_are_recorded_and_never_fatal(make_server, capfd):
    app = make_server(workers=2)
    with leek.Client(port=app.port, secret=SECRET) as c:
        ids = [
            c.push(tasks.print_megabytes, (5,)),
            c.push(tasks.raise_system_exit, max_retries=1),
            c.push(tasks.return_unpicklable),
        ]
        wait_for(lambda: all(finished(c, i) for i in ids), timeout=30)
        assert [c.status(i)["state"] for i in ids] == ["succeeded", "failed", "succeeded"]
        assert c.ping()["status"] == "ok"
    capfd.readouterr()


def test_a_task_that_kills_leekd_is_failed_after_max_deaths(tmp_path):
    db = tmp_path / "leek.sqlite3"
    procs = []

    def start():
        p = LeekdProcess(db, "--workers", "1", "--max-deaths", "2", env=subprocess_env())
        procs.append(p)
        try:
            p.start()
        except AssertionError:
            pass  # it may die before it even says it listens
        return p

    try:
        # Given a task that takes the whole process down,
        p = start()
        with leek.Client(port=p.port, secret=SECRET) as c:
            poison, ok = c.push_many(
                [(tasks.exit_process, (1, 0.5)), (tasks.touch, (str(tmp_path), "after"))]
            )
        assert p.wait(15) == 1
        # when leekd is restarted (as systemd's Restart=on-failure would),
        p = start()
        assert p.wait(15) == 1, "the first restart runs it again: one death counted so far"
        p = start()
        # then at the second death the task is failed with the reason, and the queue moves on.
        wait_for(lambda: "recorded as failed" in p.output(), timeout=15)
        state, deaths = rows(db, "SELECT state, deaths FROM leekd_queuedtask WHERE id = ?", poison)[
            0
        ]
        assert (state, deaths) == ("failed", 2)
        (message,) = rows(db, "SELECT message FROM leekd_failedtask WHERE task_id = ?", poison)[0]
        assert message == "leekd died while running it 2 times"
        wait_for(lambda: (tmp_path / "after").exists(), timeout=15)
        wait_for(
            lambda: (
                rows(db, "SELECT state FROM leekd_queuedtask WHERE id = ?", ok)[0][0] == "succeeded"
            )
        )
        assert p.proc is not None and p.proc.poll() is None
    finally:
        for p in procs:
            p.kill()


def test_server_down_is_a_quick_connection_error(leekd_proc):
    p = leekd_proc()
    c = leek.Client(port=p.port, secret=SECRET, connect_timeout=1)
    assert c.ping()["status"] == "ok"
    p.kill()
    t0 = time.monotonic()
    try:
        c.push(tasks.noop)
    except leek.LeekConnectionError as exc:
        assert f"127.0.0.1:{p.port}" in str(exc)
    else:
        raise AssertionError("push to a dead server succeeded")
    assert time.monotonic() - t0 < 5
