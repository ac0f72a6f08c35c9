"""The in-memory queue between the store (which fills it) and the workers (which drain it).

Only committed tasks enter it, so dropping it on a crash loses nothing: recovery refills it
from the database. Ready tasks run highest priority first, first in first out among equals;
tasks due later (a ``run_at``, or a retry's backoff) wait in a timer heap, which ``get``
looks at when it takes the next job: nothing polls.

Plain pushes (priority 0, due now) take a deque; only the others pay for a heap.

Waiting payloads are held up to a budget of bytes; beyond it a job waits without its
payload, which its worker reads back from the database.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..job import Job


@dataclass
class QueueStats:
    waiting: Counter[str] = field(default_factory=Counter)
    scheduled: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    succeeded: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)


class Observer(Protocol):
    """Told when a job starts or is given back for a retry (metrics); called outside the lock."""

    def started(self, job: Job) -> None: ...

    def retried_later(self, job: Job) -> None: ...


class TaskQueue:
    """Ready jobs by priority plus a heap of timed ones; ``get`` blocks with a timeout."""

    def __init__(self, payload_memory: int = 256 * 1024 * 1024) -> None:
        self.payload_memory = payload_memory
        self.payload_bytes = 0  # bytes of waiting payloads in memory
        self._suspects: deque[Job] = deque()
        self._alone: Job | None = None  # the suspect running now, with nothing beside it
        self._ready: deque[Job] = deque()  # priority 0
        self._ranked: list[tuple[int, int, Job]] = []  # (-priority, seq, job), the others
        self._timed: list[tuple[float, int, Job, bool]] = []  # (due, seq, job, scheduled)
        self._scheduled = 0  # entries of _timed that wait for their run_at (not retries)
        self._seq = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._running: dict[int, Job] = {}
        self.stats = QueueStats()
        self.closed = False
        self.held = False  # no job handed out: this node may have lost its tasks
        self.held_for_suspects = False  # another pool's suspects run alone first
        self.on_suspects_done: Callable[[], object] | None = None
        self.observer: Observer | None = None  # None unless metrics are on: nothing to pay

    def put_many(self, jobs: Iterable[Job]) -> int:
        """Queue jobs and wake as many workers as became ready."""
        with self._cond:
            n = 0
            ready = 0
            now = 0.0
            first_due = self._timed[0][0] if self._timed else None
            for job in jobs:
                n += 1
                if job.payload is not None:
                    if self.payload_bytes + len(job.payload) > self.payload_memory:
                        job.payload = None  # committed: the worker reads it back
                    else:
                        self.payload_bytes += len(job.payload)
                if job.suspect:
                    self._suspects.append(job)
                    self.stats.waiting[job.queue] += 1
                    ready += 1
                    continue
                if job.run_at:
                    now = now or time.time()
                    if job.run_at > now:
                        self._later(job, job.run_at - now, scheduled=True)
                        continue
                if job.priority:
                    heapq.heappush(self._ranked, (-job.priority, next(self._seq), job))
                else:
                    self._ready.append(job)
                self.stats.waiting[job.queue] += 1
                ready += 1
            if ready:
                self._cond.notify(ready)
            elif n and self._timed and (first_due is None or self._timed[0][0] < first_due):
                # Only a job due before every other timed one changes how long a sleeping
                # worker waits: a worker wakes for it, not for every delayed push.
                self._cond.notify()
        return n

    def put(self, job: Job) -> None:
        self.put_many((job,))

    def _later(self, job: Job, delay: float, scheduled: bool) -> None:
        due = time.monotonic() + delay
        heapq.heappush(self._timed, (due, next(self._seq), job, scheduled))
        if scheduled:
            self._scheduled += 1
            self.stats.scheduled[job.queue] += 1
        else:
            self.stats.waiting[job.queue] += 1

    def put_later(self, job: Job, delay: float) -> None:
        """Give a job back after a failed attempt, to run again after ``delay`` seconds."""
        with self._cond:
            self._finished(job)
            self.stats.retried[job.queue] += 1
            self._later(job, delay, scheduled=False)
            self._cond.notify()
        if self.observer is not None:
            self.observer.retried_later(job)

    def _promote(self, now: float) -> None:
        """Move every timed job that is due to the ready side."""
        timed = self._timed
        while timed and timed[0][0] <= now:
            _, seq, job, scheduled = heapq.heappop(timed)
            if scheduled:
                self._scheduled -= 1
                self.stats.scheduled[job.queue] -= 1
                self.stats.waiting[job.queue] += 1
            if job.priority:
                heapq.heappush(self._ranked, (-job.priority, seq, job))
            else:
                self._ready.append(job)

    def _pop_ready(self) -> Job | None:
        ranked = self._ranked
        if ranked and (ranked[0][0] < 0 or not self._ready):
            return heapq.heappop(ranked)[2]
        if self._ready:
            return self._ready.popleft()
        return None

    def get(self, timeout: float) -> Job | None:
        """The next ready job, marked running; None after ``timeout`` or once closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.closed:
                    return None
                now = time.monotonic()
                if self.held or self.held_for_suspects:
                    if deadline <= now:
                        return None
                    self._cond.wait(deadline - now)
                    continue
                if self._timed and self._timed[0][0] <= now:
                    self._promote(now)
                if self._suspects and self._alone is None and not self._running:
                    job = self._alone = self._suspects.popleft()
                    self._take(job)
                    break
                if self._alone is None and not self._suspects:
                    ready = self._pop_ready()
                    if ready is not None:
                        job = self._take(ready)
                        break
                wait = deadline - now
                if self._timed:
                    wait = min(wait, self._timed[0][0] - now)
                if wait <= 0 and deadline <= now:
                    return None
                self._cond.wait(max(wait, 0.0005))
        if self.observer is not None:
            self.observer.started(job)
        return job

    def _take(self, job: Job) -> Job:
        """``job`` starts running (hold the lock)."""
        self.stats.waiting[job.queue] -= 1
        self.stats.running[job.queue] += 1
        self._running[job.id] = job
        if job.payload is not None and not job.attempts:  # retries were never counted
            self.payload_bytes -= len(job.payload)
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
        if alone and not self._suspects and self.on_suspects_done is not None:
            self.on_suspects_done()

    def done(self, job: Job, ok: bool) -> None:
        with self._cond:
            self._finished(job)
            (self.stats.succeeded if ok else self.stats.failed)[job.queue] += 1

    def release(self, job: Job) -> None:
        """A running job leekd will not finish (stopping): it stays queued in the database."""
        with self._cond:
            self._finished(job)

    def take(self, task_id: int) -> Job | None:
        """Remove a waiting job (due, scheduled, or between retries) so it never runs.

        None if it is not waiting here: running, finished, or never seen. Workers take jobs
        under the same lock, so a cancel and a worker never both get one. A scan, since
        cancels are rare and the hot path should not pay for an index.
        """
        with self._cond:
            for i, job in enumerate(self._ready):
                if job.id == task_id:
                    del self._ready[i]
                    self.stats.waiting[job.queue] -= 1
                    return job
            for i, (_, _, job) in enumerate(self._ranked):
                if job.id == task_id:
                    self._remove(self._ranked, i)
                    self.stats.waiting[job.queue] -= 1
                    return job
            for i, (_, _, job, scheduled) in enumerate(self._timed):
                if job.id == task_id:
                    self._remove(self._timed, i)
                    if scheduled:
                        self._scheduled -= 1
                        self.stats.scheduled[job.queue] -= 1
                    else:
                        self.stats.waiting[job.queue] -= 1
                    return job
        return None

    def cancelled(self, job: Job) -> None:
        """A job ``take`` removed is recorded as cancelled: count it."""
        with self._cond:
            self.stats.cancelled[job.queue] += 1

    @staticmethod
    def _remove(heap: list[Any], i: int) -> None:
        heap[i] = heap[-1]
        heap.pop()
        heapq.heapify(heap)

    def wait_for_suspects(self, held: bool) -> None:
        """Hand out nothing (or again) while another pool runs its suspects alone."""
        with self._cond:
            self.held_for_suspects = held
            self._cond.notify_all()

    def hold(self, held: bool) -> None:
        """Stop (or resume) handing out jobs, keeping them."""
        with self._cond:
            self.held = held
            self._cond.notify_all()

    def drop(self, ids: set[int]) -> list[Job]:
        """Forget the jobs with these ids, waiting or running; returns the running ones.

        For a node whose tasks another node took over: it must not start them, and what
        it is running it stops where it can (the caller interrupts those).
        """
        with self._cond:
            kept: deque[Job] = deque()
            for job in self._ready:
                if job.id in ids:
                    job.lost = True
                    self.stats.waiting[job.queue] -= 1
                else:
                    kept.append(job)
            self._ready = kept
            ranked: list[tuple[int, int, Job]] = []
            for entry in self._ranked:
                if entry[2].id in ids:
                    entry[2].lost = True
                    self.stats.waiting[entry[2].queue] -= 1
                else:
                    ranked.append(entry)
            heapq.heapify(ranked)
            self._ranked = ranked
            timed: list[tuple[float, int, Job, bool]] = []
            for slot in self._timed:
                job, scheduled = slot[2], slot[3]
                if job.id not in ids:
                    timed.append(slot)
                    continue
                job.lost = True
                if scheduled:
                    self._scheduled -= 1
                    self.stats.scheduled[job.queue] -= 1
                else:
                    self.stats.waiting[job.queue] -= 1
            heapq.heapify(timed)
            self._timed = timed
            running = [job for i, job in self._running.items() if i in ids]
            for job in running:
                job.lost = True
            return running

    def known(self) -> set[int]:
        """Ids of every job held here, waiting, timed or running."""
        with self._cond:
            ids = {job.id for job in self._ready}
            ids.update(entry[2].id for entry in self._ranked)
            ids.update(entry[2].id for entry in self._timed)
            ids.update(self._running)
            return ids

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def is_running(self, task_id: int) -> bool:
        """True while a worker runs the task (the database still says "queued" then)."""
        with self._cond:
            return task_id in self._running

    def waiting(self) -> int:
        """Tasks that are due (or retrying after a backoff); not the scheduled ones."""
        with self._cond:
            return (
                len(self._ready)
                + len(self._ranked)
                + len(self._timed)
                + len(self._suspects)
                - self._scheduled
            )

    def scheduled(self) -> int:
        """Tasks waiting for their ``run_at``."""
        with self._cond:
            return self._scheduled

    def handled(self) -> int:
        with self._cond:
            return sum(self.stats.succeeded.values()) + sum(self.stats.failed.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._cond:
            s = self.stats
            kinds = (
                "waiting", "scheduled", "running", "succeeded", "failed", "retried", "cancelled",
            )  # fmt: skip
            names: set[str] = set()
            for kind in kinds:
                names |= set(getattr(s, kind))
            return {q: {kind: getattr(s, kind)[q] for kind in kinds} for q in sorted(names)}
