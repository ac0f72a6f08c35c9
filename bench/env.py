"""The throwaway environment for the peers: ``.bench/venv`` with pinned versions from PyPI.

It is rebuilt only when the pins or the bench's Python change; delete ``.bench/`` to start
over. leek itself is never installed there: it is measured from the project's own venv and
checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.procs import BenchError
from bench.progress import note

REQUIREMENTS = ["django-leek==1.0.7", "huey==3.5.4", "Django>=4.2,<6"]
INSTALL_TIMEOUT = 900.0


def peers_venv(base: Path) -> Path:
    """Create or reuse the venv under ``base`` holding the peers; returns its directory."""
    venv = base / "venv"
    python = venv / "bin" / "python"
    stamp = venv / "bench-requirements.txt"
    # The interpreter is part of the stamp: peers run on the Python the bench runs on.
    wanted = "\n".join(REQUIREMENTS) + f"\n# python {sys.version.split()[0]}\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv
    note(f"installing {', '.join(REQUIREMENTS)} into {venv} (once)")
    base.mkdir(parents=True, exist_ok=True)
    log = base / "install.log"
    with open(log, "wb") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *REQUIREMENTS],
        ]
        for cmd in steps:
            try:
                done = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT
                )
            except subprocess.TimeoutExpired:
                raise BenchError(f"{' '.join(cmd)} took over {INSTALL_TIMEOUT:g}s") from None
            if done.returncode:
                raise BenchError(f"{' '.join(cmd)} failed; see {log}")
    stamp.write_text(wanted)
    return venv


def versions(venv: Path) -> dict[str, str]:
    """Installed versions of the peers, for the report."""
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({n: m.version(n) for n in ('django-leek', 'huey', 'Django')}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    if out.returncode:
        return {}
    import json

    return dict(json.loads(out.stdout))
