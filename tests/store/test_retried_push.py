"""A push whose answer did not come: the client keeps to its timeout, leekd records it once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import leek
from leek.records import make_record

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for


def hold_write_lock(db, seconds: float, held: threading.Event) -> None:
    """Another process's writer, as far as leekd can tell: SQLite's write lock, held."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)  # noqa: TID251 - the length of the outage is the point
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_push_retried_after_a_timeout_is_recorded_once(tmp_path):
    db = tmp_path / "leek.sqlite3"
    p = LeekdProcess(db, env=subprocess_env()).start()
    try:
        with leek.Client(port=p.port, secret=SECRET, timeout=1.5) as c:
            c.push(tasks.noop)
            record = make_record(tasks.stamp, (str(tmp_path), "once"), None)
            # Given another process holding SQLite's write lock for longer than our timeout,
            held = threading.Event()
            locker = threading.Thread(target=hold_write_lock, args=(db, 3.0, held))
            locker.start()
            held.wait(5)
            # when a push gets no answer in time, the client gives up at its timeout, saying
            # the task may have been recorded and with which key,
            t0 = time.monotonic()
            with pytest.raises(leek.LeekTimeout, match="may have been recorded") as caught:
                c.push_records([record])
            assert time.monotonic() - t0 < 1.5 + 0.5
            assert caught.value.key == record.key
            assert isinstance(caught.value, leek.LeekConnectionError)
            locker.join()
            # and once the lock is gone, the key tells what became of the push;
            status = wait_for(lambda: lookup(c, record.key), timeout=10)
            assert status["name"] == "tests.tasks.stamp"
            # pushing the same records again returns the id recorded, and adds no row.
            assert c.push_records([record]) == [status["id"]]
            wait_for(lambda: c.status(status["id"])["state"] == "succeeded")
        # Across a restart too: the key is in the database.
        p.kill()
        p = LeekdProcess(db, env=subprocess_env()).start()
        with leek.Client(port=p.port, secret=SECRET) as c:
            assert c.push_records([record, record]) == [status["id"]] * 2
            fresh = c.push(tasks.noop)  # beside a known key, in one commit, a new push
            assert fresh > status["id"]
            with pytest.raises(leek.LeekRejected, match="no task was recorded"):
                c.status_of_key("never-pushed")
        assert rows(db, "SELECT count(*) FROM leekd_queuedtask WHERE key = ?", record.key) == [(1,)]
        wait_for(
            lambda: (
                rows(db, "SELECT count(*) FROM leekd_queuedtask WHERE state='queued'")[0][0] == 0
            )
        )
        assert (tmp_path / "stamps").read_text().count("once ") == 1, "ran more than once"
    finally:
        p.kill()


def lookup(c: leek.Client, key: str):
    try:
        return c.status_of_key(key)
    except leek.LeekRejected:
        return None


def test_a_known_key_does_not_fail_the_other_pushes_of_its_commit(leekd_proc):
    p = leekd_proc()
    with leek.Client(port=p.port, secret=SECRET) as c:
        old = make_record(tasks.noop, (), None)
        (first,) = c.push_records([old])
        new = [make_record(tasks.add, (i, i), None) for i in range(5)]
        # One frame: a known key between new ones, and a key twice.
        ids = c.push_records([new[0], old, new[1], new[2], new[2], new[3], new[4]])
        assert ids[1] == first and ids[3] == ids[4]
        assert len(set(ids)) == 6 and min(set(ids) - {first}) > first
        wait_for(lambda: c.handled() == 6)
    assert rows(p.db, "SELECT count(*) FROM leekd_queuedtask") == [(6,)]


def test_keys_of_several_processes_never_repeat_and_sort_by_when_they_were_made():
    # Given a key made here, then one made by another process (a prefix of its own),
    first = make_record(tasks.noop).key
    made = "from leek.records import make_record; print(make_record(len).key)"
    child = subprocess.run(
        [sys.executable, "-c", made], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    time.sleep(0.001)  # noqa: TID251 - the clock must move on for the order to show
    last = make_record(tasks.noop).key
    # then all three differ, the other process's prefix is its own,
    clock = len(f"{time.time_ns() >> 10:x}")
    prefix = slice(clock, clock + 24)
    assert len({first, child, last}) == 3 and all(len(k) <= 64 for k in (first, child, last))
    assert first[prefix] == last[prefix] != child[prefix]
    # and they sort in the order they were made, whichever process made them: the unique
    # index on keys grows at its right edge however many clients push at once.
    assert first < child < last
