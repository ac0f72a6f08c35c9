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

import functools
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.utils import timezone

from leek.protocol import TaskRecord

from .queue import Job, TaskQueue

log = logging.getLogger("leekd.store")

INSERT_CHUNK = 500  # rows per INSERT statement (SQLite allows 32766 variables)
MAX_BATCH = 20_000  # tasks per transaction; the rest waits for the next turn
OUTCOME_DELAY = 0.005  # seconds an outcome waits for others to share its commit
LOCK_WAIT = 0.002  # seconds the fast path waits for the writer to finish a commit
LOOP_OUTCOMES = 2000  # outcomes per commit on the loop, which serves nothing meanwhile
_OUTCOMES = object()  # on the writer's queue: "outcomes are waiting in their deque"
_TASK_COLUMNS = (
    "queue", "name", "args_preview", "payload", "state", "enqueued_at",
    "attempts", "max_retries", "timeout", "deaths", "retry_of_id",
)  # fmt: skip
_INSERT_TASKS = f"INSERT INTO leekd_queuedtask ({', '.join(_TASK_COLUMNS)}) VALUES "


@dataclass(slots=True)
class Outcome:
    job: Job
    ok: bool
    finished_at: datetime
    duration: float = 0.0
    result: bytes | None = None
    exc_type: str = ""
    message: str = ""
    traceback: str = ""


@dataclass(slots=True)
class _PushOp:
    records: Sequence[TaskRecord]
    token: Any
    retry_of: Sequence[int | None] | None = None  # per record: the FailedTask it retries


PushDone = Callable[[list[tuple[Any, list[int] | Exception]]], None]


class Store:
    """Owns the writer thread; ``on_pushed`` is called once per commit with every answer."""

    def __init__(self, work: TaskQueue, on_pushed: PushDone) -> None:
        self.work = work
        self.on_pushed = on_pushed
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending_outcomes: list[Outcome] = []  # written when the database is back
        self._outcomes: deque[Outcome] = deque()  # from the workers, for the next commit
        self._signalled = False  # whoever commits outcomes has been told some are waiting
        self.outcomes_due: Callable[[], object] | None = None  # tells the loop (fast path)
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

    # ---- called from other threads

    def start(self) -> None:
        self._utc_text = connection.vendor == "sqlite" and connection.timezone is UTC
        if connection.vendor == "sqlite":
            self._checkpointer = Checkpointer(str(connection.settings_dict["NAME"]))
            self._checkpointer.start()
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
                ops = self._collect(retry_wait if self._pending_outcomes else None)
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

    def _write(self, ops: list[Any]) -> bool:
        pushes = [op for op in ops if isinstance(op, _PushOp)]
        outcomes = self._pending_outcomes + [op for op in ops if isinstance(op, Outcome)]
        if not pushes and not outcomes:
            return True
        # The writer keeps its one connection (no close_old_connections here: with
        # CONN_MAX_AGE=0 that would reconnect on every commit); errors drop it below.
        with self._lock:
            try:
                ids = self._commit(pushes, outcomes)
            except DatabaseError as exc:
                self._failed(exc, pushes, outcomes)
                return False
        self._pending_outcomes = []
        if not self.healthy:
            log.warning("database writable again; %d outcomes written", len(outcomes))
        self.healthy, self.last_error = True, ""
        self._settle(pushes, ids, self.on_pushed, on_loop=False)
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
                ids = self._commit(ops, outcomes, raw)
            except (DatabaseError, sqlite3.Error):
                self._outcomes.extendleft(reversed(outcomes))
                self._hand_over(ops)  # locked, say: the writer waits and reports
                return
            self.commits_on_loop += 1
        finally:
            self._lock.release()
        self._settle(ops, ids, answer, on_loop=True)

    def _hand_over(self, ops: list[_PushOp]) -> None:
        """Give the writer what the fast path could not commit: these pushes, or the outcomes."""
        for op in ops:
            self._ops.put(op)
        if not ops:
            self._signal_writer(force=True)

    def _commit(
        self, pushes: list[_PushOp], outcomes: list[Outcome], raw: Any = None
    ) -> list[list[int]]:
        """One transaction with every push and outcome; the new ids per push. Hold ``_lock``."""
        records = [r for op in pushes for r in op.records]
        retry_of = None
        if any(op.retry_of for op in pushes):
            retry_of = [x for op in pushes for x in (op.retry_of or [None] * len(op.records))]
        # A lone INSERT is its own transaction: no BEGIN and COMMIT round trips through the
        # driver, each of which gives up and takes back the GIL.
        single = not outcomes and len(records) <= INSERT_CHUNK
        with self._transaction(raw, single) as (cur, ph):
            flat = self._insert_tasks(cur, ph, records, timezone.now(), retry_of)
            self._write_outcomes(cur, ph, outcomes)
        self.commits += 1
        self.written += len(flat) + len(outcomes)
        ids, k = [], 0
        for op in pushes:
            ids.append(flat[k : k + len(op.records)])
            k += len(op.records)
        return ids

    def _settle(
        self, pushes: list[_PushOp], ids: list[list[int]], answer: PushDone, on_loop: bool
    ) -> None:
        """After a commit: answer the pushes, queue their jobs, wake the workers.

        On the loop the answers go out first: nothing else runs on the loop before the jobs
        are queued, so a client asking ``waiting`` right after its answer still sees them.
        From the writer thread the answers are only scheduled, so the jobs are queued first.
        """
        answers: list[tuple[Any, list[int] | Exception]] = [
            (op.token, op_ids) for op, op_ids in zip(pushes, ids, strict=True)
        ]
        if on_loop and answers:
            answer(answers)
        self.work.put_many(
            Job(i, r.name, r.queue, r.payload, r.max_retries, r.timeout)
            for op, op_ids in zip(pushes, ids, strict=True)
            for i, r in zip(op_ids, op.records, strict=True)
        )
        if not on_loop and answers:
            answer(answers)

    @contextmanager
    def _transaction(self, raw: Any = None, single: bool = False) -> Iterator[tuple[Any, str]]:
        """One transaction; yields a cursor and its placeholder.

        On SQLite this talks to the driver directly (``BEGIN IMMEDIATE`` … ``COMMIT``):
        Django's cursor wrapper and atomic() cost more than the commit itself on this path.
        ``single`` says the body runs one statement, which SQLite then commits by itself.
        Other databases go through Django's transaction and cursor. ``raw`` is the fast
        path's connection, already open; without it this is the writer thread.
        """
        if raw is None and self._db.vendor != "sqlite":
            with transaction.atomic(), self._db.cursor() as cur:
                yield cur, "%s"
            return
        with self._db.wrap_database_errors:
            if raw is None:
                raw = self._sqlite()
                if not self._waits:
                    raw.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                    self._waits = True
            cur = raw.cursor()
            if not single:
                cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur, "?"
                if raw.in_transaction:  # always, unless ``single``: then it committed
                    cur.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.rollback()
                raise
            finally:
                cur.close()

    def _adapt(self, value: datetime) -> Any:
        """A datetime as the database column takes it.

        SQLite's, in a UTC connection, is the naive UTC ``str()``: that is what Django's
        adapter returns, at a third of its cost (settings are looked up on every call
        there). Other cases go through Django's.
        """
        if self._utc_text and value.tzinfo is UTC:
            return str(value.replace(tzinfo=None))
        return self._db.ops.adapt_datetimefield_value(value)

    def _sqlite(self) -> Any:
        """The writer's raw SQLite connection, opened and tuned on first use. Hold ``_lock``."""
        self._db.ensure_connection()
        raw = self._db.connection
        if raw is not self._tuned:
            # Checkpoints (two fsyncs each) run in the checkpointer thread, not here.
            raw.execute("PRAGMA wal_autocheckpoint=0")
            self._busy_ms = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            self._waits = True
            mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
            sync = raw.execute("PRAGMA synchronous").fetchone()[0]
            # OFF is 0, NORMAL 1: in WAL mode neither syncs on commit, so it cannot stall.
            self._fast = raw if str(mode).lower() == "wal" and sync <= 1 else None
            self._tuned = raw
        return raw

    def _failed(self, exc: Exception, pushes: list[_PushOp], outcomes: list[Outcome]) -> None:
        self.healthy, self.last_error = False, f"{type(exc).__name__}: {exc}"
        log.error(
            "database write failed (%s): refusing %d pushes, keeping %d outcomes to write later",
            self.last_error,
            sum(len(op.records) for op in pushes),
            len(outcomes),
        )
        self._pending_outcomes = outcomes
        self._fast = None
        try:
            self._db.close()  # reconnect on the next turn
        except DatabaseError:
            pass
        if pushes:
            err = DatabaseError(f"database unavailable: {self.last_error}")
            self.on_pushed([(op.token, err) for op in pushes])

    def _insert_tasks(
        self,
        cur: Any,
        ph: str,
        records: Sequence[TaskRecord],
        now: datetime,
        retry_of: Sequence[int | None] | None,
    ) -> list[int]:
        when = self._adapt(now)
        ids: list[int] = []
        for start in range(0, len(records), INSERT_CHUNK):
            chunk = records[start : start + INSERT_CHUNK]
            params: list[Any] = []
            for k, r in enumerate(chunk, start):
                params += (
                    r.queue, r.name, r.preview, r.payload, "queued", when,
                    0, r.max_retries, r.timeout, 0, retry_of[k] if retry_of else None,
                )  # fmt: skip
            values = _INSERT_TASKS + _rows(len(_TASK_COLUMNS), len(chunk), ph)
            if len(chunk) == 1 and ph == "?":  # SQLite's own last rowid: no RETURNING table
                cur.execute(values, params)
                ids.append(cur.lastrowid)
                continue
            cur.execute(values + " RETURNING id", params)
            # Sorted: ids are allocated in VALUES order, but RETURNING promises no order.
            got = sorted(row_[0] for row_ in cur.fetchall())
            if len(got) != len(chunk):
                raise DatabaseError(f"inserted {len(chunk)} tasks but got {len(got)} ids")
            ids += got
        return ids

    def _write_outcomes(self, cur: Any, ph: str, outcomes: list[Outcome]) -> None:
        """Outcome rows and task states; an outcome whose task row is gone is dropped.

        The ``WHERE EXISTS`` matters: should someone delete a task's row while it runs, its
        outcome would otherwise fail the foreign key, and with it every commit after.
        """
        if not outcomes:
            return
        adapt = self._adapt
        self._insert_outcomes(
            cur,
            ph,
            "leekd_successtask (task_id, finished_at, duration, attempts, result)",
            [
                (o.job.id, adapt(o.finished_at), o.duration, o.job.attempts, o.result)
                for o in outcomes
                if o.ok
            ],
        )
        self._insert_outcomes(
            cur,
            ph,
            "leekd_failedtask (task_id, failed_at, attempts, exc_type, message, traceback)",
            [
                (
                    o.job.id,
                    adapt(o.finished_at),
                    o.job.attempts,
                    o.exc_type[:255],
                    o.message,
                    o.traceback,
                )
                for o in outcomes
                if not o.ok
            ],
        )
        states = [
            (o.job.id, "succeeded" if o.ok else "failed", o.job.attempts, o.job.deaths)
            for o in outcomes
        ]
        if ph != "?" or not _VALUES_TABLES:
            cur.executemany(
                f"UPDATE leekd_queuedtask SET state = {ph}, attempts = {ph}, deaths = {ph} "
                f"WHERE id = {ph}",
                [(state, attempts, deaths, i) for i, state, attempts, deaths in states],
            )
            return
        for start in range(0, len(states), INSERT_CHUNK):
            chunk = states[start : start + INSERT_CHUNK]
            cur.execute(
                "UPDATE leekd_queuedtask SET state = v.column2, attempts = v.column3, "
                f"deaths = v.column4 FROM (VALUES {_rows(4, len(chunk))}) AS v "
                "WHERE leekd_queuedtask.id = v.column1",
                [x for row in chunk for x in row],
            )

    def _insert_outcomes(self, cur: Any, ph: str, target: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert outcome rows (task id first) whose task row still exists.

        On SQLite, one statement per chunk over a ``VALUES`` table: ``executemany`` steps
        each row on its own, giving up and taking back the GIL every time.
        """
        if not rows:
            return
        width = len(rows[0])
        exists = (
            "WHERE EXISTS (SELECT 1 FROM leekd_queuedtask WHERE id = {}) ON CONFLICT DO NOTHING"
        )
        if ph != "?" or not _VALUES_TABLES:
            marks = ", ".join([ph] * width)
            cur.executemany(
                f"INSERT INTO {target} SELECT {marks} {exists.format(ph)}",
                [row + (row[0],) for row in rows],
            )
            return
        columns = ", ".join(f"v.column{i}" for i in range(1, width + 1))
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            cur.execute(
                f"INSERT INTO {target} SELECT {columns} FROM (VALUES {_rows(width, len(chunk))}) "
                f"AS v {exists.format('v.column1')}",
                [x for row in chunk for x in row],
            )


# UPDATE … FROM arrived in SQLite 3.33; before it, outcomes are written row by row.
_VALUES_TABLES = sqlite3.sqlite_version_info >= (3, 33, 0)


@functools.lru_cache(maxsize=256)
def _rows(width: int, count: int, ph: str = "?") -> str:
    """``(?, ?), (?, ?)``: ``count`` rows of ``width`` placeholders."""
    return ", ".join(["(" + ", ".join([ph] * width) + ")"] * count)


class Checkpointer(threading.Thread):
    """Checkpoints SQLite's write-ahead log off the writer's path.

    A checkpoint copies the log into the database file and syncs both; done by the writer
    (SQLite's default, every 1000 pages) it stalls the pushes of that commit for
    milliseconds. Here a passive checkpoint runs every ``interval`` on its own connection
    and never blocks the writer.
    """

    def __init__(self, path: str, interval: float = 0.5) -> None:
        super().__init__(name="leekd-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("no background checkpoints for %s: %s", self.path, exc)
            return
        try:
            while not self.stop_event.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.debug("checkpoint skipped: %s", exc)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                pass
        finally:
            conn.close()
