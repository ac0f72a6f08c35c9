"""Claims: a dead node's unfinished tasks, and at start a node's own, each by exactly one node.

Every claim is ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``: two nodes
claiming at once lock disjoint rows, so a task changes hands once; a row another node is
writing an outcome for is locked, skipped, and finished by then. Claiming moves the row to
the claimer at the claimer's epoch, which fences the previous owner out (rows.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection, transaction

from ..job import Job

CHUNK = 500  # tasks per claim: a dead node's backlog moves in several transactions
_COLUMNS = "id, name, queue, payload, max_retries, timeout, deaths, priority, run_at"


def _jobs(rows: Iterable[tuple[Any, ...]]) -> list[Job]:
    jobs = []
    for tid, name, queue, payload, retries, timeout, deaths, priority, run_at in rows:
        when = run_at.timestamp() if run_at is not None else 0.0
        jobs.append(
            Job(tid, name, queue, bytes(payload), retries, timeout, priority, when, deaths=deaths)
        )
    jobs.sort(key=lambda j: j.id)
    return jobs


def _claim(cur: Any, me: str, epoch: int, where: str, params: list[Any]) -> list[Job]:
    cur.execute(
        f"UPDATE leekd_queuedtask SET owner = %s, epoch = %s WHERE id IN (SELECT id FROM "
        f"leekd_queuedtask WHERE state = 'queued' AND ({where}) ORDER BY id LIMIT {CHUNK} "
        f"FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}",
        [me, epoch, *params],
    )
    return _jobs(cur.fetchall())


def adopt(me: str, epoch: int, put_many: Callable[[Iterable[Job]], object]) -> int:
    """At start (or after learning we were taken for dead): our unfinished tasks, at our new
    epoch, plus any nobody owns (recorded before this database had several nodes)."""
    n = 0
    while True:
        with transaction.atomic(), connection.cursor() as cur:
            jobs = _claim(cur, me, epoch, "owner = %s AND epoch <> %s OR owner = ''", [me, epoch])
        put_many(jobs)
        n += len(jobs)
        if len(jobs) < CHUNK:
            return n


def still_mine(me: str, epoch: int, ids: set[int]) -> set[int]:
    """Of these task ids, the ones this node still owns at ``epoch`` and has not finished."""
    if not ids:
        return set()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id FROM leekd_queuedtask WHERE id = ANY(%s) AND owner = %s AND epoch = %s "
            "AND state = 'queued'",
            [sorted(ids), me, epoch],
        )
        return {row[0] for row in cur.fetchall()}


def take_over(me: str, epoch: int, lease: float) -> tuple[str | None, list[Job]]:
    """One chunk of one dead (or cleanly stopped) node's unfinished tasks, claimed for us.

    The dead node's row is locked for the claim (another claimer skips it) and its epoch
    moved on, so should it come back, its next heartbeat tells it what happened.
    """
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "SELECT name FROM leekd_node n WHERE name <> %s AND (stopped OR heartbeat < now() - "
            "make_interval(secs => %s)) AND EXISTS (SELECT 1 FROM leekd_queuedtask q WHERE "
            "q.owner = n.name AND q.state = 'queued') ORDER BY heartbeat "
            "FOR UPDATE SKIP LOCKED LIMIT 1",
            [me, lease],
        )
        row = cur.fetchone()
        if row is None:
            return None, []
        dead = row[0]
        cur.execute("UPDATE leekd_node SET epoch = epoch + 1 WHERE name = %s", [dead])
        return dead, _claim(cur, me, epoch, "owner = %s", [dead])


def renew(me: str, epoch: int) -> None:
    """Our unfinished tasks move to our new epoch (after we joined again)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE leekd_queuedtask SET epoch = %s WHERE owner = %s AND state = 'queued' "
            "AND epoch <> %s",
            [epoch, me, epoch],
        )
