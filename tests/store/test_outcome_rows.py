"""Outcome rows and task states of one commit, written on SQLite as leekd's store writes them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from leek.records import make_record
from leekd.job import Job, Outcome
from leekd.store.outcomes import write_outcomes
from leekd.store.rows import insert_tasks

from .. import tasks
from ..conftest import rows


def _adapt(value: datetime) -> str:
    return value.isoformat(" ")[:-6]


def _commit(db, write):
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")  # as Django's connections have it
    try:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        out = write(cur)
        cur.execute("COMMIT")
        return out
    finally:
        conn.close()


def _outcomes(ids, failed=()):
    now = datetime.now(UTC)
    out = []
    for i in ids:
        job = Job(i, "tests.tasks.noop", "default", b"", attempts=1)
        if i in failed:
            out.append(Outcome(job, False, now, 0.01, exc_type="ValueError", message="no"))
        else:
            out.append(Outcome(job, True, now, 0.01, worker="w"))
    return out


def _pushed(db, n):
    records = [make_record(tasks.noop, (), None, delay=3600) for _ in range(n)]
    return _commit(db, lambda cur: insert_tasks(cur, "?", records, datetime.now(UTC), _adapt, None))


def _recorded(db, ids):
    marks = ", ".join("?" * len(ids))
    states = dict(rows(db, f"SELECT id, state FROM leekd_queuedtask WHERE id IN ({marks})", *ids))
    ok = {
        i
        for (i,) in rows(
            db, f"SELECT task_id FROM leekd_successtask WHERE task_id IN ({marks})", *ids
        )
    }
    bad = {
        i
        for (i,) in rows(
            db, f"SELECT task_id FROM leekd_failedtask WHERE task_id IN ({marks})", *ids
        )
    }
    return states, ok, bad


def test_every_outcome_of_a_commit_is_recorded_with_its_task_state(django_db):
    ids = _pushed(django_db, 5)
    _commit(
        django_db, lambda cur: write_outcomes(cur, "?", _outcomes(ids, failed={ids[1]}), _adapt)
    )
    states, ok, bad = _recorded(django_db, ids)
    assert states == {i: "failed" if i == ids[1] else "succeeded" for i in ids}
    assert ok == set(ids) - {ids[1]} and bad == {ids[1]}


def test_an_outcome_whose_task_row_is_gone_is_dropped_and_the_others_are_recorded(django_db):
    # A task row deleted while its task ran (by hand, or a purge of the admin): the others
    # of the same commit are written, and the commit does not fail on the foreign key.
    ids = _pushed(django_db, 4)
    gone = ids[2]
    _commit(
        django_db, lambda cur: cur.execute("DELETE FROM leekd_queuedtask WHERE id = ?", (gone,))
    )
    _commit(
        django_db, lambda cur: write_outcomes(cur, "?", _outcomes(ids, failed={ids[0]}), _adapt)
    )
    states, ok, bad = _recorded(django_db, ids)
    assert gone not in states and gone not in ok | bad
    assert states == {i: "failed" if i == ids[0] else "succeeded" for i in ids if i != gone}
    assert ok == {ids[1], ids[3]} and bad == {ids[0]}
