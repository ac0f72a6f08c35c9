"""Asking one node about a task another node holds: its result, its cancel."""

from __future__ import annotations

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
