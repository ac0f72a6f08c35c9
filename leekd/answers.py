"""What a connection may ask (net/api.py's ``LeekdAPI``), answered from leekd's parts.

A mixin of ``Leekd``: the answers read the engine's counters, the store's health, the
cluster and the flow that ``app.py`` assembled; the database reads are in ``store``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from leek import __version__

if TYPE_CHECKING:
    from .app_flow import Flow
    from .cluster.member import Member
    from .engine.pools import Pools
    from .engine.workers import Worker
    from .net.connection import LeekConnection
    from .net.results import ResultWaiters
    from .store.commit import Store


class Answers:
    engine: Pools
    served_queues: frozenset[str] | None
    store: Store | None
    member: Member | None
    flow: Flow
    draining: bool
    started: float
    recovered: int
    poisoned: int
    results: ResultWaiters

    connections: set[LeekConnection]  # the server's live connections

    @property
    def workers(self) -> list[Worker]:
        return self.engine.workers

    def busy(self) -> int:
        return self.engine.busy()

    def waiting(self) -> int:
        return self.engine.waiting()

    def handled(self) -> int:
        return self.engine.handled()

    def is_running(self, task_id: int) -> bool:
        return self.engine.is_running(task_id)

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)  # unmoved by wall-clock changes

    def running_info(self, task_id: int) -> dict[str, Any] | None:
        now, mono = time.time(), time.monotonic()
        for w in self.workers:
            job = w.current
            if job is not None and job.id == task_id:
                return {"started_at": now - (mono - w.started_at), "worker": w.worker_id}
        return None

    def ping_info(self) -> dict[str, Any]:
        database = "ok" if self.store is None or self.store.healthy else self.store.last_error
        status = "draining" if self.draining else "ok" if database == "ok" else "unavailable"
        return {
            "status": status,  # "unavailable": pushes are refused, ``database`` says why
            "worker": "off" if self.draining else "on",
            "version": __version__,
            "pid": os.getpid(),
            "uptime": self.uptime(),
            "workers": len(self.workers),
            "busy": self.busy(),
            "waiting": self.engine.waiting(),
            "database": database or "failing",
        }

    def stats(self) -> dict[str, Any]:
        busy = self.busy()
        return {
            "version": __version__,
            "uptime": self.uptime(),
            "queues": self.engine.snapshot(),
            "workers": {"total": len(self.workers), "busy": busy, "idle": len(self.workers) - busy},
            "pools": self.engine.pool_stats(),
            "serves": sorted(self.served_queues) if self.served_queues is not None else None,
            "waiting": self.engine.waiting(),
            "handled": self.engine.handled(),
            "recovered": self.recovered,
            "poisoned": self.poisoned,
            "payload_bytes": self.engine.payload_bytes(),  # of waiting tasks, held in memory
            "connections": len(self.connections),
            "store": {
                "healthy": self.store.healthy if self.store else True,
                "commits": self.store.commits if self.store else 0,
                "commits_on_loop": self.store.commits_on_loop if self.store else 0,
                "backlog": self.store.backlog if self.store else 0,
            },
            **({"cluster": self._cluster_stats()} if self.member else {}),
        }

    def _cluster_stats(self) -> dict[str, Any]:
        assert self.member is not None
        return {**self.member.stats(), "results_woken_elsewhere": self.results.woken_elsewhere}

    def nodes_job(self) -> Callable[[], dict[str, Any]]:
        from .node import nodes_job

        return nodes_job(self.member)

    def task_status(self, task_id: int) -> dict[str, Any] | None:
        from .store.queries import task_status  # needs Django's app registry, ready by now

        return task_status(task_id)

    def status_of_key(self, key: str) -> dict[str, Any] | None:
        from .store.queries import status_of_key

        return status_of_key(key)

    def task_result(self, task_id: int) -> dict[str, Any]:
        from .store.queries import task_result

        return task_result(task_id)

    def watch_result(
        self, task_id: int, fn: Callable[[dict[str, Any]], None]
    ) -> Callable[[], None]:
        return self.results.watch(task_id, fn)

    def latest_failures(self, limit: int) -> list[dict[str, Any]]:
        from .store.queries import latest_failures

        return latest_failures(limit)

    def purge_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        from .store.purge import purge_job

        return purge_job(args)

    def retry_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        from .store.retry import retry_job

        return retry_job(args, self.store)

    def task_cancelled(self, task_id: int) -> None:
        self.results.wake([(task_id, {"state": "cancelled"})])

    def cancel(self, task_id: int, forward: bool = True) -> dict[str, Any]:
        """Blocking (the query pool). With several nodes a task another node holds is
        cancelled there (``forward``: not when that node asked us, so a cancel hops once)."""
        from .store.cancel import cancel_unheld, mark_cancelled

        served, member = self.served_queues, self.member
        elsewhere = None
        if member is not None and forward:
            from .node import cancel_elsewhere

            elsewhere = cancel_elsewhere(member)
        result = self.engine.cancel(
            task_id, mark_cancelled, lambda i: cancel_unheld(i, served, elsewhere)
        )
        if result.get("cancelled") and member is not None and "node" not in result:
            member.ended_here(task_id)  # result waits on the other nodes learn of it
        return result

    def schedules(self) -> list[dict[str, Any]]:
        return self.flow.schedules()

    def create_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return self.flow.create_job(args)

    def job_status(self, job_id: int) -> dict[str, Any] | None:
        return self.flow.job_status(job_id)

    def resume_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return self.flow.resume_job(args)
