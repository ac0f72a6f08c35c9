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
    from .engine.queue import TaskQueue
    from .engine.workers import Worker
    from .net.connection import LeekConnection
    from .store.commit import Store


class Answers:
    work: TaskQueue
    workers: list[Worker]
    store: Store | None
    member: Member | None
    flow: Flow
    draining: bool
    started: float
    recovered: int
    poisoned: int

    @property
    def connections(self) -> set[LeekConnection]:
        raise NotImplementedError

    def busy(self) -> int:
        return sum(1 for w in self.workers if w.current is not None)

    def waiting(self) -> int:
        return self.work.waiting()

    def handled(self) -> int:
        return self.work.handled()

    def is_running(self, task_id: int) -> bool:
        return self.work.is_running(task_id)

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)  # unmoved by wall-clock changes

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
            "waiting": self.work.waiting(),
            "database": database or "failing",
        }

    def stats(self) -> dict[str, Any]:
        busy = self.busy()
        return {
            "version": __version__,
            "uptime": self.uptime(),
            "queues": self.work.snapshot(),
            "workers": {"total": len(self.workers), "busy": busy, "idle": len(self.workers) - busy},
            "waiting": self.work.waiting(),
            "handled": self.work.handled(),
            "recovered": self.recovered,
            "poisoned": self.poisoned,
            "payload_bytes": self.work.payload_bytes,  # of waiting tasks, held in memory
            "connections": len(self.connections),
            "store": {
                "healthy": self.store.healthy if self.store else True,
                "commits": self.store.commits if self.store else 0,
                "commits_on_loop": self.store.commits_on_loop if self.store else 0,
                "backlog": self.store.backlog if self.store else 0,
            },
            **({"cluster": self.member.stats()} if self.member else {}),
        }

    def nodes_job(self) -> Callable[[], dict[str, Any]]:
        from .node import nodes_job

        return nodes_job(self.member)

    def task_status(self, task_id: int) -> dict[str, Any] | None:
        from .store.queries import task_status  # needs Django's app registry, ready by now

        return task_status(task_id)

    def status_of_key(self, key: str) -> dict[str, Any] | None:
        from .store.queries import status_of_key

        return status_of_key(key)

    def latest_failures(self, limit: int) -> list[dict[str, Any]]:
        from .store.queries import latest_failures

        return latest_failures(limit)

    def purge_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        from .store.purge import purge_job

        return purge_job(args)

    def retry_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        from .store.retry import retry_job

        return retry_job(args, self.store)

    def schedules(self) -> list[dict[str, Any]]:
        return self.flow.schedules()

    def create_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return self.flow.create_job(args)

    def job_status(self, job_id: int) -> dict[str, Any] | None:
        return self.flow.job_status(job_id)

    def resume_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return self.flow.resume_job(args)
