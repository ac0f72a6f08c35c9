"""The SQL of an outcome commit: outcome rows and the ended tasks' states.

Beside rows.py (the pushed tasks' rows), with the same plain functions over a DB-API cursor
and its placeholder; on SQLite one statement per table over a ``VALUES`` list.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..job import Outcome
from .rows import INSERT_CHUNK, Fence, as_blob, value_rows

# UPDATE … FROM arrived in SQLite 3.33; before it, outcomes are written row by row.
VALUES_TABLES = sqlite3.sqlite_version_info >= (3, 33, 0)


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
    if ph != "?" or not VALUES_TABLES:
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
            f"deaths = v.column4 FROM (VALUES {value_rows(4, len(chunk))}) AS v "
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
            f"FROM (VALUES {value_rows(4, len(chunk), '%s::bigint, %s, %s::int, %s::int')}) "
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
    if ph != "?" or not VALUES_TABLES:
        marks = ", ".join([ph] * width)
        cur.executemany(
            f"INSERT INTO {target} SELECT {marks} {exists.format(ph)}",
            [row + (row[0],) for row in rows],
        )
        return
    columns = "" if present else ", ".join(f"v.column{i}" for i in range(1, width + 1))
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        row, params = _compact(chunk, width)
        values = value_rows(width, len(chunk), row)
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
        out[i] = as_blob(out[i])
    return tuple(out)
