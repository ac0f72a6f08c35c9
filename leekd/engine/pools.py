"""Named queues, each with its own ``TaskQueue`` and pool of worker threads.

With ``queues`` unset every queue shares one ``TaskQueue`` and the default pool, as leek 0.1
did. With it set, each named queue gets its own queue and threads, so a flood of slow
reports cannot delay mail; one watchdog still covers every thread. Plain pushes in the
shared setup go straight to the one queue's ``put_many``: no routing on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..job import Job
from .queue import TaskQueue
from .workers import Worker

log = logging.getLogger("leekd.worker")

MakeWorker = Callable[[TaskQueue, str], Worker]  # (its queue, its pool's name) -> a thread


class Pools:
    """The served queues and their workers; ``served`` is None when every queue is served."""

    def __init__(self, sizes: dict[str, int], shared: bool) -> None:
        self.sizes = dict(sizes)
        self.served: frozenset[str] | None = None if shared else frozenset(sizes)
        self.queues = {name: TaskQueue() for name in self.sizes}
        self.workers: list[Worker] = []  # every pool's threads, for the watchdog
        self.unserved = 0  # recovered tasks of queues this leekd does not serve
        if shared:
            self.put_many = self.queues["default"].put_many  # type: ignore[method-assign]

    def put_many(self, jobs: Iterable[Job]) -> int:
        """Hand each job to its queue; jobs of queues not served stay in the database only."""
        queues = self.queues
        by_queue: dict[str, list[Job]] = {}
        lost: set[str] = set()
        n = skipped = 0
        for job in jobs:
            if job.queue in queues:
                by_queue.setdefault(job.queue, []).append(job)
            else:
                skipped += 1
                lost.add(job.queue)
        for name, batch in by_queue.items():
            n += queues[name].put_many(batch)
        if skipped:
            self.unserved += skipped
            log.warning(
                "%d task(s) of queue(s) %s, which this leekd does not serve, stay queued in the "
                "database; add them to LEEK['queues'] (or --queue NAME=N) to run them",
                skipped,
                ", ".join(sorted(lost)),
            )
        return n + skipped

    def describe(self) -> str:
        """For the start-up line: "4 workers", or "queues default=4, mail=1"."""
        if self.served is None:
            return f"{self.sizes['default']} workers"
        return "queues " + ", ".join(f"{name}={n}" for name, n in self.sizes.items())

    def start(self, make: MakeWorker) -> None:
        for name, size in self.sizes.items():
            for _ in range(size):
                self.workers.append(make(self.queues[name], name))
        for w in self.workers:
            w.start()

    def replacement(self, make: MakeWorker) -> Callable[[Worker], Worker]:
        """What the watchdog calls to replace a thread: a new one on the same queue."""
        return lambda old: make(old.work, old.pool)

    # ---- the engine's side of what a connection may ask

    def take(self, task_id: int) -> Job | None:
        """Remove a job that waits (not running) so it never runs; None if no queue holds it."""
        for q in self.queues.values():
            job = q.take(task_id)
            if job is not None:
                return job
        return None

    def cancel(
        self,
        task_id: int,
        record: Callable[[int, int], object],
        unheld: Callable[[int], dict[str, Any]],
    ) -> dict[str, Any]:
        """Cancel a task that has not started (blocking, for the query pool).

        The race with a worker is decided in the task's ``TaskQueue``, under its lock: the
        cancel takes the job out first, or a worker has it. ``record(id, attempts)`` writes
        the cancel; if it raises, the job goes back. ``unheld(id)`` answers for a task no
        queue here holds (finished, unknown, or of a queue not served).
        """
        job = self.take(task_id)
        if job is not None:
            try:
                record(task_id, job.attempts)
            except BaseException:
                self.put_many([job])
                raise
            self.queues.get(job.queue, self.queues["default"]).cancelled(job)
            log.info("task %d %s cancelled", job.id, job.name)
            return {"cancelled": True, "id": task_id, "queue": job.queue}
        if self.is_running(task_id):
            why = "is running; only a task that has not started can be cancelled"
            return {"cancelled": False, "found": True, "reason": f"task {task_id} {why}"}
        return unheld(task_id)

    def hold(self, held: bool) -> None:
        for q in self.queues.values():
            q.hold(held)

    def drop(self, ids: set[int]) -> list[Job]:
        return [job for q in self.queues.values() for job in q.drop(ids)]

    def known(self) -> set[int]:
        return set().union(*(q.known() for q in self.queues.values()))

    def is_running(self, task_id: int) -> bool:
        return any(q.is_running(task_id) for q in self.queues.values())

    def waiting(self) -> int:
        return sum(q.waiting() for q in self.queues.values())

    def handled(self) -> int:
        return sum(q.handled() for q in self.queues.values())

    def busy(self) -> int:
        return sum(1 for w in self.workers if w.current is not None)

    def pool_stats(self) -> dict[str, dict[str, int]]:
        out = {name: {"total": 0, "busy": 0, "idle": 0} for name in self.sizes}
        for w in self.workers:
            row = out[w.pool]
            row["total"] += 1
            row["busy" if w.current is not None else "idle"] += 1
        return out

    def snapshot(self) -> dict[str, dict[str, int]]:
        merged: dict[str, dict[str, int]] = {}
        for q in self.queues.values():
            merged.update(q.snapshot())
        return dict(sorted(merged.items()))

    def close(self) -> None:
        for w in self.workers:
            w.stop_event.set()
        for q in self.queues.values():
            q.close()
