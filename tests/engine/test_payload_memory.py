"""Waiting payloads are held in memory up to ``payload_memory``; the rest waits on disk."""

from __future__ import annotations

import os
import pickle
import resource
from pathlib import Path

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for

MiB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def backlog(tmp_path: Path, count: int, size: int, budget: int | None) -> tuple[int, int, int]:
    """Push ``count`` payloads of ``size`` bytes behind a busy worker; all of them then run.

    Returns leekd's RSS before and with the backlog, and the payload bytes it held.
    """
    env = subprocess_env(**({"LEEK_PAYLOAD_MEMORY": str(budget)} if budget is not None else {}))
    p = LeekdProcess(tmp_path / "leek.sqlite3", "--workers", "1", env=env).start()
    assert p.proc is not None
    gate = tmp_path / "gate"
    try:
        with leek.Client(port=p.port, secret=SECRET, timeout=120) as c:
            c.push(tasks.wait_for_file, (str(gate),))
            wait_for(lambda: c.stats()["workers"]["busy"] == 1)
            idle = rss(p.proc.pid)
            ids = [c.push(tasks.size_of, (os.urandom(size),)) for _ in range(count)]
            held, full = c.stats()["payload_bytes"], rss(p.proc.pid)
            gate.touch()  # the worker goes on; every payload left on disk is read back
        done = "SELECT count(*) FROM leekd_queuedtask WHERE state = 'succeeded'"
        wait_for(lambda: rows(p.db, done)[0][0] == count + 1, timeout=120, what="the backlog")
        got = rows(p.db, "SELECT result FROM leekd_successtask WHERE task_id >= ?", ids[0])
        assert [pickle.loads(r) for (r,) in got] == [size] * count
        return idle, full, held
    finally:
        p.kill()


def test_waiting_payloads_beyond_the_budget_stay_on_disk(tmp_path):
    # Given a 16 MiB budget and ten 8 MiB pushes waiting behind a busy worker,
    idle, full, held = backlog(tmp_path, count=10, size=8 * MiB, budget=16 * MiB)
    # then leekd holds at most its budget of them (not 80 MiB), and all ran with their data.
    assert held <= 16 * MiB
    assert full - idle < 60 * MiB, f"RSS grew by {(full - idle) / MiB:.0f} MiB"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thirty_15_mib_pushes_under_the_default_budget(tmp_path):
    idle, full, held = backlog(tmp_path, count=30, size=15 * MiB, budget=None)
    print(
        f"\n30 x 15 MiB waiting: RSS {idle / MiB:.0f} MiB idle, {full / MiB:.0f} MiB with the "
        f"backlog; {held / MiB:.0f} MiB of payloads held in memory"
    )
    assert held <= 256 * MiB
    assert full - idle < 256 * MiB + 100 * MiB


def test_out_of_memory_while_reading_a_push_is_unavailable_not_a_reset(leekd_proc):
    p = leekd_proc("--workers", "1")
    assert p.proc is not None
    # Given leekd under a memory limit 40 MiB above what it uses now (prlimit on it),
    status = Path(f"/proc/{p.proc.pid}/status").read_text()
    size = next(int(line.split()[1]) * 1024 for line in status.splitlines() if "VmSize" in line)
    resource.prlimit(p.proc.pid, resource.RLIMIT_AS, (size + 40 * MiB, resource.RLIM_INFINITY))
    with leek.Client(port=p.port, secret=SECRET, timeout=30) as c:
        # when a push needs more memory than that to be read,
        with pytest.raises(leek.LeekUnavailable, match="out of memory: not recorded"):
            c.push(tasks.size_of, (os.urandom(15 * MiB),))
        # then it is refused as such, and leekd serves on.
        assert c.ping()["status"] == "ok"
        small = c.push(tasks.size_of, (b"x" * 1000,))
        wait_for(lambda: c.status(small)["state"] == "succeeded")
    assert "out of memory reading from" in p.output()
