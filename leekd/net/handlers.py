"""The dispatch table: one ``handle_*`` method per request a client may send.

A request named ``op`` is served by ``handle_<op>``; an unknown op is refused. Each handler
answers through its slot, in request order; anything that touches the database runs in the
API's pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from leek.protocol import ClientHello, Connection, Error, ErrorCode, Push, Reply, Welcome

from .admission import client_pickle_problem, record_problem, server_info
from .api import LeekdAPI
from .shared import Shared

log = logging.getLogger("leekd.server")


class Slot:
    """An answer owed to a client, filled in when ready and sent in request order."""

    __slots__ = ("event",)

    def __init__(self, event: Any = None) -> None:
        self.event = event


class Handlers:
    """The requests; mixed into ``LeekConnection``, which provides the attributes below."""

    api: LeekdAPI
    conn: Connection
    shared: Shared
    peer: str
    tcp: bool  # came over TCP (not a Unix-domain socket)
    pending: deque[Slot]
    flush: Callable[[], None]  # sends every answer that is ready, in order

    def _answer(self, slot: Slot) -> None:
        self.pending.append(slot)
        self.flush()

    def handle_hello(self, event: ClientHello) -> None:
        info = server_info()
        if self.shared.local and self.tcp:  # where a client on this host may move
            info["local"] = self.shared.local
        self.pending.append(Slot(Welcome(info)))
        self.flush()

    def handle_push(self, event: Push) -> None:
        slot = Slot()
        self.pending.append(slot)
        if self.api.draining:
            slot.event = Error(
                ErrorCode.UNAVAILABLE,
                "leekd is stopping and takes no new tasks; push again once it is back",
            )
            self.flush()
            return
        problem = record_problem(event.tasks, self.api.served_queues)
        if problem:
            slot.event = Error(ErrorCode.REJECTED, problem)
            self.flush()
            return
        problem = client_pickle_problem(self.conn.peer_info, (t.payload for t in event.tasks))
        if problem:
            slot.event = Error(ErrorCode.VERSION, problem)
            self.flush()
            return
        self.api.push(event.tasks, (self, slot))

    def _reply(self, data: Any) -> None:
        self._answer(Slot(Reply(data)))

    def _in_pool(self, fn: Callable[[], Any], wrap: Callable[[Any], Any]) -> None:
        slot = Slot()
        self.pending.append(slot)
        future = asyncio.get_running_loop().run_in_executor(self.api.pool, fn)

        def done(f: asyncio.Future[Any]) -> None:
            exc = f.exception()
            if isinstance(exc, ValueError):  # the request was understood and refused
                slot.event = Error(ErrorCode.REJECTED, str(exc))
            elif exc is not None:
                log.error("request failed: %s: %s", type(exc).__name__, exc)
                slot.event = Error(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
            else:
                slot.event = wrap(f.result())
            self.flush()

        future.add_done_callback(done)

    def handle_ping(self, args: dict[str, Any]) -> None:
        self._reply(self.api.ping_info())

    def handle_waiting(self, args: dict[str, Any]) -> None:
        self._reply(self.api.waiting())

    def handle_handled(self, args: dict[str, Any]) -> None:
        self._reply(self.api.handled())

    def handle_stats(self, args: dict[str, Any]) -> None:
        self._reply(self.api.stats())

    def _task_id(self, args: dict[str, Any], op: str) -> int | None:
        task_id = args.get("id")
        if not isinstance(task_id, int) or isinstance(task_id, bool) or not 0 < task_id < 2**63:
            self._answer(
                Slot(Error(ErrorCode.REJECTED, f"{op} needs a task id (a positive integer)"))
            )
            return None
        return task_id

    def handle_status(self, args: dict[str, Any]) -> None:
        task_id = self._task_id(args, "status")
        if task_id is None:
            return
        running = self.api.is_running(task_id)
        info = self.api.running_info(task_id) if running else None

        def wrap(row: dict[str, Any] | None) -> Any:
            if row is None:
                return Error(ErrorCode.NOT_FOUND, f"no task with id {task_id}")
            if running and row["state"] in ("queued", "scheduled"):
                row["state"] = "running"
                row.update(info or {})
            return Reply(row)

        self._in_pool(lambda: self.api.task_status(task_id), wrap)

    def handle_cancel(self, args: dict[str, Any]) -> None:
        """Cancel a task that has not started; refused, with the reason, once it has."""
        task_id = self._task_id(args, "cancel")
        if task_id is None:
            return

        def wrap(result: dict[str, Any]) -> Any:
            if result.get("cancelled"):
                self.api.task_cancelled(task_id)  # wakes whoever waits for its result
                return Reply(result)
            code = ErrorCode.REJECTED if result.get("found") else ErrorCode.NOT_FOUND
            return Error(code, result.get("reason", "not cancelled"))

        self._in_pool(lambda: self.api.cancel(task_id), wrap)

    def handle_status_of_key(self, args: dict[str, Any]) -> None:
        """The task a push with this key recorded: what a client asks after a timeout."""
        key = args.get("key")
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            self._answer(Slot(Error(ErrorCode.REJECTED, "status_of_key needs a key (1-64 chars)")))
            return

        def wrap(row: dict[str, Any] | None) -> Any:
            if row is None:
                return Error(ErrorCode.NOT_FOUND, f"no task was recorded with key {key!r}")
            if row["state"] == "queued" and self.api.is_running(row["id"]):
                row["state"] = "running"
            return Reply(row)

        self._in_pool(lambda: self.api.status_of_key(key), wrap)

    def handle_failures(self, args: dict[str, Any]) -> None:
        """The latest failures, newest first: ``limit`` of them (1 to 100, default 10)."""
        limit = args.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            self._answer(
                Slot(Error(ErrorCode.REJECTED, "failures takes a limit from 1 to 100 (default 10)"))
            )
            return
        self._in_pool(lambda: self.api.latest_failures(limit), Reply)

    def handle_drain(self, args: dict[str, Any]) -> None:
        """Stop gracefully, as SIGTERM does: for hosts where signals cannot reach leekd."""
        log.info("drain requested by %s", self.peer)
        already = self.api.draining
        self._reply({"draining": True, "already": already, "pid": os.getpid()})
        if not already:
            self.api.request_stop()

    def handle_purge(self, args: dict[str, Any]) -> None:
        self._maintenance(lambda: self.api.purge_job(args))

    def handle_retry_failed(self, args: dict[str, Any]) -> None:
        if self.api.draining and args.get("dry_run") is not True:
            self._answer(Slot(Error(ErrorCode.UNAVAILABLE, "leekd is stopping; retry later")))
            return
        self._maintenance(lambda: self.api.retry_job(args))

    def handle_nodes(self, args: dict[str, Any]) -> None:
        self._maintenance(self.api.nodes_job)

    def handle_schedules(self, args: dict[str, Any]) -> None:
        self._in_pool(self.api.schedules, Reply)

    def handle_create_job(self, args: dict[str, Any]) -> None:
        if self.api.draining:
            self._answer(Slot(Error(ErrorCode.UNAVAILABLE, "leekd is stopping; create it later")))
            return
        self._maintenance(lambda: self.api.create_job(args))

    def handle_job(self, args: dict[str, Any]) -> None:
        job_id = args.get("id")
        if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id < 1:
            self._answer(Slot(Error(ErrorCode.REJECTED, "job needs a job id (a positive integer)")))
            return

        def wrap(row: dict[str, Any] | None) -> Any:
            return Reply(row) if row else Error(ErrorCode.NOT_FOUND, f"no job with id {job_id}")

        self._in_pool(lambda: self.api.job_status(job_id), wrap)

    def handle_resume_job(self, args: dict[str, Any]) -> None:
        if self.api.draining:
            self._answer(Slot(Error(ErrorCode.UNAVAILABLE, "leekd is stopping; resume later")))
            return
        self._maintenance(lambda: self.api.resume_job(args))

    def _maintenance(self, check: Callable[[], Callable[[], Any]]) -> None:
        """Check the arguments here, do the database work in the pool."""
        try:
            job = check()
        except ValueError as exc:
            self._answer(Slot(Error(ErrorCode.REJECTED, str(exc))))
            return
        self._in_pool(job, Reply)
