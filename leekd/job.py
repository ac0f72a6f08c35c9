"""The vocabulary the engine and the store share: a committed task, and how an attempt ended.

Both sides use these and neither owns them, so they live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
    job: Job
    ok: bool
    finished_at: datetime
    duration: float = 0.0
    result: bytes | None = None
    exc_type: str = ""
    message: str = ""
    traceback: str = ""
    step: StepDone | None = None  # set when a job's step succeeded
