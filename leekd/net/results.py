"""Waiting for a task's result: ``result`` requests answered when its outcome is committed.

A waiter is registered *before* the task's row is read, so an outcome committed at any
moment is seen either by the read or by the wake-up; nobody polls. With several nodes the
wake-up for a task another node ran comes from that node's notification (the ids only),
and the outcome is read from the database. Each wait is bounded by
the time the client asked for (at most ``MAX_WAIT``), and each connection by ``MAX_WAITERS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from leek.protocol import Error, ErrorCode, Reply

from ..job import Outcome, result_reply

MAX_WAIT = 3600.0  # seconds one request may wait; the client asks again for longer waits
MAX_WAITERS = 64  # result waits open at once on one connection

ResultReply = dict[str, Any]
log = logging.getLogger("leekd.server")


class ResultWaiters:
    """Task id → callbacks of the connections waiting for it; woken on the event loop."""

    def __init__(self) -> None:
        self._by_task: dict[int, set[Callable[[ResultReply], None]]] = {}
        self.woken_elsewhere = 0  # waits answered because another node said their task ended

    def __bool__(self) -> bool:
        return bool(self._by_task)

    def __contains__(self, task_id: int) -> bool:
        return task_id in self._by_task

    def watch(self, task_id: int, fn: Callable[[ResultReply], None]) -> Callable[[], None]:
        """Call ``fn`` with the result once task ``task_id`` finishes; returns the cancel."""
        self._by_task.setdefault(task_id, set()).add(fn)

        def cancel() -> None:
            fns = self._by_task.get(task_id)
            if fns is not None:
                fns.discard(fn)
                if not fns:
                    del self._by_task[task_id]

        return cancel

    def committed(self, loop: asyncio.AbstractEventLoop, outcomes: list[Outcome]) -> None:
        """From the committing thread: wake the waits these outcomes end (a dict check when
        nobody waits; a retried attempt ends none)."""
        if not self._by_task:
            return
        found = [
            (o.job.id, result_reply(o.ok, o.result, o.exc_type, o.message, o.traceback))
            for o in outcomes
            if o.final and o.job.id in self._by_task
        ]
        if found:
            try:
                loop.call_soon_threadsafe(self.wake, found)
            except RuntimeError:
                pass  # the loop has closed: nobody is waiting any more

    def ended_elsewhere(
        self,
        loop: asyncio.AbstractEventLoop,
        ids: list[int],
        pool: Executor,
        read: Callable[[int], ResultReply],
    ) -> None:
        """From the cluster's listener thread: another node committed these tasks'
        outcomes. The ones waited for here are read (``read``, in ``pool``) and woken."""
        wanted = [i for i in ids if i in self._by_task]  # a dict check when nobody waits
        if not wanted:
            return

        def fetch() -> None:
            try:
                replies = [(i, read(i)) for i in wanted]
            except Exception as exc:  # noqa: BLE001 - the client's next ask answers instead
                log.warning("could not read results another node recorded (%s)", exc)
                return
            ended = [(i, r) for i, r in replies if r.get("state") in _ENDED]
            if ended:
                try:
                    loop.call_soon_threadsafe(self._woken_elsewhere, ended)
                except RuntimeError:
                    pass  # the loop has closed: nobody is waiting any more

        try:
            pool.submit(fetch)
        except RuntimeError:
            pass  # leekd is stopping: its waits are being answered already

    def _woken_elsewhere(self, results: list[tuple[int, ResultReply]]) -> None:
        self.woken_elsewhere += sum(len(self._by_task.get(i, ())) for i, _ in results)
        self.wake(results)

    def wake(self, results: Iterable[tuple[int, ResultReply]]) -> None:
        for task_id, reply in results:
            for fn in self._by_task.pop(task_id, ()):
                fn(reply)


_ENDED = ("succeeded", "failed", "cancelled")


class _Wait:
    __slots__ = ("cancel", "timer")

    def __init__(self) -> None:
        self.cancel: Callable[[], None] | None = None
        self.timer: asyncio.TimerHandle | None = None


class ResultRequests:
    """``handle_result``; mixed into ``LeekConnection`` beside ``Handlers``."""

    api: Any
    waits: dict[Any, _Wait]
    _answer: Callable[[Any], None]  # Handlers': owe this answer and send what is ready
    flush: Callable[[], None]

    def handle_result(self, args: dict[str, Any]) -> None:
        from .handlers import Slot

        task_id, wait = args.get("id"), args.get("wait", 0)
        if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 1:
            self._answer(
                Slot(Error(ErrorCode.REJECTED, "result needs a task id (a positive integer)"))
            )
            return
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT:
            self._answer(Slot(Error(ErrorCode.REJECTED, f"wait must be 0..{MAX_WAIT:g} seconds")))
            return
        if len(self.waits) >= MAX_WAITERS:
            self._answer(
                Slot(
                    Error(
                        ErrorCode.REJECTED,
                        f"{MAX_WAITERS} result waits already open on this connection; "
                        "wait for some to finish",
                    )
                )
            )
            return
        slot = Slot()
        self.pending.append(slot)  # type: ignore[attr-defined]
        state = _Wait()
        self.waits[slot] = state

        def finish(event: Any) -> None:
            if slot.event is not None:
                return
            slot.event = event
            self.waits.pop(slot, None)
            if state.cancel is not None:
                state.cancel()
            if state.timer is not None:
                state.timer.cancel()
            self.flush()

        state.cancel = self.api.watch_result(task_id, lambda reply: finish(Reply(reply)))
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.api.pool, self.api.task_result, task_id)

        def read(f: asyncio.Future[Any]) -> None:
            if slot.event is not None:
                return  # woken meanwhile
            exc = f.exception()
            if exc is not None:
                finish(Error(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}"))
                return
            reply = f.result()
            if reply.get("state") in ("purged", "unknown"):
                finish(Error(ErrorCode.NOT_FOUND, reply["message"]))
            elif reply.get("state") != "pending" or not wait:
                finish(Reply(reply))
            else:
                state.timer = loop.call_later(wait, finish, Reply({"state": "pending"}))

        future.add_done_callback(read)

    def end_waits(self, why: str) -> None:
        """Answer every open wait with ``why`` (leekd is stopping), or drop them (closed)."""
        for slot, state in list(self.waits.items()):
            if state.cancel is not None:
                state.cancel()
            if state.timer is not None:
                state.timer.cancel()
            if slot.event is None:
                slot.event = Error(ErrorCode.UNAVAILABLE, why)
        self.waits.clear()
        self.flush()
