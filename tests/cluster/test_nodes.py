"""Three leekd nodes on one PostgreSQL: spread, takeover of a killed node, stop and start."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

import leek

from .. import tasks
from ..helpers import SECRET, wait_for
from .conftest import one

pytestmark = pytest.mark.postgres


def runs(directory: Path) -> Counter[str]:
    """How many times each task ran, from the lines ``tasks.touch`` leaves."""
    return Counter({p.name: len(p.read_text().split()) for p in directory.iterdir()})


def hosts(*nodes) -> str:
    return ",".join(f"127.0.0.1:{n.port}" for n in nodes)


def test_pushes_spread_and_a_killed_nodes_tasks_are_finished_by_the_others(pg, node, tmp_path):
    # Given three nodes, and clients that each know all three,
    a, b, c = node("a"), node("b"), node("c")
    out = tmp_path / "runs"
    out.mkdir()
    clients = [leek.Client(hosts=hosts(a, b, c), secret=SECRET) for _ in range(3)]
    # when they push, their pushes land on every node;
    ids = [cl.push(tasks.touch, (str(out), f"warm{k}")) for k, cl in enumerate(clients)]
    owners = dict(pg.execute("SELECT id, owner FROM leekd_queuedtask").fetchall())
    assert {owners[i] for i in ids} == {"a", "b", "c"}
    # and when one node is killed while it has tasks waiting,
    on_c = next(cl for cl in clients if cl.port == c.port)
    pushed = on_c.push_many([(tasks.touch, (str(out), f"t{k}", 0.2)) for k in range(40)])
    wait_for(lambda: one(pg, "SELECT count(*) FROM leekd_successtask") >= 5)
    c.kill()
    # then the others finish every one of its answered tasks within the lease and a margin,
    wait_for(
        lambda: one(pg, "SELECT count(*) FROM leekd_queuedtask WHERE state = 'queued'") == 0,
        timeout=2 + 10,
        what="the killed node's tasks finished elsewhere",
    )
    assert one(pg, "SELECT count(*) FROM leekd_successtask WHERE task_id = ANY(%s)", pushed) == 40
    owners = dict(pg.execute("SELECT id, owner FROM leekd_queuedtask").fetchall())
    assert {owners[i] for i in pushed} & {"a", "b"}  # c finished some before it died
    # none is lost, and only those running at the kill (two workers) ran twice.
    counts = runs(out)
    assert all(counts[f"t{k}"] >= 1 for k in range(40))
    assert sum(1 for n in counts.values() if n > 1) <= 2
    assert "took over" in a.output() + b.output()
    # The nodes request shows the dead node expired and the others alive.
    info = next(cl for cl in clients if cl.port != c.port).request("nodes")
    assert {n["name"]: n["lease"] for n in info["nodes"]} == {
        "a": "alive",
        "b": "alive",
        "c": "expired",
    }
    for cl in clients:
        cl.close()


def test_a_client_keeps_pushing_while_a_node_stops_and_starts(pg, node, tmp_path):
    # Given two nodes and a client that knows both, pushing all the time,
    a, b = node("a"), node("b")
    client = leek.Client(hosts=hosts(a, b), secret=SECRET)
    first = a if client.port == a.port else b
    ids: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def pusher() -> None:
        try:
            while not stop.is_set() and len(ids) < 5000:
                ids.append(client.push(tasks.add, (1, 2)))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        wait_for(lambda: len(ids) > 20 or errors)
        # when the node it talks to stops and starts again,
        assert first.stop() == 0
        seen = len(ids)
        wait_for(lambda: len(ids) > seen + 20 or errors, what="pushes to the other node")
        first.start()
        seen = len(ids)
        wait_for(lambda: len(ids) > seen + 20 or errors)
    finally:
        stop.set()
        thread.join(30)
    # then no push failed, none was recorded twice, and every task ran.
    assert not errors
    assert len(set(ids)) == len(ids)
    wait_for(
        lambda: (
            one(pg, "SELECT count(*) FROM leekd_successtask WHERE task_id = ANY(%s)", ids)
            == len(ids)
        ),
        timeout=20,
    )
    assert one(pg, "SELECT count(*) FROM leekd_queuedtask") == len(ids)
    client.close()


def test_a_push_sent_again_to_another_node_is_recorded_once(pg, node):
    # Given two nodes, and a push one of them recorded whose answer the client never read,
    a, b = node("a"), node("b")
    from leek.records import make_record

    record = make_record(tasks.add, (2, 2), None)
    other = make_record(tasks.add, (3, 3), None)
    with (
        leek.Client(port=a.port, secret=SECRET) as to_a,
        leek.Client(port=b.port, secret=SECRET) as to_b,
    ):
        (first,) = to_a.push_records([record])
        # when the client sends it again to the other node, beside a new record,
        again, new = to_b.push_records([record, other])
    # then that node answers with the id the first one gave, and records only the new one.
    assert again == first and new != first
    assert one(pg, "SELECT count(*) FROM leekd_queuedtask") == 2
    wait_for(lambda: one(pg, "SELECT count(*) FROM leekd_successtask") == 2)
