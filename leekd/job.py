"""The vocabulary the engine and the store share: a committed task, and how an attempt ended.

Both sides use these and neither owns them, so they live here, below both.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True, eq=False)
class Job:
    """A committed task, held as bytes until a worker needs it (None: left in the database)."""

    id: int
    name: str
    queue: str
    payload: bytes | None
    max_retries: int = 0  # 0: the server's default
    timeout: float = 0.0  # 0: the server's default
    priority: int = 0  # higher first
    run_at: float = 0.0  # Unix time it may run from; 0: now
    attempts: int = 0
    deaths: int = 0
    suspect: bool = False  # running beside others when leekd died: runs alone until cleared
    workers: list[str] | None = None  # who ran each attempt of this process's life
    lost: bool = False  # another node took it over: record nothing for it
    job_id: int = 0  # a step of this multi-step job; 0: a plain task
    step: int = 0  # which step (0 is the first)


@dataclass(slots=True)
class StepDone:
    """What a job's step left behind: saved in the commit that records its outcome."""

    workspace: str  # the job's workspace after the step, as JSON
    next_name: str | None  # the next step's dotted name; None: that was the last step


@dataclass(slots=True)
class Outcome:
    """How an attempt ended. ``final`` is False for a failure that will be retried: the
    store then records the attempt only, and the task stays queued."""

    job: Job
    ok: bool
    finished_at: datetime
    duration: float = 0.0
    result: bytes | None = None
    exc_type: str = ""
    message: str = ""
    traceback: str = ""
    step: StepDone | None = None  # set when a job's step succeeded
    worker: str = ""
    final: bool = True
    attempt: int = 0  # the attempt's number, for a retried one (the job counts on)


# The job this thread is running, and what it may know of it: ``job``, ``worker`` (its id)
# and ``allowed`` (attempts in all). Set by the worker around each task.
current = threading.local()


def result_reply(
    ok: bool, result: bytes | None, exc_type: str = "", message: str = "", traceback: str = ""
) -> dict[str, Any]:
    """A finished task's result as it travels (JSON: the pickled value in base64)."""
    if ok:
        encoded = base64.b64encode(result).decode() if result is not None else None
        return {"state": "succeeded", "result": encoded}
    return {"state": "failed", "exc_type": exc_type, "message": message, "traceback": traceback}
