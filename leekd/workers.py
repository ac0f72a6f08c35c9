"""Worker threads: take a job, load it, run it, report the outcome to the store.

``Worker.run_one`` does one job and is what tests call directly; ``run`` just loops on it
until the stop event is set. A task can raise anything, ``SystemExit`` included: the worker
records it and goes on.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import traceback
from typing import Any

import cloudpickle
from django.db import close_old_connections, connections
from django.utils import timezone

from .conf import Config
from .queue import Job, TaskQueue
from .store import Outcome, Store

log = logging.getLogger("leekd.worker")

MAX_MESSAGE = 10_000
MAX_TRACEBACK = 100_000
MAX_RESULT = 1024 * 1024  # larger results are not kept (the task still succeeded)


def _pickled_result(result: Any) -> bytes | None:
    if result is None:
        return None
    try:
        data = pickle.dumps(result, protocol=5)
    except Exception:
        return None
    return data if len(data) <= MAX_RESULT else None


class Worker(threading.Thread):
    def __init__(self, index: int, work: TaskQueue, store: Store, config: Config) -> None:
        super().__init__(name=f"leekd-worker-{index}", daemon=True)
        self.work = work
        self.store = store
        self.config = config
        self.stop_event = threading.Event()
        self.current: Job | None = None
        self.started_at = 0.0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                job = self.work.get(timeout=0.25)
                if job is not None:
                    self.run_one(job)
        finally:
            connections.close_all()

    def run_one(self, job: Job) -> None:
        self.current, self.started_at = job, time.monotonic()
        job.attempts += 1
        log.info("task %d %s started (attempt %d)", job.id, job.name, job.attempts)
        try:
            close_old_connections()
            self._execute(job)
        finally:
            close_old_connections()
            self.current = None

    def _execute(self, job: Job) -> None:
        t0 = time.perf_counter()
        try:
            fn, args, kwargs = cloudpickle.loads(job.payload)
        except BaseException as exc:  # noqa: BLE001 - whatever the payload does, record it
            # Loading will not succeed on a retry either (module missing, bad pickle).
            self._fail(job, exc, t0, prefix="could not load the task: ", retry=False)
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
            self._fail(job, exc, t0)
            return
        duration = time.perf_counter() - t0
        self.work.done(job, ok=True)
        self.store.submit_outcome(
            Outcome(job, True, timezone.now(), duration, result=_pickled_result(result))
        )
        log.info("task %d %s succeeded in %.1f ms", job.id, job.name, duration * 1000)

    def _fail(
        self, job: Job, exc: BaseException, t0: float, prefix: str = "", retry: bool = True
    ) -> None:
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
                _short(exc),
                delay,
            )
            self.work.put_later(job, delay)
            return
        tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:]
        self.work.done(job, ok=False)
        self.store.submit_outcome(
            Outcome(
                job,
                False,
                timezone.now(),
                duration,
                exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                message=(prefix + _short(exc, MAX_MESSAGE)),
                traceback=tb,
            )
        )
        log.warning(
            "task %d %s failed after %d attempt(s) in %.1f ms: %s: %s",
            job.id,
            job.name,
            job.attempts,
            duration * 1000,
            type(exc).__name__,
            _short(exc),
        )


def _short(exc: BaseException, limit: int = 300) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable exception>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
