"""The distribution is named ``leekd`` and its console scripts run."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = {"leekd": "leekd.cli.run:main", "leek-shell": "leekd.cli.shell:main"}
SCRIPTS["leek-retry-failed"] = "leekd.cli.retry:main"


def test_the_distribution_is_leekd_and_installs_both_packages():
    dist = importlib.metadata.distribution("leekd")
    assert dist.metadata["Name"] == "leekd"
    found = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert found == SCRIPTS
    for ep in dist.entry_points:
        loaded = ep.load()
        if ep.group == "pytest11":  # a plugin is a module of fixtures
            assert ep.value == "leek.testing" and hasattr(loaded, "leek_eager")
        else:
            assert callable(loaded)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_answer_help(script: str):
    exe = Path(sys.executable).parent / script
    assert exe.exists(), f"{script} is not installed beside {sys.executable}"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
