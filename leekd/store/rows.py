"""The SQL of a group commit's pushed tasks: their rows in, and the ids they got.

The outcome rows and task states are outcomes.py's. Plain functions over a DB-API cursor
and its placeholder, so the same statements serve the event loop's raw SQLite connection
and the writer's Django cursor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError

from leek.protocol import TaskRecord

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
    blob = as_blob if ph == "?" else _same
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
        values = head + value_rows(0, len(chunk), row)
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
        (r.queue, r.name, r.preview, as_blob(r.payload), when, r.max_retries, r.timeout,
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


# Python's sqlite3 binds int, float, str and bytearray directly, and sends any other value
# (bytes, None) through its adapter registry first: a key tuple and two failed attribute
# lookups, 0.6-0.9 µs a value on Python 3.11 (a row of eleven Nones inserts four times
# slower than one of eleven ints). Hence the NULL literals in ``_task_row`` and in
# outcomes.py's ``_compact``, and short blobs copied into a bytearray (copying a long one
# would cost more than it saves).
_BLOB_COPY = 64 * 1024


def as_blob(value: Any) -> Any:
    if type(value) is bytes and len(value) <= _BLOB_COPY:
        return bytearray(value)
    return value


def _same(value: Any) -> Any:
    return value


@functools.lru_cache(maxsize=256)
def value_rows(width: int, count: int, ph: str = "?") -> str:
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
