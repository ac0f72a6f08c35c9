"""Unique keys and cancel on a real PostgreSQL server (the writer thread's path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import leek
from leek.records import make_record

from .. import tasks
from ..helpers import SECRET, subprocess_env, wait_for
from ..postgres import PostgresServer


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.mark.postgres
def test_unique_keys_and_cancel_on_postgres(postgres, leekd_proc):
    env = subprocess_env(LEEK_TEST_PG_PORT=str(postgres.port))
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "leekd", "--settings", "tests.pg_settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    p = leekd_proc(
        "--settings", "tests.pg_settings", "--workers", "1", LEEK_TEST_PG_PORT=str(postgres.port)
    )
    with leek.Client(port=p.port, secret=SECRET) as c:
        # duplicates within one commit, beside a plain record, and the whole batch sent again
        records = [
            make_record(tasks.noop, delay=3600, unique_key="pg:a"),
            make_record(tasks.noop, delay=3600),
            make_record(tasks.noop, delay=3600, unique_key="pg:a"),
        ]
        ids = c.push_records(records)
        assert ids[0] == ids[2] != ids[1]
        assert c.push_records(records) == ids
        assert c.push(tasks.noop, unique_key="pg:a") == ids[0]
        assert c.stats()["queues"]["default"]["scheduled"] == 2
        # a cancel frees the key; the next task with it runs
        assert c.cancel(ids[0])["cancelled"] is True
        assert c.status(ids[0])["state"] == "cancelled"
        fresh = c.push(tasks.add, (1, 1), unique_key="pg:a")
        assert fresh not in ids
        wait_for(lambda: c.status(fresh)["state"] == "succeeded")
        with pytest.raises(leek.LeekRejected, match="has already succeeded"):
            c.cancel(fresh)
    assert p.stop() == 0
