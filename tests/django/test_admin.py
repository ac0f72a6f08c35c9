"""The Django admin, in a project of its own: run tests/project_admin_cases.py in a subprocess.

The rest of the suite configures Django once, on leekd's embedded settings; the admin needs
a project with admin, auth, sessions and messages, so it gets its own process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..helpers import ROOT, subprocess_env


def test_admin_changelists_traceback_and_retry_action(tmp_path: Path) -> None:
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.project_settings",
        LEEK_TEST_DB=str(tmp_path / "project.sqlite3"),
    )
    env.pop("LEEK_PORT", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "inner"),
            str(ROOT / "tests" / "project_admin_cases.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
