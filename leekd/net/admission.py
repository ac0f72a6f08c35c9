"""What a push must satisfy before it reaches the store, and what leekd tells a client."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import cloudpickle

from leek import __version__
from leek.protocol import TaskRecord

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def server_info() -> dict[str, Any]:
    """Sent in the welcome: what the client needs to know to pickle for us."""
    return {"leek": __version__, "python": PYTHON, "cloudpickle": cloudpickle.__version__}


# What the columns hold; checked here so one bad record cannot fail a group commit that
# carries other clients' pushes (PostgreSQL enforces these lengths, SQLite does not).
MAX_NAME, MAX_QUEUE, MAX_PREVIEW, MAX_RETRIES = 255, 100, 300, 1000


def record_problem(
    tasks: tuple[TaskRecord, ...], served: frozenset[str] | None = None
) -> str | None:
    for t in tasks:
        if served is not None and t.queue not in served:
            return (
                f"leekd serves the queues {', '.join(sorted(served))}, not {t.queue[:100]!r}; "
                f"push to one of those, or add it to LEEK['queues'] (or --queue "
                f"{t.queue[:100]}=N) and restart leekd"
            )
        if len(t.name) > MAX_NAME or len(t.queue) > MAX_QUEUE or len(t.preview) > MAX_PREVIEW:
            return (
                f"task {t.name[:60]!r}: name, queue or preview too long "
                f"(at most {MAX_NAME}, {MAX_QUEUE} and {MAX_PREVIEW} characters)"
            )
        if t.max_retries > MAX_RETRIES:
            return f"task {t.name[:60]!r}: max_retries {t.max_retries} is over {MAX_RETRIES}"
    return None


def client_pickle_problem(peer: dict[str, Any], payloads: Iterable[bytes]) -> str | None:
    """Why by-value payloads from this client would be unsafe to load here, or None.

    cloudpickle serialises ``__main__`` functions and lambdas as bytecode, which is only
    valid for the same Python minor version; loading it elsewhere can crash the interpreter.
    A by-value payload always names cloudpickle's own reconstructors, hence the byte test.
    """
    theirs_py, theirs_cp = peer.get("python"), peer.get("cloudpickle")
    if theirs_py == PYTHON and theirs_cp == cloudpickle.__version__:
        return None
    if not any(b"cloudpickle" in p for p in payloads):
        return None
    return (
        f"this task is pickled by value (it is defined in __main__, or is a lambda or closure), "
        f"and the client runs Python {theirs_py} with cloudpickle {theirs_cp} while leekd runs "
        f"Python {PYTHON} with cloudpickle {cloudpickle.__version__}; loading it could crash "
        "leekd. Move the function into an importable module, or run both on the same versions."
    )
