"""Where pushes are committed: by the event loop when SQLite cannot stall, else by the writer."""

from __future__ import annotations

import sqlite3
import threading

import leek
from leek.protocol import Push, Pushed
from leek.records import make_record

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, wait_for
from ..rawpeer import RawPeer


def test_embedded_sqlite_commits_pushes_on_the_event_loop(make_server, django_db):
    app = make_server()
    with leek.Client(port=app.port, secret=SECRET) as c:
        ids = [c.push(tasks.noop) for _ in range(20)]
        marks = ", ".join("?" * len(ids))

        def states():
            sql = f"SELECT id, state FROM leekd_queuedtask WHERE id IN ({marks})"
            return sorted(rows(django_db, sql, *ids))

        # Every answered push has its row, and then its outcome,
        wait_for(lambda: states() == [(i, "succeeded") for i in ids])
        store = c.stats()["store"]
    # and (WAL, synchronous=NORMAL) the loop made every commit, of pushes and of outcomes:
    # the writer thread had none to do.
    assert store["commits_on_loop"] == store["commits"] > 0


def test_pipelined_pushes_share_commits(make_server):
    app = make_server(workers=1)
    n = 300
    records = [make_record(tasks.noop, (), None) for _ in range(n)]  # each its own key
    before = app.store.commits
    with RawPeer(app.port, timeout=10) as peer:
        conn = peer.handshake()
        peer.send(b"".join(conn.send(Push((r,))) for r in records))
        answers = []
        for _ in range(n):
            conn.receive_data(peer.recv_frame())
            answers.append(conn.next_event())
    ids = [a.ids[0] for a in answers if isinstance(a, Pushed)]
    assert len(ids) == n and ids == sorted(ids)
    # Answered in order, and committed in groups: what one read brought shares a commit.
    assert app.store.commits - before < n // 2


def test_a_locked_database_does_not_stall_the_loop(make_server, django_db):
    app = make_server(workers=1)
    on_loop = app.store.commits_on_loop
    lock = sqlite3.connect(django_db, timeout=10, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
    result: list[object] = []
    pusher = leek.Client(port=app.port, secret=SECRET)

    def push() -> None:
        try:  # delayed: no outcome follows, whose commit on the loop would count below
            result.append(pusher.push(tasks.noop, delay=3600))
        except leek.LeekError as exc:
            result.append(exc)

    thread = threading.Thread(target=push)
    try:
        thread.start()
        # Once leekd has read the push (its answer is owed),
        wait_for(lambda: any(c.pending for c in list(app.connections)), what="push read")
        # the loop still answers others: the push waits in the writer, not here. (Had the
        # loop waited out SQLite's 5 s busy timeout, this ping would time out.)
        with leek.Client(port=app.port, secret=SECRET, timeout=2.5) as other:
            assert other.ping()["status"] == "ok"
        assert thread.is_alive() and not result
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    thread.join(15)
    pusher.close()
    # With the lock gone, the writer commits it within its busy timeout, and answers.
    assert len(result) == 1 and isinstance(result[0], int), result
    assert app.store.commits_on_loop == on_loop
    assert rows(django_db, "SELECT state FROM leekd_queuedtask WHERE id = ?", result[0])


def test_synchronous_full_keeps_commits_off_the_loop(leekd_proc):
    # FULL syncs the log on every commit: that may take milliseconds, so the writer does it.
    p = leekd_proc("--workers", "1", LEEK_SQLITE_SYNCHRONOUS="FULL")
    with leek.Client(port=p.port, secret=SECRET) as c:
        ids = [c.push(tasks.noop) for _ in range(5)]
        wait_for(lambda: c.handled() == 5)
        store = c.stats()["store"]
    assert store["commits_on_loop"] == 0 and store["commits"] >= 2
    assert len(rows(p.db, "SELECT id FROM leekd_queuedtask")) == len(ids)


def test_default_leekd_run_commits_on_the_loop(leekd_proc):
    p = leekd_proc("--workers", "1")
    with leek.Client(port=p.port, secret=SECRET) as c:
        for _ in range(5):
            c.push(tasks.noop)
        assert c.stats()["store"]["commits_on_loop"] > 0


def test_datetimes_are_written_as_django_writes_them(server):
    from datetime import UTC, datetime, timedelta, timezone

    from django.db import connection

    ops = connection.ops
    assert server.store._utc_text  # embedded SQLite: the short way is taken
    for value in (
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: str() drops them
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    ):
        assert server.store._adapt(value) == ops.adapt_datetimefield_value(value)


def test_rows_of_one_statement_keep_their_own_optional_columns(make_server, django_db):
    """One push whose tasks differ in what they set: each row holds what its task sent, and
    NULL where it sent nothing (the statement writes unset columns as literals)."""
    import time

    app = make_server(workers=2)
    later = time.time() + 3600
    records = [
        make_record(tasks.add, (1, 2), None),
        make_record(tasks.noop, (), None, delay=3600),
        make_record(tasks.noop, (), None, unique_key="only-one", priority=5),
        make_record(tasks.add, (3, 4), None, max_retries=7, timeout=9.5),
    ]
    with RawPeer(app.port, timeout=10) as peer:
        conn = peer.handshake()
        peer.send(conn.send(Push(tuple(records))))
        conn.receive_data(peer.recv_frame())
        answer = conn.next_event()
    assert isinstance(answer, Pushed) and len(answer.ids) == 4
    ids = list(answer.ids)
    marks = ", ".join("?" * len(ids))
    got = rows(
        django_db,
        "SELECT id, name, payload, key, run_at, unique_key, priority, max_retries, timeout, "
        f"retry_of_id, attempts, deaths FROM leekd_queuedtask WHERE id IN ({marks}) ORDER BY id",
        *ids,
    )
    assert [g[0] for g in got] == ids
    for row, record in zip(got, records, strict=True):
        _, name, payload, key, run_at, unique_key, priority, retries, timeout, retry_of = row[:10]
        assert (name, bytes(payload), key) == (record.name, record.payload, record.key)
        assert (unique_key or "", priority, retries, timeout) == (
            record.unique_key,
            record.priority,
            record.max_retries,
            record.timeout,
        )
        assert retry_of is None and row[10:] == (0, 0)
        assert (run_at is not None) == bool(record.run_at)
    with leek.Client(port=app.port, secret=SECRET) as c:
        assert c.result(ids[0], timeout=10) == 3  # a result, in the same commit as
        assert c.result(ids[2], timeout=10) is None  # no result,
        assert c.result(ids[3], timeout=10) == 7  # and another
        assert c.status(ids[1])["state"] == "scheduled"
    (when,) = rows(django_db, "SELECT run_at FROM leekd_queuedtask WHERE id = ?", ids[1])[0]
    from datetime import UTC, datetime

    assert abs(datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp() - later) < 60


def test_a_lone_push_is_recorded_as_a_row_of_a_group_commit_is(make_server, django_db):
    """A turn's one plain push takes a shorter way to its row (one INSERT on the loop's
    connection): the row is the one a multi-record commit writes, and its key still makes a
    second send of it answer with the first id and record nothing more."""
    app = make_server(workers=1)
    alone = make_record(tasks.add, (5, 6), None, max_retries=4, timeout=7.5, priority=2)
    pair = [
        make_record(tasks.add, (5, 6), None, max_retries=4, timeout=7.5, priority=2),
        make_record(tasks.noop, (), None),
    ]
    with RawPeer(app.port, timeout=10) as peer:
        conn = peer.handshake()

        def push(records):
            peer.send(conn.send(Push(tuple(records))))
            conn.receive_data(peer.recv_frame())
            answer = conn.next_event()
            assert isinstance(answer, Pushed), answer
            return list(answer.ids)

        (lone_id,) = push([alone])
        group_ids = push(pair)
        assert push([alone]) == [lone_id]  # sent again: its first id, no new row
    columns = (
        "queue, name, args_preview, payload, state, attempts, max_retries, timeout, deaths, "
        "retry_of_id, priority, run_at, unique_key, epoch, owner, step, job_id"
    )
    (lone,) = rows(django_db, f"SELECT {columns} FROM leekd_queuedtask WHERE id = ?", lone_id)
    (grouped,) = rows(
        django_db, f"SELECT {columns} FROM leekd_queuedtask WHERE id = ?", group_ids[0]
    )
    # Both as pushed (the state may have moved on: compare what the push wrote).
    assert lone[:4] == grouped[:4] and lone[6:] == grouped[6:]
    (key,) = rows(django_db, "SELECT key FROM leekd_queuedtask WHERE id = ?", lone_id)[0]
    assert key == alone.key
    (count,) = rows(django_db, "SELECT count(*) FROM leekd_queuedtask WHERE key = ?", alone.key)[0]
    assert count == 1
    with leek.Client(port=app.port, secret=SECRET) as c:
        assert c.result(lone_id, timeout=10) == 11


def test_each_row_of_a_many_row_insert_gets_the_id_its_push_is_answered_with(
    make_server, django_db
):
    """A push of many records becomes INSERTs of up to INSERT_CHUNK rows, whose ids leekd
    reads from SQLite's last rowid; each answered id must name its own record's row, also
    after the newest row was deleted (AUTOINCREMENT never gives its id out again)."""
    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        first = c.push(tasks.noop)
        wait_for(lambda: rows(django_db, "SELECT state FROM leekd_queuedtask WHERE id = ?", first)
                 == [("succeeded",)])  # fmt: skip
    db = sqlite3.connect(django_db, timeout=10, isolation_level=None)
    try:
        db.execute("DELETE FROM leekd_successtask WHERE task_id = ?", (first,))
        db.execute("DELETE FROM leekd_queuedtask WHERE id = ?", (first,))
    finally:
        db.close()
    records = [make_record(tasks.add, (i, 1), None, delay=3600) for i in range(600)]
    with RawPeer(app.port, timeout=10) as peer:
        conn = peer.handshake()
        peer.send(conn.send(Push(tuple(records))))
        conn.receive_data(peer.recv_frame())
        answer = conn.next_event()
    assert isinstance(answer, Pushed), answer
    ids = list(answer.ids)
    assert ids == list(range(first + 1, first + 601))  # the deleted id is not reused
    keys = dict(rows(django_db, "SELECT id, key FROM leekd_queuedtask WHERE id > ?", first))
    assert [keys[i] for i in ids] == [r.key for r in records]
