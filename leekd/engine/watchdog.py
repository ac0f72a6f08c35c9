"""The watchdog thread: enforces task time limits and keeps the worker pool at full strength.

At a task's deadline it raises ``TaskTimeout`` inside the worker's thread (as Dramatiq's
time limit does); that only takes effect when the thread next runs Python code. If the
thread has not come back ``kill_after`` seconds later (stuck in C, a blocking call), the
watchdog records the task as failed, retires the thread (whatever it does later is
ignored) and starts a replacement so capacity holds. It also replaces worker threads that
died for any other reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .interrupt import raise_in_thread
from .workers import TaskTimeout, Worker, record_failure

log = logging.getLogger("leekd.worker")


class Watchdog(threading.Thread):
    def __init__(
        self,
        workers: list[Worker],
        make_worker: Callable[[Worker], Worker],  # a replacement for this one
        kill_after: float = 2.0,
        interval: float = 0.05,
    ) -> None:
        super().__init__(name="leekd-watchdog", daemon=True)
        self.workers = workers
        self.make_worker = make_worker
        self.kill_after = kill_after
        self.interval = interval
        self.stop_event = threading.Event()
        self.retired = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """One pass over the workers (tests call it directly)."""
        for i, w in enumerate(list(self.workers)):
            if self.stop_event.is_set():
                return
            if not w.is_alive() and not w.stop_event.is_set() and not w.retired:
                log.error("worker %s died; starting a replacement", w.name)
                self._replace(i, w)
                continue
            if not w.lock.acquire(timeout=0.1):
                continue
            try:
                job, deadline = w.current, w.deadline
                if job is None or deadline is None or now < deadline:
                    continue
                if not w.interrupted:
                    w.interrupted = True
                    log.warning("task %d %s: time limit reached, interrupting it", job.id, job.name)
                    raise_in_thread(w, TaskTimeout)
                    continue
                if now < deadline + self.kill_after:
                    continue
                # The thread did not come back: give up on it.
                w.retired = True
                w.current = w.deadline = None
            finally:
                w.lock.release()
            limit = now - w.started_at
            log.error(
                "task %d %s did not stop %.1fs after its time limit; retiring %s",
                job.id,
                job.name,
                self.kill_after,
                w.name,
            )
            record_failure(
                w.work,
                w.report,
                job,
                TaskTimeout(f"task exceeded its time limit and did not stop (ran {limit:.1f}s)"),
                limit,
                worker=w.worker_id,
            )
            if w.slots is not None:
                w.slots.set(w.index, 0)
            self.retired += 1
            self._replace(i, w)

    def _replace(self, i: int, old: Worker) -> None:
        new = self.make_worker(old)
        self.workers[i] = new
        new.start()
