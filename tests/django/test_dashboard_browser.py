"""The dashboard in a real headless Chromium: tests/project_browser_cases.py, in a subprocess.

Skipped with the reason where Chromium, its driver or Selenium is missing; under CI
(``CI=true``, as .ci/run sets up Chromium) a missing browser fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from . import run_project_cases


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
    out = run_project_cases(
        "project_browser_cases",
        tmp_path,
        timeout=110,
        LEEK_SCREENSHOT=str(shot),
        LEEK_CHROMIUM=str(shutil.which("chromium")),
        LEEK_CHROMEDRIVER=str(shutil.which("chromedriver")),
    )
    assert "1 passed" in out
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
