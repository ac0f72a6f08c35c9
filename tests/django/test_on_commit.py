"""Pushes inside ``atomic()`` wait for the commit: on SQLite and on a real PostgreSQL.

A web process (a child, on the project's settings) writes a row and pushes inside a
transaction, once rolled back and once committed; leekd runs on the same database.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..helpers import ROOT, subprocess_env
from ..postgres import PostgresServer


def _manage(settings: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args, "--settings", settings],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _web_process(settings: str, env: dict[str, str], port: int) -> dict:
    child = subprocess.run(
        [sys.executable, "-m", "tests.django.oncommit_child"],
        env={**env, "DJANGO_SETTINGS_MODULE": settings, "LEEK_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def _check(seen: dict) -> None:
    # Inside atomic() the push waits: no id yet, and leekd has no row before the commit.
    assert seen["rolled_push"] is None and seen["kept_push"] is None
    assert seen["queued_before_commit"] == 0
    # The rolled-back push never reached leekd; the committed one ran after the commit,
    # so it saw the row written in the same transaction.
    assert seen["rows"] == ["'kept'"]
    assert seen["kept_result"] == 1
    # Outside a transaction a push goes at once and returns its id.
    assert isinstance(seen["outside"], int)


def test_push_in_atomic_on_sqlite_waits_for_the_commit(leekd_proc, tmp_path):
    db = tmp_path / "project.sqlite3"
    env = subprocess_env(LEEK_TEST_DB=str(db))
    migrate = _manage("tests.project_settings", env, "migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    p = leekd_proc("--settings", "tests.project_settings", LEEK_TEST_DB=str(db))
    _check(_web_process("tests.project_settings", env, p.port))


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.mark.postgres
def test_push_in_atomic_on_postgres_waits_for_the_commit(postgres, leekd_proc):
    env = subprocess_env(LEEK_TEST_PG_PORT=str(postgres.port))
    migrate = _manage("tests.pg_settings", env, "migrate", "leekd", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    p = leekd_proc("--settings", "tests.pg_settings", LEEK_TEST_PG_PORT=str(postgres.port))
    _check(_web_process("tests.pg_settings", env, p.port))
