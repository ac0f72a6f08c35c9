"""Group commit: how pushes and outcomes reach the database.

Each commit takes *everything that arrived meanwhile* and writes it in one transaction, so
a busy server commits thousands of pushes at once and an idle one commits a single push at
once, with no timer adding latency. A push is answered only after its row is committed;
only then does its task enter the in-memory queue.

Two places commit, one at a time (``_lock``):

- The event loop, on the fast path: where a commit cannot wait on a disk or a lock (SQLite
  in WAL mode with ``synchronous`` NORMAL or OFF, where a commit appends to the log and
  syncs nothing), the loop commits the pushes of each loop turn itself, with SQLite's busy
  timeout at zero. Handing a push to a thread and its answer back costs two thread
  wake-ups, several times the commit itself. Outcomes are committed by the loop too, in
  batches (OUTCOME_DELAY), so no other thread holds the lock a push needs; the loop waits
  at most LOCK_WAIT for it.
- The writer thread: everything else (PostgreSQL, ``synchronous=FULL``, retries pushed by
  maintenance) and whatever the fast path could not do at once (the lock was busy, the
  database locked or failing), untouched and unanswered. It may wait on the database.

When the writer's commit fails (database locked or down), the pushes in it are refused,
outcomes are kept in memory and written again on the next turn, and the thread goes on.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.utils import timezone

from leek.protocol import TaskRecord

from ..job import Job, Outcome
from .batch import write_batch
from .collect import _OUTCOMES, Collecting, _PushOp
from .rows import INSERT_CHUNK, Fence, insert_one, split_ids
from .sqlite import WAL_LIMIT, Checkpointer
from .transaction import Transactions

log = logging.getLogger("leekd.store")

LOCK_WAIT = 0.002  # seconds the fast path waits for the writer to finish a commit
LOOP_OUTCOMES = 2000  # outcomes per commit on the loop, which serves nothing meanwhile

Ids = tuple[list[list[int]], list[bool] | None]  # per push; which records were inserted
PushDone = Callable[[list[tuple[Any, list[int] | Exception]]], None]
Committed = Callable[[Iterable[Job]], object]


class Store(Transactions, Collecting):
    """Owns the writer thread; ``on_pushed`` is called once per commit with every answer."""

    def __init__(
        self, on_committed: Committed, on_pushed: PushDone, wal_limit: int = WAL_LIMIT
    ) -> None:
        self.on_committed = on_committed  # the engine's: queue these jobs
        self.on_pushed = on_pushed
        self.wal_limit = wal_limit
        self.lost = ""  # why the database file is no longer the one opened: nothing commits
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending_outcomes: list[Outcome] = []  # written when the database is back
        self._outcomes: deque[Outcome] = deque()  # from the workers, for the next commit
        self._signalled = False  # whoever commits outcomes has been told some are waiting
        self.outcomes_due: Callable[[], object] | None = None  # tells the loop (fast path)
        # Told of outcomes just committed, from the committing thread (wakes result waits).
        self.on_outcomes: Callable[[list[Outcome]], object] | None = None
        self._thread = threading.Thread(target=self._run, name="leekd-store", daemon=True)
        self._stopping = threading.Event()
        self._db: Any = None  # the writer thread's DatabaseWrapper
        self._tuned: Any = None  # the raw SQLite connection whose autocheckpoint is off
        self._lock = threading.Lock()  # one commit at a time, whichever thread makes it
        self._fast: Any = None  # that connection, when the event loop may commit on it too
        self._busy_ms = 0  # its busy timeout for the writer thread, which may wait
        self._waits = True  # whether that timeout is set (the fast path sets zero)
        self._checkpointer: Checkpointer | None = None
        self.healthy = True
        self.last_error = ""
        self.commits = 0
        self.commits_on_loop = 0  # of those, made by the fast path
        self._utc_text = False  # datetimes go to the database as naive UTC text (SQLite)
        self.written = 0
        self.fence: Fence | None = None  # several nodes: (node, epoch) owning what we write
        self.on_fenced: Callable[[list[Outcome]], object] | None = None  # their tasks moved
        # Several nodes: called in each outcome commit with the cursor and the ended task
        # ids, so the nodes where someone waits for them hear of it when it commits.
        self.announce: Callable[[Any, list[int]], object] | None = None

    # ---- called from other threads

    def start(self) -> None:
        self._utc_text = connection.vendor == "sqlite" and connection.timezone is UTC
        self._checkpointer = self._watch_wal()
        self._thread.start()

    def submit_push(
        self,
        records: Sequence[TaskRecord],
        token: Any,
        retry_of: Sequence[int | None] | None = None,
    ) -> None:
        """Queue records for the next commit; ``on_pushed`` later answers ``token`` with their ids."""
        if retry_of is not None and len(retry_of) != len(records):
            raise ValueError("retry_of needs one entry per record")
        self._ops.put(_PushOp(records, token, retry_of))

    def submit_outcome(self, outcome: Outcome) -> None:
        """Outcomes wait in a deque; their committer is told once per batch, not per task.

        On the fast path that is the event loop (``outcomes_due``), so the writer never holds
        the lock a push's commit needs; otherwise the writer.
        """
        self._outcomes.append(outcome)
        if not self._signalled:
            self._signalled = True
            if self._fast is None or self.outcomes_due is None:
                self._ops.put(_OUTCOMES)
                return
            try:
                self.outcomes_due()
            except RuntimeError:  # the loop has closed: leekd is stopping
                self._ops.put(_OUTCOMES)

    def stop(self, timeout: float) -> bool:
        """Write what is pending and end the thread; False if it did not finish in time."""
        self._stopping.set()
        self._ops.put(None)
        self._thread.join(timeout)
        if self._checkpointer is not None:
            self._checkpointer.stop_event.set()
            self._checkpointer.join(timeout)
        return not self._thread.is_alive()

    def set_fence(self, fence: Fence | None) -> None:
        """Own new rows and write outcomes as ``fence``; under the lock, so once this returns
        no commit under the old fence is in flight (a query after it sees all it wrote)."""
        with self._lock:
            self.fence = fence

    @property
    def backlog(self) -> int:
        return self._ops.qsize() + len(self._pending_outcomes) + len(self._outcomes)

    # ---- the writer thread

    def _run(self) -> None:
        # This thread's own DatabaseWrapper, looked up once: every access through the
        # ``connection`` proxy costs a thread-local lookup, a dozen of them per commit.
        self._db = connections[DEFAULT_DB_ALIAS]
        retry_wait = 0.05
        if self._db.vendor == "sqlite":
            try:
                with self._lock, self._db.wrap_database_errors:
                    self._sqlite()  # opens the fast path before the first push
            except DatabaseError:
                pass  # the first write reports it
        try:
            while True:
                idle = not self._pending_outcomes and self.healthy  # else: retry
                ops = self._collect(None if idle else retry_wait)
                ok = self._write(ops)
                retry_wait = 0.05 if ok else min(retry_wait * 2, 2.0)
                if self._stopping.is_set() and self._ops.empty() and not self._outcomes:
                    if not self._pending_outcomes:
                        break
                    if not ok:
                        log.error(
                            "stopping with %d outcomes not written (%s); their tasks stay queued "
                            "and will run again",
                            len(self._pending_outcomes),
                            self.last_error,
                        )
                        break
        finally:
            with self._lock:
                self._fast = None
                self._db.close()

    def _write(self, ops: list[Any]) -> bool:
        pushes = [op for op in ops if isinstance(op, _PushOp)]
        outcomes = self._pending_outcomes + [op for op in ops if isinstance(op, Outcome)]
        if self._refuse_lost(pushes, self.on_pushed):
            self._pending_outcomes = outcomes
            return False
        if not pushes and not outcomes:
            return self.healthy or self._recheck()
        # The writer keeps its one connection (no close_old_connections here: with
        # CONN_MAX_AGE=0 that would reconnect on every commit); errors drop it below.
        with self._lock:
            try:
                ids, fresh = self._commit(pushes, outcomes)
            except DatabaseError as exc:
                self._failed(exc, pushes, outcomes)
                return False
        self._pending_outcomes = []
        if not self.healthy:
            log.warning("database writable again; %d outcomes written", len(outcomes))
        self.healthy, self.last_error = True, ""
        self._settle(pushes, ids, self.on_pushed, False, fresh)
        return True

    def commit_here(
        self, pushes: Sequence[tuple[Sequence[TaskRecord], Any]], answer: PushDone
    ) -> None:
        """Commit on the calling thread if that cannot block, else hand over to the writer.

        For the event loop, with a loop turn's pushes, or with none to commit the waiting
        outcomes (after ``outcomes_due``). The two are separate commits, so a turn's pushes
        are usually a single ``INSERT`` and pay for no outcomes. ``answer`` is called here,
        on this thread, once the pushes are committed. When the fast path is closed, the
        writer stays busy, or the database is locked or failing, everything goes to the
        writer untouched, and ``on_pushed`` answers the pushes later.
        """
        ops: list[Any] = [_PushOp(records, token) for records, token in pushes]
        outcomes: list[Outcome] = []
        raw = self._fast
        if (
            raw is None
            or not self.healthy
            or self._stopping.is_set()
            or not self._lock.acquire(timeout=LOCK_WAIT)
        ):
            self._hand_over(ops)
            return
        try:
            if raw is not self._fast:  # the writer dropped it meanwhile
                self._hand_over(ops)
                return
            if not ops:
                self._take_outcomes(outcomes, LOOP_OUTCOMES)
                if not outcomes:
                    return  # the writer took them meanwhile
            try:
                if self._waits:
                    raw.execute("PRAGMA busy_timeout=0")
                    self._waits = False
                if len(ops) == 1 and self._plain(ops[0]):
                    ids, fresh = self._commit_one(ops, raw)
                else:
                    ids, fresh = self._commit(ops, outcomes, raw)
            except (DatabaseError, sqlite3.Error):
                self._outcomes.extendleft(reversed(outcomes))
                self._hand_over(ops)  # locked, say: the writer waits and reports
                return
            self.commits_on_loop += 1
        finally:
            self._lock.release()
        self._settle(ops, ids, answer, True, fresh)

    def _plain(self, op: _PushOp) -> bool:
        """One record that a lone ``INSERT`` records as a group commit would."""
        if len(op.records) != 1 or op.retry_of or self.fence is not None:
            return False
        r = op.records[0]
        return bool(r.key) and not r.run_at and not r.unique_key

    def _commit_one(self, ops: list[_PushOp], raw: Any) -> Ids:
        """A turn's one plain push (the common case with one client), on the loop's raw
        connection; a key sent before fails the insert and goes the general way, deduped."""
        try:
            task_id = insert_one(raw, ops[0].records[0], self._adapt(timezone.now()))
        except sqlite3.IntegrityError:
            return self._commit(ops, [], raw)
        self.commits += 1
        self.written += 1
        return [[task_id]], None

    def _hand_over(self, ops: list[_PushOp]) -> None:
        """Give the writer what the fast path could not commit: these pushes, or the outcomes."""
        for op in ops:
            self._ops.put(op)
        if not ops:
            self._signal_writer(force=True)

    def _commit(self, pushes: list[_PushOp], outcomes: list[Outcome], raw: Any = None) -> Ids:
        """One transaction with every push and outcome; the ids per push and, when a record
        had a ``unique_key`` or was sent again, which records were inserted. Hold ``_lock``."""
        records = [r for op in pushes for r in op.records]
        retry_of = None
        if any(op.retry_of for op in pushes):
            retry_of = [x for op in pushes for x in (op.retry_of or [None] * len(op.records))]
        unique = any(r.unique_key for r in records)
        # A lone INSERT is its own transaction: no BEGIN and COMMIT round trips through the
        # driver, each of which gives up and takes back the GIL.
        single = not outcomes and not unique and len(records) <= INSERT_CHUNK
        flat, fresh, lost, following = write_batch(
            self._transaction,
            raw,
            single,
            records,
            outcomes,
            retry_of,
            self._adapt,
            self.fence,
            unique,
            self.announce,
        )
        if lost and self.on_fenced is not None:
            self.on_fenced(lost)
        if following:
            self.on_committed(following)  # the next steps of jobs, committed with their outcomes
        self.commits += 1
        self.written += len(flat) + len(outcomes)
        if outcomes and self.on_outcomes is not None:
            self.on_outcomes(outcomes)
        return split_ids(flat, [len(op.records) for op in pushes]), fresh

    def _settle(
        self,
        pushes: list[_PushOp],
        ids: list[list[int]],
        answer: PushDone,
        on_loop: bool,
        fresh: list[bool] | None = None,
    ) -> None:
        """After a commit: answer the pushes, queue their jobs, wake the workers.

        On the loop the answers go out first: nothing else runs on the loop before the jobs
        are queued, so a client asking ``waiting`` right after its answer still sees them.
        From the writer thread the answers are only scheduled, so the jobs are queued first.
        """
        if self._refuse_lost(pushes, answer):  # committed into a file that is gone
            return
        answers: list[tuple[Any, list[int] | Exception]] = [
            (op.token, op_ids) for op, op_ids in zip(pushes, ids, strict=True)
        ]
        if on_loop and answers:
            answer(answers)
        jobs = (
            Job(i, r.name, r.queue, r.payload, r.max_retries, r.timeout, r.priority, r.run_at)
            for op, op_ids in zip(pushes, ids, strict=True)
            for i, r in zip(op_ids, op.records, strict=True)
        )
        if fresh is not None:  # a record sent again, or whose unique key a task holds
            jobs = (job for job, new in zip(jobs, fresh, strict=True) if new)
        self.on_committed(jobs)
        if not on_loop and answers:
            answer(answers)
