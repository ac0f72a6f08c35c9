"""The SQL of a group commit: task rows in, outcome rows and task states out.

Plain functions over a DB-API cursor and its placeholder, so the same statements serve the
event loop's raw SQLite connection and the writer's Django cursor.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError

from leek.protocol import TaskRecord

from ..job import Outcome

INSERT_CHUNK = 500  # rows per INSERT statement (SQLite allows 32766 variables)
_TASK_COLUMNS = (
    "queue", "name", "args_preview", "payload", "state", "enqueued_at",
    "attempts", "max_retries", "timeout", "deaths", "retry_of_id",
    "priority", "run_at", "key", "unique_key",
)  # fmt: skip
_INSERT_TASKS = f"INSERT INTO leekd_queuedtask ({', '.join(_TASK_COLUMNS)}) VALUES "
# With several nodes each row also names its owner and epoch; alone, the defaults do.
_OWNED_COLUMNS = (*_TASK_COLUMNS, "owner", "epoch")
_INSERT_OWNED = f"INSERT INTO leekd_queuedtask ({', '.join(_OWNED_COLUMNS)}) VALUES "
Fence = tuple[str, int]  # (node, epoch): who may write a task's outcome


def owned(fence: Fence | None) -> dict[str, Any]:
    """ORM fields that make a new task row this node's, as its pushes are (several nodes)."""
    return {} if fence is None else {"owner": fence[0], "epoch": fence[1]}


def insert_tasks(
    cur: Any,
    ph: str,
    records: Sequence[TaskRecord],
    now: datetime,
    adapt: Callable[[datetime], Any],
    retry_of: Sequence[int | None] | None,
    owner: Fence | None = None,
) -> list[int]:
    when = adapt(now)
    ids: list[int] = []
    head = _INSERT_TASKS if owner is None else _INSERT_OWNED
    blob = _blob if ph == "?" else _same
    for start in range(0, len(records), INSERT_CHUNK):
        chunk = records[start : start + INSERT_CHUNK]
        retries = retry_of[start : start + len(chunk)] if retry_of else None
        # What a push leaves unset is written as a literal in every row of the chunk, or
        # bound for all of them once one row sets it (the statement stays one of a few).
        has_retry = retries is not None and any(x is not None for x in retries)
        has_run_at = any(r.run_at for r in chunk)
        has_key = any(r.key for r in chunk)
        has_unique = any(r.unique_key for r in chunk)
        params: list[Any] = []
        for k, r in enumerate(chunk):
            params += (r.queue, r.name, r.preview, blob(r.payload), when, r.max_retries, r.timeout)
            if has_retry:
                params.append(retries[k])  # type: ignore[index]
            params.append(r.priority)
            if has_run_at:
                params.append(adapt(datetime.fromtimestamp(r.run_at, UTC)) if r.run_at else None)
            if has_key:
                params.append(r.key or None)
            if has_unique:
                params.append(r.unique_key or None)
            if owner is not None:
                params += owner
        row = _task_row(ph, has_retry, has_run_at, has_key, has_unique, owner is not None)
        values = head + _rows(0, len(chunk), row)
        if ph == "?":
            # SQLite gives the rows of one INSERT consecutive ids in VALUES order (each one
            # more than the largest the table has had, under the write lock the statement
            # holds), so the last names them all; a RETURNING table of them cost a small
            # commit 15-25 % more.
            cur.execute(values, params)
            last = cur.lastrowid
            if cur.rowcount != len(chunk) or not last:
                raise DatabaseError(f"inserted {len(chunk)} tasks but {cur.rowcount} rows")
            ids += range(last - len(chunk) + 1, last + 1)
            continue
        cur.execute(values + " RETURNING id", params)
        # Sorted: ids are allocated in VALUES order, but RETURNING promises no order.
        got = sorted(row_[0] for row_ in cur.fetchall())
        if len(got) != len(chunk):
            raise DatabaseError(f"inserted {len(chunk)} tasks but got {len(got)} ids")
        ids += got
    return ids


@functools.lru_cache(maxsize=64)
def _task_row(ph: str, retry: bool, run_at: bool, key: bool, unique: bool, owned: bool) -> str:
    """One task row's VALUES text, in ``_TASK_COLUMNS`` order: a new task's fixed state,
    and ``NULL`` for each optional column no row of the statement sets."""

    def opt(bound: bool) -> str:
        return ph if bound else "NULL"

    row = (
        f"{ph}, {ph}, {ph}, {ph}, 'queued', {ph}, 0, {ph}, {ph}, 0, {opt(retry)}, {ph}, "
        f"{opt(run_at)}, {opt(key)}, {opt(unique)}"
    )
    return f"{row}, {ph}, {ph}" if owned else row


def insert_one(raw: Any, r: TaskRecord, when: Any) -> int:
    """A lone plain record (a key; no delay, unique key or owner) on SQLite's fast path: one
    autocommitted ``INSERT``, without the cursor, chunks and transaction of a group commit."""
    return raw.execute(
        _INSERT_ONE,
        (r.queue, r.name, r.preview, _blob(r.payload), when, r.max_retries, r.timeout,
         r.priority, r.key),
    ).lastrowid  # fmt: skip


def insert_all(
    cur: Any,
    ph: str,
    records: Sequence[TaskRecord],
    now: datetime,
    adapt: Callable[[datetime], Any],
    retry_of: Sequence[int | None] | None,
    owner: Fence | None,
    unique: bool,
) -> tuple[list[int], list[bool] | None]:
    """The ids, and (with ``unique``: some record has a ``unique_key``) which were inserted."""
    if unique:  # each record looked up first: the key's holder takes it
        return insert_deduped(cur, ph, records, now, adapt, retry_of, owner)
    return insert_tasks(cur, ph, records, now, adapt, retry_of, owner), None


def insert_deduped(
    cur: Any,
    ph: str,
    records: Sequence[TaskRecord],
    now: datetime,
    adapt: Callable[[datetime], Any],
    retry_of: Sequence[int | None] | None,
    owner: Fence | None = None,
) -> tuple[list[int], list[bool]]:
    """``insert_tasks`` for records that may be recorded already, one at a time.

    A push whose answer was lost is sent again with the same keys, perhaps to another node;
    a record with a ``unique_key`` that an unfinished task holds belongs to that task. Such
    a record gets the id recorded first and inserts nothing, so the other pushes of the
    commit go through. Returns the ids and, per record, whether it was inserted. Inside the
    commit's transaction (on SQLite, under its write lock) two records of one unique key in
    one commit find each other too; the partial unique index is the guarantee (a node that
    loses a race to another fails its commit, and the store does it again, deduplicated).
    """
    ids: list[int] = []
    fresh: list[bool] = []
    sent = f"SELECT id FROM leekd_queuedtask WHERE key = {ph}"
    held = f"SELECT id FROM leekd_queuedtask WHERE unique_key = {ph} AND state = 'queued'"
    for k, r in enumerate(records):
        row = None
        if r.key:
            cur.execute(sent, [r.key])
            row = _first(cur)
        if row is None and r.unique_key:
            cur.execute(held, [r.unique_key])
            row = _first(cur)
        if row is not None:
            ids.append(row[0])
            fresh.append(False)
            continue
        ids += insert_tasks(cur, ph, [r], now, adapt, [retry_of[k]] if retry_of else None, owner)
        fresh.append(True)
    return ids, fresh


def _first(cur: Any) -> Any:
    """The first row, reading them all: a statement left unfinished would hold SQLite up."""
    rows = cur.fetchall()
    return rows[0] if rows else None


def write_outcomes(
    cur: Any,
    ph: str,
    outcomes: list[Outcome],
    adapt: Callable[[datetime], Any],
    fence: Fence | None = None,
) -> list[Outcome]:
    """Outcome rows and task states; an outcome whose task row is gone is dropped.

    The task states go first, and on SQLite say how many task rows are there; only when one
    is missing are the outcome rows inserted ``WHERE EXISTS`` their task, each looked up.
    That matters: should someone delete a task's row while it runs, its outcome would
    otherwise fail the foreign key, and with it every commit after.
    With a ``fence`` only tasks this node still owns at its epoch are written; returns the
    outcomes left out (their tasks were taken over by another node).
    """
    if not outcomes:
        return []
    retried = [o for o in outcomes if not o.final]
    if retried:
        _insert_outcomes(
            cur,
            ph,
            "leekd_attempt (task_id, number, finished_at, duration, worker, exc_type, message, "
            "traceback)",
            [
                (
                    o.job.id,
                    o.attempt,
                    adapt(o.finished_at),
                    o.duration,
                    o.worker,
                    o.exc_type[:255],
                    o.message,
                    o.traceback,
                )
                for o in retried
            ],  # fmt: skip
        )
        outcomes = [o for o in outcomes if o.final]
        if not outcomes:
            return []
    lost: list[Outcome] = []
    if fence is not None:
        outcomes, lost = _fenced_states(cur, outcomes, fence)
        present = False
    else:
        # States first: when every task row took its new state, every outcome row has its
        # task, and goes in without a lookup of it each (under the same write lock).
        present = _write_states(cur, ph, outcomes) == len(outcomes)
    _insert_outcomes(
        cur,
        ph,
        "leekd_successtask (task_id, finished_at, duration, attempts, result, worker)",
        [
            (o.job.id, adapt(o.finished_at), o.duration, o.job.attempts, o.result, o.worker)
            for o in outcomes
            if o.ok
        ],
        present,
    )
    _insert_outcomes(
        cur,
        ph,
        "leekd_failedtask (task_id, failed_at, attempts, exc_type, message, traceback, "
        "duration, worker)",
        [
            (
                o.job.id,
                adapt(o.finished_at),
                o.job.attempts,
                o.exc_type[:255],
                o.message,
                o.traceback,
                o.duration,
                o.worker,
            )
            for o in outcomes
            if not o.ok
        ],
        present,
    )
    return lost


def _write_states(cur: Any, ph: str, outcomes: list[Outcome]) -> int | None:
    """The ended tasks' states; how many task rows took theirs (None: not counted)."""
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
        return None
    updated = 0
    for start in range(0, len(states), INSERT_CHUNK):
        chunk = states[start : start + INSERT_CHUNK]
        cur.execute(
            "UPDATE leekd_queuedtask SET state = v.column2, attempts = v.column3, "
            f"deaths = v.column4 FROM (VALUES {_rows(4, len(chunk))}) AS v "
            "WHERE leekd_queuedtask.id = v.column1",
            [x for row in chunk for x in row],
        )
        updated += cur.rowcount
    return updated


def _fenced_states(
    cur: Any, outcomes: list[Outcome], fence: Fence
) -> tuple[list[Outcome], list[Outcome]]:
    """Task states first, only where ``fence`` still owns the task (PostgreSQL).

    The UPDATE locks each row it writes until the commit, so a takeover (which skips locked
    rows and takes only unfinished ones) can no longer move it; the outcome rows follow for
    the tasks it returned. Returns (written, lost).
    """
    mine: set[int] = set()
    for start in range(0, len(outcomes), INSERT_CHUNK):
        chunk = outcomes[start : start + INSERT_CHUNK]
        params: list[Any] = []
        for o in chunk:
            params += (o.job.id, "succeeded" if o.ok else "failed", o.job.attempts, o.job.deaths)
        cur.execute(
            "UPDATE leekd_queuedtask AS t SET state = v.s, attempts = v.a, deaths = v.d "
            f"FROM (VALUES {_rows(4, len(chunk), '%s::bigint, %s, %s::int, %s::int')}) "
            "AS v(i, s, a, d) WHERE t.id = v.i AND t.owner = %s AND t.epoch = %s "
            "AND t.state = 'queued' RETURNING t.id",
            [*params, *fence],
        )
        mine.update(row[0] for row in cur.fetchall())
    written = [o for o in outcomes if o.job.id in mine]
    return written, [o for o in outcomes if o.job.id not in mine]


def _insert_outcomes(
    cur: Any, ph: str, target: str, rows: list[tuple[Any, ...]], present: bool = False
) -> None:
    """Insert outcome rows (task id first) whose task row still exists; ``present``: every
    one's does (the states just written found them all), so none is looked up.

    On SQLite, one statement per chunk over a ``VALUES`` table: ``executemany`` steps
    each row on its own, giving up and taking back the GIL every time.
    """
    if not rows:
        return
    width = len(rows[0])
    exists = "WHERE EXISTS (SELECT 1 FROM leekd_queuedtask WHERE id = {}) ON CONFLICT DO NOTHING"
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
        row, params = _compact(chunk, width)
        values = _rows(width, len(chunk), row)
        if present:
            cur.execute(f"INSERT INTO {target} VALUES {values} ON CONFLICT DO NOTHING", params)
            continue
        cur.execute(
            f"INSERT INTO {target} SELECT {columns} FROM (VALUES {values}) "
            f"AS v {exists.format('v.column1')}",
            params,
        )


def _compact(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[str, list[Any]]:
    """SQLite rows → one row's VALUES text and the flat parameters: a column that is None
    in every row is written ``NULL``, and short blobs are bound as ``bytearray``.

    Only the columns the first row has None or bytes in are looked at: outcome rows are
    typed, so the others hold neither (and a column that does is merely bound as it is).
    """
    first = rows[0]
    loose = [i for i in range(width) if first[i] is None or type(first[i]) is bytes]
    if not loose:
        return "?", [x for row in rows for x in row]
    null = [i for i in loose if all(row[i] is None for row in rows)]
    blobs = [i for i in loose if i not in null]
    if blobs:
        rows = [_blobs_of(row, blobs) for row in rows]
    if not null:
        return "?", [x for row in rows for x in row]
    keep = [i for i in range(width) if i not in null]
    text = ", ".join("?" if i in keep else "NULL" for i in range(width))
    get = operator.itemgetter(*keep)  # the task id, column 0, is always kept
    if len(keep) == 1:
        return text, [get(row) for row in rows]
    return text, [x for row in rows for x in get(row)]


def _blobs_of(row: tuple[Any, ...], columns: list[int]) -> tuple[Any, ...]:
    out = list(row)
    for i in columns:
        out[i] = _blob(out[i])
    return tuple(out)


# Python's sqlite3 binds int, float, str and bytearray directly, and sends any other value
# (bytes, None) through its adapter registry first: a key tuple and two failed attribute
# lookups, 0.6-0.9 µs a value on Python 3.11 (a row of eleven Nones inserts four times
# slower than one of eleven ints). Hence the NULL literals above and in ``_task_row``, and
# short blobs copied into a bytearray (copying a long one would cost more than it saves).
_BLOB_COPY = 64 * 1024


def _blob(value: Any) -> Any:
    if type(value) is bytes and len(value) <= _BLOB_COPY:
        return bytearray(value)
    return value


def _same(value: Any) -> Any:
    return value


# UPDATE … FROM arrived in SQLite 3.33; before it, outcomes are written row by row.
_VALUES_TABLES = sqlite3.sqlite_version_info >= (3, 33, 0)


@functools.lru_cache(maxsize=256)
def _rows(width: int, count: int, ph: str = "?") -> str:
    """``(?, ?), (?, ?)``: ``count`` rows of ``width`` placeholders (or one row's text)."""
    row = ph if "," in ph else ", ".join([ph] * width)
    return ", ".join(["(" + row + ")"] * count)


def split_ids(flat: list[int], sizes: list[int]) -> list[list[int]]:
    """One commit's new ids, in record order, cut back into one list per push."""
    ids, k = [], 0
    for n in sizes:
        ids.append(flat[k : k + n])
        k += n
    return ids


_INSERT_ONE = f"{_INSERT_TASKS}({_task_row('?', False, False, True, False, False)})"
