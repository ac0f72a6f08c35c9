"""The systems under test. Each module holds both sides of one system:

- the orchestrator side, a ``System`` that starts its server(s) in a work directory and
  says which Python and environment its client runs with;
- the client side, a ``Driver`` that ``bench.drive`` loads inside that Python: ``push()``
  one no-op task, ``recorded()`` outcomes in the database, optionally ``push_many(k)``.

Module level imports stay in the standard library, so either side loads anywhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Server:
    """A started system: its root process (RSS is read over its tree) and its client's setup.

    ``cleanup`` removes what the server needed besides its process (a database server, a
    socket's directory), after the process has stopped, whether or not that went well.
    """

    proc: subprocess.Popen[bytes]
    log: Path
    python: str
    env: dict[str, str]
    spec: dict[str, Any] = field(default_factory=dict)
    cleanup: Callable[[], object] | None = None

    def stop(self) -> None:
        try:
            procs.stop(self.proc)
        finally:
            if self.cleanup is not None:
                self.cleanup()


def base_env(*paths: Path | str, **extra: str) -> dict[str, str]:
    """The environment without this shell's Django or leek settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LEEK_") and k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*paths, ROOT))
    env.update(extra)
    return env


NAMES = ("huey", "django-leek", "django-leek-wal")


def get(name: str, venv: Path | None) -> Any:
    """The ``System`` called ``name`` (``leek`` or one of NAMES)."""
    if name == "leek":
        from .leek import LeekSystem

        return LeekSystem()
    if name == "leek-pg":
        from .leek_pg import LeekPgSystem

        return LeekPgSystem()
    if name == "leek-unix":
        from .leek_unix import LeekUnixSystem

        return LeekUnixSystem()
    assert venv is not None
    if name == "huey":
        from .huey import HueySystem

        return HueySystem(venv)
    if name == "django-leek":
        from .django_leek import DjangoLeekSystem

        return DjangoLeekSystem(venv, wal=False)
    if name == "django-leek-wal":
        from .django_leek import DjangoLeekSystem

        return DjangoLeekSystem(venv, wal=True)
    raise ValueError(f"unknown system {name!r}")
