"""After a crash, only the task that killed leekd is blamed, not the ones running beside it."""

from __future__ import annotations

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for


def poison_failed(p: LeekdProcess) -> bool:
    """True if this leekd failed the culprit at start (it then lives on)."""
    try:
        wait_for(lambda: "recorded as failed" in p.output(), timeout=1)
    except AssertionError:
        return False
    return True


def crash_rounds(
    tmp_path, innocents: int, workers: int, rounds: int, queues: tuple[str, ...] = ()
) -> tuple[int, list[int], int]:
    """Push ``innocents`` slow tasks and one that kills leekd, restart it after each death.

    Returns the poison's id, the innocents' ids and how many times leekd died.
    """
    db = tmp_path / "leek.sqlite3"
    args: tuple[str, ...] = ("--workers", str(workers), "--max-deaths", "2")
    for name in queues:
        args += ("--queue", f"{name}={workers}")
    procs: list[LeekdProcess] = []

    def start() -> LeekdProcess:
        p = LeekdProcess(db, *args, env=subprocess_env())
        procs.append(p)
        try:
            p.start()
        except AssertionError:
            pass  # it may die before it even says it listens
        return p

    try:
        p = start()
        with leek.Client(port=p.port, secret=SECRET) as c:
            calls = [(tasks.sleep, (0.8,)) for _ in range(innocents)]
            # Second in line: it starts beside the first one, and beside more with more workers.
            ids = c.push_many([calls[0], (tasks.exit_process, (1, 0.3)), *calls[1:]])
            for name in queues:  # and beside a neighbour in each other pool
                ids += c.push_many([(tasks.sleep, (0.8,))], queue=name)
                innocents += 1
        poison, innocent = ids[1], [ids[0], *ids[2:]]
        deaths = 0
        # Each time leekd dies, it is restarted, as systemd's Restart=always would.
        while p.wait(30) == 1:
            deaths += 1
            assert deaths <= rounds, f"leekd died {deaths} times:\n{p.output()}"
            p = start()
            if poison_failed(p):
                break
        wait_for(
            lambda: (
                rows(db, "SELECT count(*) FROM leekd_queuedtask WHERE state = 'succeeded'")[0][0]
                == innocents
            ),
            timeout=60,
        )
        assert p.proc is not None and p.proc.poll() is None
        return poison, innocent, deaths
    finally:
        for p in procs:
            p.kill()


def test_a_task_running_beside_a_crashing_one_is_not_blamed(tmp_path):
    # Given a slow task running when another task takes leekd down (os._exit(1)),
    poison, innocent, deaths = crash_rounds(tmp_path, innocents=1, workers=2, rounds=4)
    db = tmp_path / "leek.sqlite3"
    # then after restarts the neighbour has run to success with no death counted,
    (state, n), *_ = rows(db, "SELECT state, deaths FROM leekd_queuedtask WHERE id = ?", *innocent)
    assert (state, n) == ("succeeded", 0)
    # and only the culprit reached max_deaths: both of its deaths were alone.
    assert rows(db, "SELECT state, deaths FROM leekd_queuedtask WHERE id = ?", poison) == [
        ("failed", 2)
    ]
    assert rows(db, "SELECT message FROM leekd_failedtask") == [
        ("leekd died while running it 2 times",)
    ]
    assert deaths == 3  # with the neighbour, then twice alone


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_many_crash_rounds_blame_only_the_culprit(tmp_path):
    poison, innocent, deaths = crash_rounds(tmp_path, innocents=12, workers=4, rounds=20)
    db = tmp_path / "leek.sqlite3"
    print(f"\nleekd died {deaths} times; 12 neighbours, 1 culprit")
    assert rows(db, "SELECT id, deaths FROM leekd_queuedtask WHERE state = 'failed'") == [
        (poison, 2)
    ]
    states = rows(db, "SELECT state, deaths FROM leekd_queuedtask WHERE id != ?", poison)
    assert states == [("succeeded", 0)] * 12


def test_neighbours_in_other_pools_are_not_blamed_either(tmp_path):
    # Given named queues, each with its own pool, and a neighbour running in another pool,
    poison, innocent, deaths = crash_rounds(
        tmp_path, innocents=1, workers=2, rounds=4, queues=("mail",)
    )
    db = tmp_path / "leek.sqlite3"
    # then the suspects ran one at a time across the pools: only the culprit was blamed.
    for task_id in innocent:
        assert rows(db, "SELECT state, deaths FROM leekd_queuedtask WHERE id = ?", task_id) == [
            ("succeeded", 0)
        ]
    assert rows(db, "SELECT state, deaths FROM leekd_queuedtask WHERE id = ?", poison) == [
        ("failed", 2)
    ]
    assert deaths == 3
