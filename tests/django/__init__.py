"""Tests that need a Django project of their own run its cases in a pytest subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..helpers import ROOT, subprocess_env


def run_project_cases(module: str, tmp_path: Path, timeout: float, **env: str) -> str:
    """Run ``tests/<module>.py`` on tests.project_settings and a fresh SQLite file; returns
    pytest's output after checking the run passed and skipped nothing."""
    environ = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.project_settings",
        LEEK_TEST_DB=str(tmp_path / "project.sqlite3"),
        **env,
    )
    environ.pop("LEEK_PORT", None)
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider",
            "--basetemp", str(tmp_path / "inner"), str(ROOT / "tests" / f"{module}.py"),
        ],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
    return done.stdout
