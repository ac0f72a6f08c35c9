"""Several leekd processes on one real PostgreSQL, each in its own directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ..helpers import LeekdProcess, subprocess_env
from ..postgres import PostgresServer

LEASE = "2"  # seconds: short, so takeover shows within the test's time


@pytest.fixture(scope="package")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    env = subprocess_env(LEEK_TEST_PG_PORT=str(server.port))
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "leekd", "--settings", "tests.pg_settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    yield server
    server.destroy()


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[psycopg.Connection]:
    """A connection for the test's own queries; the tables start empty."""
    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(
            "TRUNCATE leekd_successtask, leekd_failedtask, leekd_queuedtask, leekd_node, "
            "leekd_schedule CASCADE"
        )
        yield conn


@pytest.fixture
def node(postgres: PostgresServer, tmp_path: Path) -> Iterator:
    started: list[LeekdProcess] = []

    def make(
        name: str,
        *args: str,
        pg_port: int | None = None,
        settings: str = "tests.pg_settings",
        **extra_env: str,
    ) -> LeekdProcess:
        home = tmp_path / name
        home.mkdir(exist_ok=True)
        env = subprocess_env(LEEK_TEST_PG_PORT=str(pg_port or postgres.port), **extra_env)
        p = LeekdProcess(
            home / "unused.sqlite3",
            "--settings",
            settings,
            "--node",
            name,
            "--lease",
            LEASE,
            "--workers",
            "2",
            "--grace",
            "5",
            *args,
            env=env,
        )
        started.append(p)
        return p.start()

    yield make
    for p in started:
        p.kill()


def one(conn: psycopg.Connection, sql: str, *params: object) -> object:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]
