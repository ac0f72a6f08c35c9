"""A node cut off from PostgreSQL loses its tasks after the lease and records nothing for them."""

from __future__ import annotations

import pytest

import leek

from .. import tasks
from ..helpers import SECRET, wait_for
from .conftest import one
from .proxy import Proxy
from .test_nodes import runs

pytestmark = pytest.mark.postgres


def test_a_node_cut_off_past_its_lease_loses_its_tasks_and_records_nothing_for_them(
    pg, node, postgres, tmp_path
):
    # Given two nodes, one of them (c) reaching PostgreSQL through a proxy,
    proxy = Proxy(postgres.port)
    node("a")
    c = node("c", pg_port=proxy.port)
    out = tmp_path / "runs"
    out.mkdir()
    with leek.Client(port=c.port, secret=SECRET) as on_c:
        # with tasks accepted by c, two running there and the rest waiting in its memory,
        ids = on_c.push_many([(tasks.touch, (str(out), f"t{k}", 2.0)) for k in range(6)])
        wait_for(lambda: on_c.stats()["workers"]["busy"] == 2)
        # when c is cut off from the database,
        proxy.cut()
        try:
            # then after the lease the other node takes all six over and runs them,
            wait_for(
                lambda: (
                    one(
                        pg,
                        "SELECT count(*) FROM leekd_queuedtask WHERE owner = 'a' AND id = ANY(%s)",
                        ids,
                    )
                    == 6
                ),
                timeout=10,
                what="node a taking c's tasks over",
            )
            wait_for(
                lambda: (
                    one(pg, "SELECT count(*) FROM leekd_successtask WHERE task_id = ANY(%s)", ids)
                    == 6
                ),
                timeout=15,
            )
            # while c, without a heartbeat for half its lease, starts none of those waiting.
            assert "starting no more tasks" in c.output()
        finally:
            proxy.mend()
        # Once c is back it learns it lost them, drops them, and records none of its outcomes:
        wait_for(lambda: "taken for dead" in c.output(), timeout=10)
        wait_for(lambda: "not recorded" in c.output(), timeout=10)
        assert on_c.stats()["cluster"]["lost"] >= 1
        # each task has one outcome, written by a, and c is a working node again.
        assert one(pg, "SELECT count(*) FROM leekd_successtask WHERE task_id = ANY(%s)", ids) == 6
        assert one(pg, "SELECT count(*) FROM leekd_failedtask") == 0
        ran_on_c = [
            pid for p in out.iterdir() for pid in p.read_text().split() if int(pid) == c.proc.pid
        ]
        assert len(ran_on_c) <= 2  # the two running at the cut
        assert all(n >= 1 for n in runs(out).values()) and len(runs(out)) == 6
        later = on_c.push(tasks.add, (2, 3))
        wait_for(lambda: on_c.status(later)["state"] == "succeeded", timeout=10)
        assert one(pg, "SELECT owner FROM leekd_queuedtask WHERE id = %s", later) == "c"
    proxy.cut()
