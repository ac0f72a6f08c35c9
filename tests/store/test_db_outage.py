"""Database trouble: pushes are refused, outcomes wait in memory, leekd keeps serving."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, subprocess_env, wait_for
from ..postgres import PostgresServer


def test_sqlite_locked_refuses_pushes_and_keeps_outcomes(leekd_proc, tmp_path):
    p = leekd_proc("--workers", "1")
    c = leek.Client(port=p.port, secret=SECRET)
    # Given a task that is running when another process locks the database,
    slow = c.push(tasks.sleep, (1.0,))
    wait_for(lambda: c.status(slow)["state"] == "running")
    lock = sqlite3.connect(p.db, timeout=10, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        # when a push arrives, it is refused with a clear error rather than answered,
        with pytest.raises(
            leek.LeekUnavailable, match="not recorded.*database unavailable.*locked"
        ):
            c.push(tasks.noop)
        # and leekd keeps serving, saying what is wrong.
        info = c.ping()
        assert info["status"] == "unavailable" and "locked" in info["database"]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # Once the lock is gone, the finished task's outcome is written and pushes work again.
    wait_for(
        lambda: (
            rows(p.db, "SELECT state FROM leekd_queuedtask WHERE id = ?", slow)[0][0] == "succeeded"
        )
    )
    ok = c.push(tasks.noop)
    wait_for(lambda: c.status(ok)["state"] == "succeeded")
    assert c.ping()["database"] == "ok"
    c.close()


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.mark.postgres
def test_postgres_down_and_back(postgres, leekd_proc, tmp_path):
    env = subprocess_env(LEEK_TEST_PG_PORT=str(postgres.port))
    migrate = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "migrate",
            "leekd",
            "--settings",
            "tests.pg_settings",
            "-v",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    # Given leekd on the project's PostgreSQL database, with one task running,
    p = leekd_proc(
        "--settings", "tests.pg_settings", "--workers", "2", LEEK_TEST_PG_PORT=str(postgres.port)
    )
    assert "postgresql" in p.output()
    c = leek.Client(port=p.port, secret=SECRET)
    first = c.push(tasks.add, (1, 2))
    wait_for(lambda: c.status(first)["state"] == "succeeded")
    slow = c.push(tasks.sleep, (1.5,))
    wait_for(lambda: c.stats()["workers"]["busy"] == 1)
    # when the database server stops,
    postgres.stop()
    try:
        # then pushes are refused, not answered, and leekd stays up;
        with pytest.raises(leek.LeekUnavailable, match="not recorded"):
            c.push(tasks.noop)
        wait_for(
            lambda: c.stats()["store"]["backlog"] >= 1, timeout=10, what="outcome kept in memory"
        )
        assert c.ping()["status"] == "unavailable"
    finally:
        postgres.start()
    # and once it is back, the outcome kept in memory is written and pushes work again.
    wait_for(lambda: c.stats()["store"]["backlog"] == 0, timeout=20)
    assert c.status(slow)["state"] == "succeeded"
    wait_for(lambda: c.ping()["status"] == "ok", timeout=10, what="ping ok again")
    again = c.push(tasks.add, (2, 2))
    wait_for(lambda: c.status(again)["state"] == "succeeded")
    c.close()
    assert p.stop() == 0


def test_a_task_row_deleted_while_it_runs_does_not_block_later_commits(make_server):
    from leekd.models import QueuedTask

    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        # Given a running task whose row someone deletes behind leekd's back,
        doomed = c.push(tasks.sleep, (0.5,))
        wait_for(lambda: c.status(doomed)["state"] == "running")
        QueuedTask.objects.filter(pk=doomed).delete()
        # when it finishes, its outcome is dropped instead of failing the commit,
        handled = c.handled()
        wait_for(lambda: c.handled() > handled, timeout=10)
        # and pushes and outcomes after it are recorded as usual.
        later = c.push(tasks.add, (1, 1))
        wait_for(lambda: c.status(later)["state"] == "succeeded", timeout=10)
        assert c.stats()["store"] == {**c.stats()["store"], "healthy": True, "backlog": 0}
