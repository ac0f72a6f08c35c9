"""The Django admin, in a project of its own: run tests/project_admin_cases.py in a subprocess.

The rest of the suite configures Django once, on leekd's embedded settings; the admin needs
a project with admin, auth, sessions and messages, so it gets its own process.
"""

from __future__ import annotations

from pathlib import Path

from . import run_project_cases


def test_admin_changelists_traceback_and_retry_action(tmp_path: Path) -> None:
    run_project_cases("project_admin_cases", tmp_path, timeout=100)
