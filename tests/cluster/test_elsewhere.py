"""Asking one node about a task another node holds: its result, its cancel."""

from __future__ import annotations

import threading
import time

import pytest

import leek

from .. import tasks
from ..helpers import SECRET, wait_for
from .conftest import one

pytestmark = pytest.mark.postgres


def test_a_result_waited_for_on_one_node_comes_when_another_node_records_it(pg, node):
    # Given two nodes, and a task pushed to b that runs for half a second,
    a, b = node("a"), node("b")
    with (
        leek.Client(port=a.port, secret=SECRET) as to_a,
        leek.Client(port=b.port, secret=SECRET) as to_b,
    ):
        to_b.push(tasks.noop)  # b has connected its listener and written once
        task_id = to_b.push(tasks.sleep, (0.5,))
        assert one(pg, "SELECT owner FROM leekd_queuedtask WHERE id = %s", task_id) == "b"
        # when a client of a alone (one host: it asks in one long wait) waits for it,
        started = time.monotonic()
        value = to_a.result(task_id, timeout=30)
        took = time.monotonic() - started
        # then a answers as soon as b commits the outcome, told by b's notification.
        assert value == 0.5
        assert took < 0.5 + 1.5
        cluster = to_a.request("stats")["cluster"]
        assert cluster["results_woken_elsewhere"] == 1
        # A task that ran on a wakes nothing through a notification.
        own = to_a.push(tasks.add, (1, 2))
        assert to_a.result(own, timeout=30) == 3
        assert to_a.request("stats")["cluster"]["results_woken_elsewhere"] == 1
    wait_for(lambda: one(pg, "SELECT count(*) FROM leekd_successtask") == 3)


def test_a_task_another_node_holds_is_cancelled_there(pg, node):
    # Given two nodes, and on b a task waiting for its time and one running,
    a, b = node("a"), node("b")
    with (
        leek.Client(port=a.port, secret=SECRET) as to_a,
        leek.Client(port=b.port, secret=SECRET) as to_b,
    ):
        later = to_b.push(tasks.noop, delay=60)
        running = to_b.push(tasks.sleep, (3,))
        wait_for(lambda: to_b.request("stats")["workers"]["busy"] == 1, what="b running it")
        waited: list[BaseException] = []

        def wait() -> None:
            try:
                to_a.waiter().result(later, timeout=30)
            except BaseException as exc:  # noqa: BLE001 - the test checks it
                waited.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        # when a client of a cancels the waiting one,
        reply = to_a.cancel(later)
        # then b took it out and recorded it, and the wait on a ended with the cancel;
        assert reply["cancelled"] is True and reply["node"] == "b"
        assert one(pg, "SELECT state FROM leekd_queuedtask WHERE id = %s", later) == "cancelled"
        waiter.join(10)
        assert len(waited) == 1 and isinstance(waited[0], leek.LeekCancelled)
        assert f"task {later} tests.tasks.noop cancelled" in b.output()
        # the running one is refused, with b's reason,
        with pytest.raises(leek.LeekRejected, match=r"is running.*\(on node b\)"):
            to_a.cancel(running)
        # and a task of a node that does not answer is refused with where to cancel it.
        ghost = to_b.push(tasks.noop, delay=60)
        pg.execute(
            "INSERT INTO leekd_node (name, address, pid, epoch, started_at, heartbeat, stopped, "
            "waiting, running) VALUES ('ghost', '10.0.0.9:8002', 1, 1, now(), "
            "now() + interval '1 hour', false, 0, 0)"
        )
        pg.execute("UPDATE leekd_queuedtask SET owner = 'ghost' WHERE id = %s", (ghost,))
        with pytest.raises(leek.LeekRejected) as refused:
            to_a.cancel(ghost)
        assert (
            f"belongs to node ghost, which did not answer in time; cancel it there: "
            f"leek-shell --host 10.0.0.9 --port 8002 cancel {ghost}"
        ) in str(refused.value)
        assert one(pg, "SELECT state FROM leekd_queuedtask WHERE id = %s", ghost) == "queued"
