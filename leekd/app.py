"""Leekd: the store, queue, workers and server put together, with start and phased stop.

Stop order (each step logged, each wait bounded): stop accepting → refuse new pushes and
answer the ones in flight → close connections → let running tasks finish within the grace
period → write the remaining outcomes → exit. Tasks still waiting stay queued in the
database and run after the next start.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import cloudpickle

from leek import __version__
from leek.protocol import State, TaskRecord

from .conf import Config
from .listen import Listener
from .notify import sd_notify
from .queue import Job, TaskQueue
from .running import RunningSlots, default_path
from .server import (
    PYTHON,
    AuthLog,
    LeekConnection,
    RefusalLog,
    client_pickle_problem,
    make_pool,
    resolve_pushes,
)
from .store import OUTCOME_DELAY, Store
from .watchdog import Watchdog
from .workers import Worker

log = logging.getLogger("leekd.server")

RECOVER_CHUNK = 5000


class Leekd:
    def __init__(self, config: Config, secret: bytes) -> None:
        self.config = config
        self.secret = secret
        self.work = TaskQueue()
        self.store: Store | None = None
        self.workers: list[Worker] = []
        self.connections: set[LeekConnection] = set()  # accepted and counted
        self.open_protocols: set[LeekConnection] = set()  # every one not yet lost, refused too
        self.auth_log = AuthLog()
        self.refusal_log = RefusalLog()
        self.listener: Listener | None = None
        self.pool = make_pool()
        self.draining = False
        self.force = False
        self.started = time.time()
        self.port: int | None = None
        self.recovered = 0
        self.poisoned = 0
        self.slots: RunningSlots | None = None
        self.watchdog: Watchdog | None = None
        self._next_slot = 0
        self.stopped = threading.Event()  # set once a stop has finished
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._turn: list[tuple[tuple[TaskRecord, ...], Any]] = []  # pushes of this loop turn
        self._outcome_timer: asyncio.TimerHandle | None = None

    # ---- what the server reports

    def server_info(self) -> dict[str, Any]:
        return {"leek": __version__, "python": PYTHON, "cloudpickle": cloudpickle.__version__}

    def version_problem(self, peer: dict[str, Any], tasks: tuple[TaskRecord, ...]) -> str | None:
        return client_pickle_problem(peer, (t.payload for t in tasks))

    def busy(self) -> int:
        return sum(1 for w in self.workers if w.current is not None)

    def ping_info(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.draining else "ok",
            "worker": "off" if self.draining else "on",
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "workers": len(self.workers),
            "busy": self.busy(),
            "waiting": self.work.waiting(),
            "database": "ok" if self.store is None or self.store.healthy else self.store.last_error,
        }

    def stats(self) -> dict[str, Any]:
        busy = self.busy()
        return {
            "version": __version__,
            "uptime": round(time.time() - self.started, 3),
            "queues": self.work.snapshot(),
            "workers": {"total": len(self.workers), "busy": busy, "idle": len(self.workers) - busy},
            "waiting": self.work.waiting(),
            "handled": self.work.handled(),
            "recovered": self.recovered,
            "poisoned": self.poisoned,
            "connections": len(self.connections),
            "store": {
                "healthy": self.store.healthy if self.store else True,
                "commits": self.store.commits if self.store else 0,
                "commits_on_loop": self.store.commits_on_loop if self.store else 0,
                "backlog": self.store.backlog if self.store else 0,
            },
        }

    # ---- lifecycle

    def recover(self) -> int:
        """Put every task with no outcome back on the queue; returns how many."""
        from django.db import connection

        try:
            return self._recover()
        finally:
            connection.close()

    def _recover(self) -> int:
        from .models import QueuedTask

        if self.slots is not None:
            dead = self.slots.read_dead()
            if dead:
                self._count_deaths(dead)
            self.slots.clear()
        n = 0
        rows = (
            QueuedTask.objects.unfinished()
            .order_by("id")
            .values_list("id", "name", "queue", "payload", "max_retries", "timeout", "deaths")
            .iterator(chunk_size=RECOVER_CHUNK)
        )
        batch: list[Job] = []
        for tid, name, queue, payload, retries, timeout, deaths in rows:
            batch.append(Job(tid, name, queue, bytes(payload), retries, timeout, deaths=deaths))
            if len(batch) >= RECOVER_CHUNK:
                self.work.put_many(batch)
                n += len(batch)
                batch = []
        self.work.put_many(batch)
        n += len(batch)
        self.recovered = n
        return n

    def _count_deaths(self, ids: list[int]) -> None:
        """Blame the tasks that were running when the last leekd died; fail repeat offenders."""
        from django.db import transaction
        from django.db.models import F
        from django.utils import timezone

        from .models import FailedTask, QueuedTask

        limit = self.config.max_deaths
        with transaction.atomic():
            QueuedTask.objects.unfinished().filter(pk__in=ids).update(deaths=F("deaths") + 1)
            rows = list(QueuedTask.objects.unfinished().filter(pk__in=ids))
            for row in rows:
                if row.deaths < limit:
                    log.warning(
                        "task %d %s was running when leekd died (%d of %d allowed); running it again",
                        row.pk,
                        row.name,
                        row.deaths,
                        limit,
                    )
                    continue
                message = f"leekd died while running it {row.deaths} times"
                FailedTask.objects.create(
                    task=row,
                    failed_at=timezone.now(),
                    attempts=max(row.attempts, row.deaths),
                    exc_type="leekd.WorkerDied",
                    message=message,
                    traceback="",
                )
                QueuedTask.objects.filter(pk=row.pk).update(state="failed")
                self.poisoned += 1
                log.error("task %d %s: %s; recorded as failed", row.pk, row.name, message)

    def push(self, records: tuple[TaskRecord, ...], token: Any) -> None:
        """On the event loop: commit with every other push read in this loop turn.

        The commit runs as the loop's next callback, after the turn's reads, so each turn's
        pushes share one transaction: group commit sized by what arrived, with no timer.
        """
        assert self._loop is not None
        if not self._turn:
            self._loop.call_soon(self._commit_turn)
        self._turn.append((records, token))

    def _commit_turn(self) -> None:
        turn, self._turn = self._turn, []
        assert self.store is not None and self._loop is not None
        self.store.commit_here(turn, resolve_pushes)
        # Outcomes due soon are committed now, just after these answers went out: while
        # their clients read them and send again, rather than in the middle of a push.
        timer = self._outcome_timer
        if timer is not None and timer.when() - self._loop.time() < OUTCOME_DELAY / 2:
            timer.cancel()
            self._commit_outcomes()

    def _outcomes_due(self) -> None:
        """Outcomes are waiting: commit them in a while, with the ones that follow."""
        if self._outcome_timer is None and self._loop is not None:
            self._outcome_timer = self._loop.call_later(OUTCOME_DELAY, self._commit_outcomes)

    def _commit_outcomes(self) -> None:
        self._outcome_timer = None
        assert self.store is not None
        self.store.commit_here((), resolve_pushes)

    def _new_worker(self) -> Worker:
        assert self.store is not None
        worker = Worker(self._next_slot, self.work, self.store, self.config, self.slots)
        self._next_slot += 1
        return worker

    def _open_slots(self) -> RunningSlots:
        from django.conf import settings
        from django.db import connection

        path = self.config.running_file or default_path(
            str(connection.settings_dict.get("NAME") or ""),
            embedded=getattr(settings, "LEEK_EMBEDDED", False),
        )
        return RunningSlots(path)

    async def serve(self, ready: Callable[[Leekd], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        self.listener = Listener(self.config)  # bad TLS files or a taken socket fail here

        def on_pushed(items: list[Any]) -> None:
            loop.call_soon_threadsafe(resolve_pushes, items)

        self.store = Store(self.work, on_pushed)
        self.store.outcomes_due = lambda: loop.call_soon_threadsafe(self._outcomes_due)
        self.slots = self._open_slots()
        t0 = time.monotonic()
        recovered = await loop.run_in_executor(self.pool, self.recover)
        if recovered:
            log.info("recovered %d unfinished tasks in %.2fs", recovered, time.monotonic() - t0)
        self.store.start()
        self.workers = [self._new_worker() for _ in range(self.config.workers)]
        for w in self.workers:
            w.start()
        self.watchdog = Watchdog(self.workers, self._new_worker, self.config.kill_after)
        self.watchdog.start()
        server = await self.listener.start(lambda: LeekConnection(self))
        self.port = self.listener.port
        log.info(
            "leekd %s listening on %s (pid %d, %d workers, Python %s)",
            __version__,
            self.listener.where,
            os.getpid(),
            self.config.workers,
            PYTHON,
        )
        trim_heap()  # start-up and recovery garbage, handed back before the long idle
        sd_notify(f"READY=1\nSTATUS=listening on {self.listener.where}\nMAINPID={os.getpid()}")
        sweeper = asyncio.create_task(self._sweep())
        from .maintenance import start_retention  # needs Django's app registry, ready by now

        retention = start_retention(self)
        if ready is not None:
            ready(self)
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            if retention is not None:
                retention.cancel()
            await self._shutdown(server)
            self.stopped.set()

    async def _sweep(self) -> None:
        """Close connections that never finished the handshake, or went silent.

        The handshake is timed from the connect, so trickling bytes cannot stretch it; an
        authenticated connection from its last complete frame, so can a half-sent frame not.
        A connection still there one round after its close (a peer that reads nothing, so
        the answers cannot be flushed) is aborted.
        """
        cfg = self.config
        interval = min(1.0, cfg.handshake_timeout / 4, cfg.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for c in list(self.connections):
                if c.transport is None or c.pending:
                    continue
                if c.conn.state is State.READY:
                    silent, limit = now - c.last_active, cfg.idle_timeout
                else:
                    silent, limit = now - c.opened, cfg.handshake_timeout
                if silent <= limit:
                    continue
                if c.transport.is_closing():
                    c.transport.abort()
                else:
                    log.info("closing %s: silent for %.1fs", c.peer, silent)
                    c.transport.close()

    def request_stop(self, force: bool = False) -> None:
        """Ask for a graceful stop (thread-safe); a second call, or ``force``, skips the grace."""
        if self._loop is None or self._stop is None:
            return
        if force or self._stop.is_set():
            self.force = True
        try:
            self._loop.call_soon_threadsafe(self._stop.set)
        except RuntimeError:
            pass  # the loop has already closed: leekd is stopped

    async def _shutdown(self, server: asyncio.Server) -> None:
        assert self.store is not None
        sd_notify("STOPPING=1")
        log.info("stopping: no longer accepting connections")
        server.close()
        if self.listener is not None:
            self.listener.close()  # and remove our Unix socket file
        self.draining = True
        deadline = time.monotonic() + 5.0
        while any(c.pending for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for c in list(self.connections):
            if c.transport:
                c.transport.close()
        # A transport closes on the loop's next turns; let it, or its socket leaks at exit.
        deadline = time.monotonic() + 1.0
        while self.open_protocols and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for c in list(self.open_protocols):  # a TLS peer that never completes the close
            if c.transport:
                c.transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)
        if getattr(server, "_waiters", ()) is None:
            # CPython 3.13.0: a transport accepted just before close() and finalised later
            # calls Server._wakeup() a second time, which then iterates None.
            server._waiters = []  # type: ignore[attr-defined]
        log.info(
            "stopping: waiting up to %.0fs for %d running task(s)", self.config.grace, self.busy()
        )
        for w in self.workers:
            w.stop_event.set()
        self.work.close()
        deadline = time.monotonic() + self.config.grace
        while (
            any(w.is_alive() for w in self.workers)
            and time.monotonic() < deadline
            and not self.force
        ):
            await asyncio.sleep(0.02)
        if self.watchdog is not None:
            self.watchdog.stop_event.set()
        stragglers = [w.current for w in self.workers if w.is_alive() and w.current is not None]
        for job in stragglers:
            log.warning(
                "task %d %s still running at exit; it stays queued and runs again", job.id, job.name
            )
        loop = asyncio.get_running_loop()
        flushed = await loop.run_in_executor(None, self.store.stop, 10.0)
        if not flushed:
            log.error("stopping: the database writer did not finish in 10s")
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.slots is not None:
            self.slots.clear()  # a clean stop: whatever still runs did not kill leekd
            self.slots.close()
        snap = self.work.snapshot()
        ok = sum(q["succeeded"] for q in snap.values())
        bad = sum(q["failed"] for q in snap.values())
        log.info(
            "leekd stopped: %d handled (%d succeeded, %d failed), %d left queued, up %.1fs",
            ok + bad,
            ok,
            bad,
            self.work.waiting() + len(stragglers),
            time.time() - self.started,
        )


def trim_heap() -> None:
    """Return freed heap pages to the system (glibc only; elsewhere nothing to do)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed, else asyncio's own loop.

    leek does not install uvloop: measured with scripts/bench it changes no figure (the
    loop is not where a push spends its time) and costs about 2.5 MiB of resident memory.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(app: Leekd, ready: Callable[[Leekd], None] | None = None) -> None:
    """Run in the foreground until SIGTERM/SIGINT (a second one forces the stop).

    ``ready`` is called once leekd listens (``leekd start`` uses it to tell its parent).
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        loop = runner.get_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _on_signal, app, sig)
        runner.run(app.serve(ready=ready))


def _on_signal(app: Leekd, sig: int) -> None:
    name = signal.Signals(sig).name
    if app.draining or (app._stop is not None and app._stop.is_set()):
        log.warning("%s again: stopping now, running tasks stay queued", name)
        app.request_stop(force=True)
    else:
        log.info("%s: stopping gracefully (send again to force)", name)
        app.request_stop()


class ServerThread:
    """leekd in a background thread of this process (for tests and embedding)."""

    def __init__(self, app: Leekd) -> None:
        self.app = app
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="leekd-main", daemon=True)

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(self.app.serve(ready=lambda _: self._ready.set()))
        except BaseException as exc:  # reported to the starter
            self._error = exc
            self._ready.set()
        finally:
            # A peer still in its TLS handshake when the loop stopped never reached our
            # protocol, so the stop could not abort it; its transport is finalised here,
            # quietly, instead of warning later in whatever code the host runs next.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()

    def start(self, timeout: float = 30.0) -> Leekd:
        self.thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"leekd did not start within {timeout}s")
        if self._error is not None:
            raise self._error
        return self.app

    def stop(self, timeout: float = 30.0) -> None:
        self.app.request_stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"leekd did not stop within {timeout}s")


__all__ = ["Leekd", "ServerThread", "run"]
