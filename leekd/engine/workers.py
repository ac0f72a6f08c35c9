"""Worker threads: take a job, load it, run it, report the outcome to the store.

``Worker.run_one`` does one job and is what tests call directly; ``run`` just loops on it
until the stop event is set. A task can raise anything, ``SystemExit`` included: the worker
records it and goes on. A task over its time limit gets ``TaskTimeout`` raised inside its
thread by the watchdog; a thread that does not come back is retired (see watchdog.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created
from django.utils import timezone

from ..conf import Config
from ..job import Job, Outcome, current
from .interrupt import cancel_pending, raise_in_thread
from .queue import TaskQueue
from .running import RunningSlots
from .steps import JobSteps

Report = Callable[[Outcome], object]  # hands an outcome to whoever records it
Load = Callable[[int], bytes]  # reads a task's payload that waited in the database

log = logging.getLogger("leekd.worker")

MAX_MESSAGE = 10_000
MAX_TRACEBACK = 100_000
MAX_RESULT = 1024 * 1024  # larger results are not kept (the task still succeeded)


_thread_db = threading.local()


def _connected(sender: Any, connection: Any, **kwargs: Any) -> None:
    _thread_db.used = True  # runs in the thread that opened the connection


connection_created.connect(_connected, weak=False, dispatch_uid="leekd.workers")


def tidy_connections() -> None:
    """``close_old_connections()``, skipped in a thread that never opened a connection.

    Django's own call costs several microseconds even when there is nothing to close, which
    is a large share of a short task's overhead.
    """
    if getattr(_thread_db, "used", True):  # unknown in a new thread: look once
        close_old_connections()
        _thread_db.used = any(
            c.connection is not None for c in connections.all(initialized_only=True)
        )


class TaskTimeout(Exception):
    """Raised inside a task's thread when it runs past its time limit."""


class TaskTakenOver(BaseException):
    """Raised inside a task's thread when another node took the task over.

    A BaseException, so a task's own ``except Exception`` does not swallow it.
    """


def _pickled_result(result: Any) -> bytes | None:
    if result is None:
        return None
    try:
        data = pickle.dumps(result, protocol=5)
    except Exception:
        return None
    return data if len(data) <= MAX_RESULT else None


def as_batch_work() -> None:
    """Put the calling thread under Linux's ``SCHED_BATCH`` policy (elsewhere: nothing).

    A worker woken for a job then does not preempt the thread that woke it, leekd's event
    loop, in the middle of answering pushes: it runs when a CPU is free or the loop's turn on
    one ends. Its share of the CPU is the same as before; only the preemption on wake-up goes.
    Threads and processes that a task starts inherit the policy.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or a sandbox that forbids it
        pass


class Worker(threading.Thread):
    def __init__(
        self,
        index: int,
        work: TaskQueue,
        report: Report,
        config: Config,
        slots: RunningSlots | None = None,
        load: Load | None = None,
        steps: JobSteps | None = None,
        pool: str = "default",
    ) -> None:
        label = "" if pool == "default" else f"{pool[:20]}-"
        super().__init__(name=f"leekd-worker-{label}{index}", daemon=True)
        self.load = load
        self.index = index
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}/{index}"  # worker_ids
        self.pool = pool  # the queue whose tasks this thread runs (default: every one, shared)
        self.work = work
        self.report = report
        self.config = config
        self.slots = slots
        self.steps = steps  # how to run a multi-step job's step
        self.stop_event = threading.Event()
        self.current: Job | None = None
        self.started_at = 0.0
        self.deadline: float | None = None  # monotonic; set while a task with a limit runs
        self.interrupted = False  # TaskTimeout was raised in this thread
        self.retired = False  # given up on by the watchdog: report nothing more
        self.claimed = False  # this thread has taken on reporting the current job
        self.lock = threading.RLock()

    def run(self) -> None:
        as_batch_work()
        try:
            while not self.stop_event.is_set() and not self.retired:
                job = self.work.get(timeout=0.25)
                if job is None:
                    continue
                try:
                    self.run_one(job)
                except TaskTimeout:
                    # The limit fired just as the task ended, outside its own code.
                    if not self.claimed and not self.retired:
                        exc = TaskTimeout("task exceeded its time limit")
                        record_failure(self.work, self.report, job, exc, 0.0, worker=self.worker_id)
                except TaskTakenOver:
                    if not self.claimed:  # fired outside the task's code
                        self.work.release(job)
        finally:
            connections.close_all()

    def run_one(self, job: Job) -> None:
        limit = job.timeout or self.config.timeout
        with self.lock:
            self.current, self.started_at = job, time.monotonic()
            self.deadline = self.started_at + limit if limit else None
            self.interrupted = False
            self.claimed = False
        job.attempts += 1
        if job.workers is None:
            job.workers = []
        job.workers.append(self.worker_id)
        current.job, current.worker = job, self.worker_id
        current.allowed = job.max_retries or self.config.max_retries
        if self.slots is not None:
            self.slots.set(self.index, job.id)
        log.info("task %d %s started (attempt %d)", job.id, job.name, job.attempts)
        try:
            tidy_connections()
            self._execute(job, limit)
        finally:
            with self.lock:
                self.current, self.deadline = None, None
            current.job = None
            if self.slots is not None and not self.retired:
                self.slots.set(self.index, 0)
            tidy_connections()

    def _execute(self, job: Job, limit: float) -> None:
        t0 = time.perf_counter()
        payload = job.payload
        if payload is None and not job.job_id:
            try:
                if self.load is None:
                    raise LookupError("its payload was left in the database and nothing reads it")
                payload = job.payload = self.load(job.id)
            except Exception as exc:  # the database is failing: retried, as a failure would be
                self._fail(job, exc, t0, prefix="could not read the task from the database: ")
                return
        try:
            if job.job_id:
                if self.steps is None:
                    raise RuntimeError("this leekd runs no multi-step jobs")
                fn, args, kwargs = self.steps.call(job)
            else:
                fn, args, kwargs = cloudpickle.loads(payload or b"")
        except BaseException as exc:  # noqa: BLE001 - whatever the payload does, record it
            # Loading will not succeed on a retry either (module missing, bad pickle).
            # A step loads from the database, which may be busy: that one is tried again.
            self._fail(job, exc, t0, prefix=load_failure(exc), retry=bool(job.job_id))
            return
        try:
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                # An async task gets an event loop of its own on this worker's thread: it
                # holds this worker while it runs, and no other task's loop or thread.
                result = asyncio.run(result)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
            if isinstance(exc, TaskTimeout):
                exc = TaskTimeout(f"task exceeded its time limit of {limit:g}s")
            self._fail(job, exc, t0)
            return
        step = None
        if job.job_id:
            assert self.steps is not None
            try:
                step = self.steps.done(args[0])
            except Exception as exc:  # a workspace that is not JSON fails the step
                self._fail(job, exc, t0)
                return
        duration = time.perf_counter() - t0
        if not self._claim() or self._lost(job):
            return
        self.work.done(job, ok=True)
        self.report(
            Outcome(
                job,
                True,
                timezone.now(),
                duration,
                result=_pickled_result(result),
                worker=self.worker_id,
                step=step,
            )
        )
        log.info("task %d %s succeeded in %.1f ms", job.id, job.name, duration * 1000)

    def _lost(self, job: Job) -> bool:
        """True if another node took the job over: it is forgotten here, nothing recorded."""
        if not job.lost:
            return False
        self.work.release(job)
        log.warning(
            "task %d %s was taken over by another node; nothing recorded here", job.id, job.name
        )
        return True

    def _claim(self) -> bool:
        """True if this thread may still report its job (the watchdog has not taken it over)."""
        with self.lock:
            self.deadline = None  # no timeout may hit us from here on
            if self.interrupted or (self.current is not None and self.current.lost):
                cancel_pending(self)  # the task ended before the interrupt fired
            self.claimed = not self.retired
            return self.claimed

    def _fail(
        self, job: Job, exc: BaseException, t0: float, prefix: str = "", retry: bool = True
    ) -> None:
        if not self._claim() or self._lost(job):
            return
        duration = time.perf_counter() - t0
        attempts = job.max_retries or self.config.max_retries
        if retry and job.attempts < attempts and self.stop_event.is_set():
            log.info(
                "task %d %s failed while stopping; it stays queued for the next start",
                job.id,
                job.name,
            )
            self.work.release(job)
            return
        if retry and job.attempts < attempts:
            delay = self.config.retry_delay * (2 ** (job.attempts - 1))
            log.warning(
                "task %d %s failed (attempt %d of %d, %s: %s); retrying in %.2fs",
                job.id,
                job.name,
                job.attempts,
                attempts,
                type(exc).__name__,
                short(exc),
                delay,
            )
            self.report(failure(job, exc, duration, "", self.worker_id, final=False))
            self.work.put_later(job, delay)
            return
        record_failure(self.work, self.report, job, exc, duration, prefix, self.worker_id)


def failure(
    job: Job, exc: BaseException, duration: float, prefix: str, worker: str, final: bool = True
) -> Outcome:
    return Outcome(
        job,
        False,
        timezone.now(),
        duration,
        exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=(prefix + short(exc, MAX_MESSAGE)),
        traceback="".join(traceback.format_exception(exc))[-MAX_TRACEBACK:],
        worker=worker,
        final=final,
        attempt=job.attempts,
    )


def stop_lost(workers: list[Worker], lost: list[Job]) -> int:
    """Interrupt the workers running jobs another node took over; returns how many."""
    ids = {job.id for job in lost}
    n = 0
    for w in list(workers):
        with w.lock:
            job = w.current
            if job is not None and job.id in ids and not w.claimed and not w.retired:
                n += raise_in_thread(w, TaskTakenOver)
    return n


def record_failure(
    work: TaskQueue,
    report: Report,
    job: Job,
    exc: BaseException,
    duration: float,
    prefix: str = "",
    worker: str = "",
) -> None:
    """Record a job's final failure (from its worker, or from the watchdog)."""
    work.done(job, ok=False)
    report(failure(job, exc, duration, prefix, worker))
    log.warning(
        "task %d %s failed after %d attempt(s) in %.1f ms: %s: %s",
        job.id,
        job.name,
        job.attempts,
        duration * 1000,
        type(exc).__name__,
        short(exc),
    )


def load_failure(exc: BaseException) -> str:
    """The prefix of a load failure's message; for an import problem, where leekd looked."""
    if isinstance(exc, ImportError | AttributeError):
        where = ", ".join(p or "." for p in sys.path[:6])
        return f"could not load the task (leekd imports from: {where}): "
    return "could not load the task: "


def short(exc: BaseException, limit: int = 300) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable exception>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
