"""The dashboard in a real headless Chromium: tests/project_browser_cases.py, in a subprocess.

Skipped with the reason where Chromium, its driver or Selenium is missing; under CI
(``CI=true``, as .ci/run sets up Chromium) a missing browser fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import ROOT, subprocess_env


def missing_parts() -> list[str]:
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install -e '.[test]')")
    return missing


def test_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    missing = missing_parts()
    if missing:
        reason = f"needs {', '.join(missing)}; on Debian: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    shot = tmp_path / "dashboard.png"
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.project_settings",
        LEEK_TEST_DB=str(tmp_path / "project.sqlite3"),
        LEEK_SCREENSHOT=str(shot),
        LEEK_CHROMIUM=str(shutil.which("chromium")),
        LEEK_CHROMEDRIVER=str(shutil.which("chromedriver")),
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
            str(ROOT / "tests" / "project_browser_cases.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout and "skipped" not in done.stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
