"""The scale section, leek only: memory per waiting task, and recovering a backlog at start.

One worker is kept busy by a long task, so everything pushed behind it waits in leekd's
memory. Then leekd is killed with ``kill -9`` and started again on the same database: it
must put every unfinished record back on its queue before it answers.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.peers.leek import SECRET, start_leekd
from bench.progress import Progress, note

SETTLE = 1.0  # seconds for the allocator to settle before reading RSS
BLOCK = 3600.0  # the busy worker's task; leekd is killed long before it ends


def _client(port: int) -> Any:
    import leek

    return leek.Client(port=port, secret=SECRET, timeout=120)


def _first_ping(port: int, proc: Any, log: Path, timeout: float) -> dict[str, Any]:
    client = _client(port)

    def ping() -> dict[str, Any] | None:
        try:
            return client.ping()
        except Exception:  # not listening yet
            return None

    try:
        return procs.wait_until(ping, timeout, "leekd answering ping", proc, log, interval=0.005)
    finally:
        client.close()


def run_scale(workdir: Path, tasks: int, batch: int, timeout: float) -> dict[str, Any]:
    from bench.tasks import block, noop

    workdir.mkdir(parents=True)
    db = workdir / "scale.sqlite3"
    out: dict[str, Any] = {"tasks": tasks}
    proc = None
    try:
        # Baseline: how long a start takes with nothing to recover.
        t0 = time.monotonic()
        proc, port, log = start_leekd(workdir, db, workers=1, log_level="info")
        _first_ping(port, proc, log, 60)
        out["start_empty"] = time.monotonic() - t0

        client = _client(port)
        try:
            client.push(block, (BLOCK,))
            procs.wait_until(lambda: client.ping()["busy"] == 1, 30, "the blocking task to start")
            time.sleep(SETTLE)
            out["rss_before"] = procs.rss_mib(proc.pid)
            # The push alone, with no task run or recorded meanwhile: what each side costs.
            server = procs.descendants(proc.pid)
            with Progress(f"scale: push_many ×{batch}", tasks) as bar:
                t1, mine, theirs = (
                    time.perf_counter(),
                    time.thread_time(),
                    procs.cpu_seconds(server),
                )
                for i in range(0, tasks, batch):
                    k = min(batch, tasks - i)
                    client.push_many([noop] * k)
                    bar.update(i + k)
                out["push_rate"] = tasks / (time.perf_counter() - t1)
                out["push_client_us"] = (time.thread_time() - mine) / tasks * 1e6
                out["push_server_us"] = (procs.cpu_seconds(server) - theirs) / tasks * 1e6
            procs.wait_until(lambda: client.waiting() >= tasks, timeout, "the backlog to queue")
        finally:
            client.close()
        time.sleep(SETTLE)
        out["rss_after"] = procs.rss_mib(proc.pid)
        out["bytes_per_task"] = (out["rss_after"] - out["rss_before"]) * 2**20 / tasks

        # Crash with the backlog, then start again on the same database.
        procs.kill(proc)
        proc = None
        with sqlite3.connect(db, timeout=30) as conn:
            (unfinished,) = conn.execute(
                "SELECT COUNT(*) FROM leekd_queuedtask WHERE state = 'queued'"
            ).fetchone()
        if unfinished != tasks + 1:
            raise procs.BenchError(
                f"{unfinished} unfinished records after kill -9, not {tasks + 1}"
            )
        note(f"scale: killed leekd with {unfinished:,} unfinished tasks; starting it again")
        log2 = workdir / "leekd-restart.log"
        t0 = time.monotonic()
        proc, port, log2 = start_leekd(workdir, db, workers=1, log_level="info", log=log2)
        info = _first_ping(port, proc, log2, timeout)
        out["start_backlog"] = time.monotonic() - t0
        if info["waiting"] + info["busy"] != tasks + 1:
            raise procs.BenchError(
                f"after restart {info['waiting']} waiting + {info['busy']} running, "
                f"not {tasks + 1}{procs.tail(log2)}"
            )
        m = re.search(r"recovered (\d+) unfinished tasks in ([\d.]+)s", log2.read_text())
        out["recover_logged"] = float(m.group(2)) if m else None
        time.sleep(SETTLE)
        out["rss_recovered"] = procs.rss_mib(proc.pid)
        out["bytes_per_recovered"] = (out["rss_recovered"] - out["rss_before"]) * 2**20 / tasks
        return out
    finally:
        if proc is not None:
            procs.kill(proc)
