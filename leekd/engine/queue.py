"""The in-memory queue between the store (which fills it) and the workers (which drain it).

Only committed tasks enter it, so dropping it on a crash loses nothing: recovery refills it
from the database. Retries wait in a heap until their backoff has passed. Waiting payloads
are held up to a budget of bytes; beyond it a job waits without its payload, which its
worker reads back from the database.

Suspects (tasks that were running beside others when leekd died, see running.py) wait in a
deque of their own and go first, one at a time, each with no other task running: a worker
takes one only once nothing runs, and takes nothing while it runs.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..job import Job


@dataclass
class QueueStats:
    waiting: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    succeeded: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)


class TaskQueue:
    """FIFO of ready jobs plus a heap of delayed retries; ``get`` blocks with a timeout."""

    def __init__(self, payload_memory: int = 256 * 1024 * 1024) -> None:
        self.payload_memory = payload_memory
        self.held = 0  # bytes of waiting payloads in memory
        self._ready: deque[Job] = deque()
        self._delayed: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._running: dict[int, Job] = {}
        self._suspects: deque[Job] = deque()
        self._alone: Job | None = None  # the suspect running now, with nothing beside it
        self.stats = QueueStats()
        self.closed = False

    def put_many(self, jobs: Iterable[Job]) -> int:
        """Queue jobs and wake as many workers."""
        with self._cond:
            n = 0
            for job in jobs:
                if job.payload is not None:
                    if self.held + len(job.payload) > self.payload_memory:
                        job.payload = None  # committed: the worker reads it back
                    else:
                        self.held += len(job.payload)
                (self._suspects if job.suspect else self._ready).append(job)
                self.stats.waiting[job.queue] += 1
                n += 1
            if n:
                self._cond.notify(n)
        return n

    def put(self, job: Job) -> None:
        self.put_many((job,))

    def put_later(self, job: Job, delay: float) -> None:
        """Give a job back after a failed attempt, to run again after ``delay`` seconds."""
        with self._cond:
            self._finished(job)
            self.stats.retried[job.queue] += 1
            self.stats.waiting[job.queue] += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), job))
            self._cond.notify()

    def get(self, timeout: float) -> Job | None:
        """The next ready job, marked running; None after ``timeout`` or once closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.closed:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready.append(heapq.heappop(self._delayed)[2])
                if self._suspects and self._alone is None and not self._running:
                    job = self._alone = self._suspects.popleft()
                    return self._take(job)
                if self._ready and self._alone is None and not self._suspects:
                    return self._take(self._ready.popleft())
                wait = deadline - now
                if self._delayed:
                    wait = min(wait, self._delayed[0][0] - now)
                if wait <= 0 and deadline <= now:
                    return None
                self._cond.wait(max(wait, 0.0005))

    def _take(self, job: Job) -> Job:
        """``job`` starts running (hold the lock)."""
        self.stats.waiting[job.queue] -= 1
        self.stats.running[job.queue] += 1
        self._running[job.id] = job
        if job.payload is not None and not job.attempts:  # retries were never counted
            self.held -= len(job.payload)
        return job

    def _finished(self, job: Job) -> None:
        """A job is no longer running (hold the lock); a suspect that got here is cleared."""
        self._running.pop(job.id, None)
        self.stats.running[job.queue] -= 1
        alone = job is self._alone
        if alone:
            self._alone, job.suspect = None, False  # it finished: it did not kill leekd
        if alone or (self._suspects and not self._running):
            self._cond.notify_all()  # the others may go now, or the next suspect

    def done(self, job: Job, ok: bool) -> None:
        with self._cond:
            self._finished(job)
            (self.stats.succeeded if ok else self.stats.failed)[job.queue] += 1

    def release(self, job: Job) -> None:
        """A running job leekd will not finish (stopping): it stays queued in the database."""
        with self._cond:
            self._finished(job)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def is_running(self, task_id: int) -> bool:
        """True while a worker runs the task (the database still says "queued" then)."""
        with self._cond:
            return task_id in self._running

    def waiting(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed) + len(self._suspects)

    def handled(self) -> int:
        with self._cond:
            return sum(self.stats.succeeded.values()) + sum(self.stats.failed.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._cond:
            s = self.stats
            names = (
                set(s.waiting) | set(s.running) | set(s.succeeded) | set(s.failed) | set(s.retried)
            )
            return {
                q: {
                    "waiting": s.waiting[q],
                    "running": s.running[q],
                    "succeeded": s.succeeded[q],
                    "failed": s.failed[q],
                    "retried": s.retried[q],
                }
                for q in sorted(names)
            }
