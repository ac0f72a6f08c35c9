"""A throwaway PostgreSQL server for tests (bench/postgres.py, with ``fsync`` off): skipped
where this machine cannot run one, a failure under CI."""

from __future__ import annotations

import os

import pytest

from bench.postgres import PostgresServer as _Server
from bench.postgres import PostgresUnavailable, run_as


def require_postgres() -> None:
    """Skip the test (fail it under CI) unless a throwaway server can run here."""
    try:
        run_as()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


class PostgresServer(_Server):
    def __init__(self) -> None:
        require_postgres()
        super().__init__(fsync=False)
