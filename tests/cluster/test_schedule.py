"""A periodic job on three leekd nodes sharing one PostgreSQL: each tick claimed and run once."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from ..helpers import lines, wait_for
from .conftest import one

pytestmark = pytest.mark.postgres

TICK = re.compile(r"schedule tick: tick (\S+) queued")


def claims(log: str) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in TICK.findall(log)]


def test_a_periodic_job_fires_once_per_tick_across_three_nodes(pg, node, tmp_path):
    # Given three nodes with the same every-second schedule (tests/flow_settings.py),
    out = tmp_path / "runs"
    out.mkdir()
    three = [node(n, settings="tests.flow_settings", LEEK_TEST_DIR=str(out)) for n in "abc"]
    try:
        # when they have run side by side for several ticks,
        wait_for(lambda: len(lines(out / "tick-runs")) >= 6, timeout=40, what="six ticks run")
    finally:
        for p in three:
            assert p.stop() == 0
    # then each tick was claimed by exactly one node, never by two,
    by_node = [claims(p.output()) for p in three]
    claimed = sorted(t for ticks in by_node for t in ticks)
    assert len(claimed) == len(set(claimed)) >= 6
    for k, ticks in enumerate(by_node):
        for other in by_node[k + 1 :]:
            assert not set(ticks) & set(other)
    # one second apart (a tick claimed late on a starved machine is passed over, seldom),
    steps = [b - a for a, b in zip(claimed, claimed[1:], strict=False)]
    assert all(step >= timedelta(seconds=1) for step in steps)
    assert sum(step == timedelta(seconds=1) for step in steps) >= 0.75 * len(steps)
    # each claim queued one task, owned by its claimer, and no tick's task ran twice:
    name = "tests.periodic_tasks.tick"
    assert one(pg, "SELECT count(*) FROM leekd_queuedtask WHERE name = %s", name) == len(claimed)
    assert (
        one(pg, "SELECT count(*) FROM leekd_queuedtask WHERE name = %s AND owner = ''", name) == 0
    )
    runs = len(lines(out / "tick-runs"))
    succeeded = one(
        pg,
        "SELECT count(*) FROM leekd_successtask s JOIN leekd_queuedtask q ON q.id = s.task_id "
        "WHERE q.name = %s",
        name,
    )
    assert runs == succeeded <= len(claimed)
    # (the last node to stop may leave its latest ticks' tasks queued for its next start)
    assert runs >= len(claimed) - 3
