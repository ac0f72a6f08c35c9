"""Leekd: the one place that assembles the store, the engine and the server, and stops them.

The parts meet only here: the server asks through ``LeekdAPI`` (net/api.py), which this
class implements; the store is handed the engine's ``put_many`` to queue what it committed;
the workers are handed the store's ``submit_outcome`` to report what they ran.

Stop order (each step logged, each wait bounded): stop accepting → refuse new pushes and
answer the ones in flight → close connections → let running tasks finish within the grace
period → write the remaining outcomes → exit. Tasks still waiting stay queued in the
database and run after the next start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leek.protocol import TaskRecord

from .answers import Answers
from .app_flow import Flow
from .conf import Config
from .engine.pools import Pools
from .engine.queue import TaskQueue
from .engine.running import RunningSlots, default_path
from .engine.watchdog import Watchdog
from .engine.workers import Worker
from .memory import trim_heap
from .net.accept import fit_connections
from .net.admission import PYTHON
from .net.authlog import AuthLog
from .net.connection import resolve_pushes
from .net.listen import Listener
from .net.results import ResultWaiters
from .net.server import Server
from .notify import announce_ready, sd_notify
from .store.collect import OUTCOME_DELAY
from .store.commit import Store

if TYPE_CHECKING:
    from .cluster.member import Member

log = logging.getLogger("leekd.server")


class Leekd(Answers):
    def __init__(self, config: Config, secret: bytes) -> None:
        self.config = config
        self.secret = secret
        self.engine = Pools(
            config.pools, shared=config.queues is None, memory=config.payload_memory
        )
        self.served_queues = self.engine.served
        self.flow = Flow(config, self.engine)  # a bad schedule or job stops leekd here
        self.store: Store | None = None
        self.net = Server(
            self,
            secret,
            max_frame=config.max_frame,
            max_connections=config.max_connections,
            handshake_timeout=config.handshake_timeout,
            idle_timeout=config.idle_timeout,
        )
        self.connections = self.net.connections  # the same set, kept by the server
        self.listener: Listener | None = None
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="leekd-query")
        self.draining = False
        self.force = False
        self.started = time.monotonic()  # uptime survives a change of the wall clock
        self.port: int | None = None
        self.recovered = 0
        self.poisoned = 0
        self.slots: RunningSlots | None = None
        self._ledger_once: Path | None = None  # a ledger no later run will read
        self.watchdog: Watchdog | None = None
        self._next_slot = 0
        self.stopped = threading.Event()  # set once a stop has finished
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._turn: list[tuple[tuple[TaskRecord, ...], Any]] = []  # pushes of this loop turn
        self._outcome_timer: asyncio.TimerHandle | None = None
        self.results = ResultWaiters()  # result requests waiting for an outcome
        self.member: Member | None = None  # on PostgreSQL: this node among the others
        self.metrics: Any = None  # leekd.metrics.MetricsServer, with --metrics-port
        self._report: Callable[[Any], object] | None = None  # the workers' outcome hand-over

    @property
    def auth_log(self) -> AuthLog:
        return self.net.shared.auth_log

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

    def outcomes_elsewhere(self, ids: list[int]) -> None:
        """From the cluster's listener: another node recorded these outcomes; the result
        waits for them here are answered (read in the query pool)."""
        if self._loop is not None:
            self.results.ended_elsewhere(self._loop, ids, self.pool, self.task_result)

    def cancelled_here(self, task_id: int) -> None:
        """From a pool thread: another node asked us to cancel this task, and we did."""
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self.task_cancelled, task_id)
            except RuntimeError:
                pass  # the loop has closed: nobody is waiting any more

    # ---- lifecycle

    def recover(self) -> int:
        """Put every task with no outcome back on the queue; returns how many."""
        from .store.recovery import count_deaths, recover

        def judge(dead: list[int], suspects: list[int]) -> list[int]:
            self.poisoned, left = count_deaths(dead, suspects, self.config.max_deaths)
            return left

        suspects = self.slots.settle(judge) if self.slots is not None else []
        if self.member is not None:
            self.recovered = self.member.join_cluster()  # suspects run alone on one node only
        else:
            self.recovered = recover(self.engine.put_many, suspects)
        return self.recovered

    def _new_worker(self, work: TaskQueue, pool: str) -> Worker:
        from .store.payloads import load_payload  # needs Django's app registry, ready by now

        assert self.store is not None and self._report is not None
        steps = self.flow.steps
        worker = Worker(
            self._next_slot, work, self._report, self.config, self.slots, load_payload, steps, pool
        )
        self._next_slot += 1
        return worker

    def _open_slots(self) -> RunningSlots:
        from django.conf import settings
        from django.db import connection

        path: Path | str = self.config.running_file or default_path(
            str(connection.settings_dict.get("NAME") or ""),
            embedded=getattr(settings, "LEEK_EMBEDDED", False),
        )
        if self.member is not None and not self.config.running_file:  # one ledger per node
            path = Path(path).with_name(f"leekd-{self.member.node.replace('/', '_')}.running")
            # A node whose name does not last never reads its ledger again: a clean stop
            # removes it rather than leave one file per run.
            self._ledger_once = None if self.member.lasting else path
        return RunningSlots(path)

    def _join(self) -> None:
        from .node import member_for  # on PostgreSQL, a node among others (cluster/)

        self.member = member_for(self)

    def _start_metrics(self) -> tuple[Callable[[Any], object], Any]:
        """With --metrics-port: serve them, and wrap the two hand-overs they count."""
        if self.config.metrics_port is None:
            return self.engine.put_many, None
        from .metrics import Collector, MetricsServer, TaskMetrics

        tasks = TaskMetrics()
        self.metrics = MetricsServer(
            self.config.metrics_host, self.config.metrics_port, Collector(tasks, self.stats)
        )
        log.info("metrics on %s", self.metrics.url)
        for queue in self.engine.queues.values():
            queue.observer = tasks
        put_many = self.engine.put_many

        def committed(jobs: Any) -> object:
            return put_many(tasks.committed(jobs))

        def report(outcome: Any) -> None:
            if outcome.final:  # a retried attempt is not an end
                tasks.ended(outcome)
            assert self.store is not None
            self.store.submit_outcome(outcome)

        return committed, report

    async def serve(self, ready: Callable[[Leekd], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        self.listener = Listener(self.config)  # bad TLS files or a taken socket fail here

        def on_pushed(items: list[Any]) -> None:
            loop.call_soon_threadsafe(resolve_pushes, items)

        try:
            committed, report = self._start_metrics()
        except BaseException:
            self.listener.close()
            raise
        self.store = Store(committed, on_pushed, self.config.wal_limit)
        self.flow.put_many = committed  # ticks and job steps are pushes too
        store = self.store
        self.flow.owner = lambda: store.fence  # and owned by this node, as pushes are
        self._report = report or self.store.submit_outcome
        self.store.outcomes_due = lambda: loop.call_soon_threadsafe(self._outcomes_due)
        self.store.on_outcomes = functools.partial(self.results.committed, loop)
        self._join()
        self.slots = self._open_slots()
        t0 = time.monotonic()
        recovered = await loop.run_in_executor(self.pool, self.recover)
        if recovered:
            log.info("recovered %d unfinished tasks in %.2fs", recovered, time.monotonic() - t0)
        self.store.start()
        problem = await loop.run_in_executor(self.pool, self.store.check_writable)
        self.engine.start(self._new_worker)
        self.watchdog = Watchdog(
            self.engine.workers, self.engine.replacement(self._new_worker), self.config.kill_after
        )
        self.watchdog.start()
        if self.member is not None:
            self.member.start()
        self.net.shared.max_connections = fit_connections(
            self.config.max_connections, len(self.workers)
        )
        await loop.run_in_executor(self.pool, self.flow.start)
        await self.net.start(self.listener)
        self.port = self.listener.port
        if self.member is not None:
            self.member.address = self.listener.where  # the real port, for `leek-shell nodes`
        announce_ready(self.listener.where, self.engine.describe(), PYTHON, refusing=bool(problem))
        trim_heap()  # start-up and recovery garbage, handed back before the long idle
        from .store.purge import start_retention  # needs Django's app registry, ready by now

        retention = start_retention(self.config.retention, self.pool, lambda: self.draining)
        if ready is not None:
            ready(self)
        try:
            await self._stop.wait()
        finally:
            if retention is not None:
                retention.cancel()
            await self._shutdown()
            self.stopped.set()

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

    @property
    def stopping(self) -> bool:
        return self.draining or (self._stop is not None and self._stop.is_set())

    async def _shutdown(self) -> None:
        assert self.store is not None
        sd_notify("STOPPING=1")
        log.info("stopping: no longer accepting connections")
        self.net.stop_accepting()
        if self.listener is not None:
            self.listener.close()  # and remove our Unix socket file
        self.draining = True
        await asyncio.get_running_loop().run_in_executor(None, self.flow.stop)  # no more ticks
        await self.net.close()
        log.info(
            "stopping: waiting up to %.0fs for %d running task(s)", self.config.grace, self.busy()
        )
        self.engine.close()
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
        flushed = await loop.run_in_executor(None, functools.partial(self.store.stop, 10.0))
        if not flushed:
            log.error("stopping: the database writer did not finish in 10s")
        if self.member is not None:  # after the last outcome: the others take the rest
            await loop.run_in_executor(None, functools.partial(self.member.stop, 5.0))
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.metrics is not None:
            self.metrics.close()
        if self.slots is not None:
            self.slots.clear()  # a clean stop: whatever still runs did not kill leekd
            self.slots.close()
            if self._ledger_once is not None:
                self._ledger_once.unlink(missing_ok=True)
        snap = self.engine.snapshot()
        ok = sum(q["succeeded"] for q in snap.values())
        bad = sum(q["failed"] for q in snap.values())
        log.info(
            "leekd stopped: %d handled (%d succeeded, %d failed), %d left queued, up %.1fs",
            ok + bad,
            ok,
            bad,
            self.engine.waiting() + len(stragglers),
            self.uptime(),
        )


__all__ = ["Leekd"]
