"""Every migration applies to a database made by leek 0.1 (0001), keeping its rows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from ..helpers import ROOT, subprocess_env

MIGRATE = """
import sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["leekd"], USE_TZ=True,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
)
django.setup()
from django.core.management import call_command
call_command("migrate", "leekd", *sys.argv[2:], verbosity=0)
"""


def migrate(db: Path, *target: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MIGRATE, str(db), *target],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_an_old_database_migrates_forward_with_its_rows(tmp_path):
    db = tmp_path / "old.sqlite3"
    migrate(db, "0001")
    with closing(sqlite3.connect(db)) as conn, conn:  # closed, not only committed
        conn.execute(
            "INSERT INTO leekd_queuedtask (queue, name, args_preview, payload, state, "
            "enqueued_at, attempts, max_retries, timeout, deaths) "
            "VALUES ('default', 'm.f', '', x'00', 'queued', '2026-01-01 00:00:00', 0, 0, 0, 0)"
        )
    migrate(db)
    with closing(sqlite3.connect(db)) as conn, conn:
        row = conn.execute(
            "SELECT name, state, priority, run_at, key, job_id, step, unique_key "
            "FROM leekd_queuedtask"
        ).fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        (index,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'leekd_qt_unique_key'"
        ).fetchone()
    assert row == [("m.f", "queued", 0, None, None, None, None, None)]
    assert {"leekd_job", "leekd_schedule"} <= tables
    assert "UNIQUE INDEX" in index and "WHERE" in index
