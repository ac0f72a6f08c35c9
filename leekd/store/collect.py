"""What the writer thread takes for one commit: every op that arrived meanwhile.

A mixin of ``Store`` (commit.py), beside ``Transactions``: the op queue, the outcomes'
deque, and the rule that outcomes alone wait a little for a push to share their commit.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from leek.protocol import TaskRecord

from ..job import Outcome

MAX_BATCH = 20_000  # tasks per transaction; the rest waits for the next turn
OUTCOME_DELAY = 0.005  # seconds an outcome waits for others to share its commit
_OUTCOMES = object()  # on the writer's queue: "outcomes are waiting in their deque"


@dataclass(slots=True)
class _PushOp:
    records: Sequence[TaskRecord]
    token: Any
    retry_of: Sequence[int | None] | None = None  # per record: the FailedTask it retries


class Collecting:
    _ops: queue.SimpleQueue[Any]
    _outcomes: deque[Outcome]
    _signalled: bool
    _stopping: threading.Event

    def _collect(self, timeout: float | None) -> list[Any]:
        """Everything that arrived meanwhile (waiting up to ``timeout`` for the first op).

        Outcomes alone wait up to OUTCOME_DELAY for a push to share their commit: nobody is
        waiting on them, and when pushes trickle in one at a time this saves a commit per
        task. A batch with a push is never held back.
        """
        ops: list[Any] = []
        try:
            first = self._ops.get(timeout=timeout)
        except queue.Empty:
            return ops
        stop = first is None
        if first is not None and first is not _OUTCOMES:
            ops.append(first)
        stop = self._drain(ops) or stop
        if not ops and not stop and not self._stopping.is_set():
            deadline = time.monotonic() + OUTCOME_DELAY
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    op = self._ops.get(timeout=remaining)
                except queue.Empty:
                    break
                if op is None:
                    break  # stop requested
                if op is not _OUTCOMES:
                    ops.append(op)
                    self._drain(ops)
                    break
        self._take_outcomes(ops)
        return ops

    def _drain(self, ops: list[Any]) -> bool:
        """Add what is queued to ``ops``; True if that included the stop request."""
        n, stop = 0, False
        while n < MAX_BATCH:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                stop = True
            elif op is not _OUTCOMES:
                ops.append(op)
                n += len(op.records) if isinstance(op, _PushOp) else 1
        return stop

    def _take_outcomes(self, ops: list[Any], limit: int = MAX_BATCH) -> None:
        self._signalled = False  # before taking them: a later outcome signals again
        for _ in range(limit):
            try:
                ops.append(self._outcomes.popleft())
            except IndexError:
                return
        self._signal_writer()  # more than one batch: the writer takes the rest

    def _signal_writer(self, force: bool = False) -> None:
        """Tell the writer outcomes are waiting, unless someone was told already (``force``:
        told, but it was the loop, which could not write them)."""
        if self._outcomes and (force or not self._signalled):
            self._signalled = True
            self._ops.put(_OUTCOMES)
