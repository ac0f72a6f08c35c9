"""Fixtures for the engine tests that run leekd on tests/flow_settings.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..helpers import ROOT, subprocess_env


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "leekd", "--settings", "tests.flow_settings"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def flow_env(tmp_path):
    """The environment of a leekd on tests/flow_settings.py, its SQLite file migrated."""
    env = subprocess_env(LEEK_TEST_DIR=str(tmp_path), LEEK_TEST_DB=str(tmp_path / "flow.sqlite3"))
    migrate(env)
    return env
