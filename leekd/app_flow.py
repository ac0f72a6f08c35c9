"""Periodic schedules and multi-step jobs, wired: the part of app.py that joins them up.

``Flow`` reads both from the config at construction (so a bad entry stops leekd before it
listens), hands the scheduler the store's tick claim and the workers the store's step
loader, and answers the requests about them that ``Leekd`` passes on.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from leek.errors import LeekConfigError
from leek.records import validate_options

from .conf import Config
from .engine.pools import Pools
from .engine.schedule import Entry, Scheduler, import_task_modules, load_entries
from .engine.steps import JobSteps, resolve_jobs

log = logging.getLogger("leekd.server")

MAX_WORKSPACE = 1024 * 1024  # bytes of JSON a job may be created with


class Flow:
    def __init__(self, config: Config, work: Pools) -> None:
        from django.conf import settings

        from leek.periodic import REGISTRY

        from .store.jobs import load_step

        self.work = work
        self.put_many: Callable[[Any], object] = work.put_many  # app.py's, counted in metrics
        self.owner: Callable[[], tuple[str, int] | None] = lambda: None  # the store's fence
        import_task_modules(config.schedule)  # their @leek.periodic register themselves
        zone = getattr(settings, "TIME_ZONE", None) or "UTC"
        self.entries: list[Entry] = load_entries(config.schedule, REGISTRY, zone)
        served = work.served
        for entry in self.entries:
            queue = entry.options.get("queue") or "default"
            if served is not None and queue not in served:
                raise LeekConfigError(
                    f"schedule {entry.name!r}: queue {queue!r} is not served by this "
                    f"leekd (it serves {', '.join(sorted(served))}); add it to LEEK['queues'] "
                    "(or --queue NAME=N), or schedule the entry on a served queue"
                )
        self.steps = JobSteps(resolve_jobs(config.jobs), load_step)
        self.scheduler: Scheduler | None = None

    # ---- lifecycle

    def start(self) -> None:
        """Schedule rows made, last ticks read, the scheduler started (blocking)."""
        if not self.entries:
            return
        from .store.ticks import prepare

        now = datetime.now(UTC)
        last = prepare({e.name: e.timing.latest(now) for e in self.entries})
        self.scheduler = Scheduler(self.entries, last, self._claim, now)
        self.scheduler.start()
        log.info(
            "%d periodic schedule(s): %s",
            len(self.entries),
            ", ".join(f"{e.name} ({e.timing})" for e in self.entries),
        )

    def stop(self, timeout: float = 5.0) -> None:
        if self.scheduler is not None:
            self.scheduler.stop_event.set()
            self.scheduler.join(timeout)

    def _claim(
        self, entry: Entry, old: datetime | None, new: datetime, run: bool
    ) -> tuple[datetime | None, bool]:
        from .store.ticks import claim

        stored, won, job = claim(
            entry.name, old, new, entry.record() if run else None, self.owner()
        )
        if job is not None:
            self.put_many((job,))
        return stored, won

    # ---- requests

    def schedules(self) -> list[dict[str, Any]]:
        from .store.ticks import rows

        found = rows([e.name for e in self.entries])
        out = []
        for e in self.entries:
            row = found.get(e.name, {})
            last = row.get("last_tick")
            nxt = self.scheduler.next_run(e) if self.scheduler else None
            out.append(
                {
                    "name": e.name,
                    "target": e.describe(),
                    "when": str(e.timing),
                    "queue": e.options.get("queue", "default"),
                    "last_run": last.isoformat() if last else None,
                    "next_run": nxt.isoformat() if nxt else None,
                    "last_task": row.get("last_task"),
                    "last_state": row.get("last_state"),
                }
            )
        return out

    def create_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        unknown = set(args) - {"name", "workspace", "queue"}
        if unknown:
            raise ValueError(f"create_job: unknown arguments {', '.join(sorted(unknown))}")
        name = args.get("name")
        if not isinstance(name, str):
            raise ValueError("create_job needs name: a key of settings.LEEK['jobs']")
        first = self.steps.first(name)
        workspace = args.get("workspace") or {}
        if not isinstance(workspace, dict):
            raise ValueError("workspace must be a JSON object (a dict)")
        if len(json.dumps(workspace)) > MAX_WORKSPACE:
            raise ValueError(f"workspace is over {MAX_WORKSPACE} bytes of JSON")
        queue = args.get("queue") or "default"
        try:
            validate_options(queue, None, None)
        except Exception as exc:
            raise ValueError(str(exc)) from None
        served = self.work.served
        if served is not None and queue not in served:
            raise ValueError(f"leekd serves the queues {', '.join(sorted(served))}, not {queue!r}")
        return functools.partial(self._create, name, first, workspace, queue)

    def _create(self, name: str, first: str, workspace: dict[str, Any], queue: str) -> dict:
        from .store.jobs import create_job

        task = create_job(name, first, workspace, queue, self.owner())
        self.put_many((task,))
        log.info("job %d %s created (step 1 is task %d)", task.job_id, name, task.id)
        return {"id": task.job_id, "task_id": task.id}

    def job_status(self, job_id: int) -> dict[str, Any] | None:
        from .store.jobs import job_status

        row = job_status(job_id)
        if row is not None:
            row["steps"] = list(self.steps.jobs.get(row["name"], []))
            for t in row["tasks"]:
                if t["state"] == "queued" and self.work.is_running(t["id"]):
                    t["state"] = "running"
        return row

    def resume_job(self, args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        job_id = args.get("id")
        if set(args) - {"id"} or not isinstance(job_id, int) or isinstance(job_id, bool):
            raise ValueError("resume_job needs id: a failed job's id")
        return functools.partial(self._resume, job_id)

    def _resume(self, job_id: int) -> dict[str, Any]:
        from .store.jobs import resume_job

        task = resume_job(job_id, self.steps.jobs, self.owner())
        self.put_many((task,))
        log.info("job %d resumed at step %d (task %d)", job_id, task.step + 1, task.id)
        return {"id": job_id, "step": task.step, "task_id": task.id}
