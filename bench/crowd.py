"""Many clients at once: N processes pushing together, as a site's web workers do.

The client of a round (``bench.drive``) starts N pushers, ``python -m bench.crowd SPEC``,
in the same Python and environment. Each makes its own connection and pushes one warm-up
task, then says ``ready``; once all are ready and the warm-up tasks are recorded, every
pusher gets ``go`` at once, pushes its share timing each push, and reports when its last
push was answered and the server's CPU at that moment. Times come from ``time.monotonic``,
one clock for every process on the machine, so the pushers' times compare with ``go``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from typing import Any

from bench import procs
from bench.drive import WARM_UP, clock, emit, percentile, wait_recorded
from bench.progress import note
from bench.rounds import EventReader

READY_TIMEOUT = WARM_UP + 30.0


def run_crowd(
    driver: Any, spec: dict[str, Any], clients: int, expected: int, pids: list[int]
) -> tuple[dict[str, Any], int]:
    """Figures of one N-client phase (keys ending in ``_cN``), and the new expected count."""
    per_client = spec.get("client_tasks") or max(1, spec["tasks"] // clients)
    timeout = spec["timeout"]
    pusher_spec = json.dumps({**spec, "client_tasks": per_client, "pids": pids})
    pushers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.crowd", pusher_spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(clients)
    ]
    try:
        readers = [EventReader(p) for p in pushers]
        deadline = time.monotonic() + READY_TIMEOUT
        for r in readers:
            r.next(max(0.0, deadline - time.monotonic()), f"{clients} clients: warm-up")
        expected += clients
        wait_recorded(driver, expected, timeout, f"{clients} clients: warm-up recorded", 0)

        note(f"  {clients} clients pushing {per_client:,} tasks each, all at once")
        cpu0 = procs.cpu_seconds(pids)
        sampled = clock()
        threads0 = procs.thread_schedules(pids)
        go = clock()
        for p in pushers:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        deadline = time.monotonic() + timeout
        results = [
            r.next(max(0.0, deadline - time.monotonic()), f"{clients} clients pushing")
            for r in readers
        ]
    finally:
        for p in pushers:
            _close(p)
    pushed = sum(r["pushed"] for r in results)
    if not pushed:
        raise procs.BenchError(f"{clients} clients: every push was refused")
    last = max(results, key=lambda r: r["done"])
    start = expected
    expected += pushed
    end = wait_recorded(driver, expected, timeout, "  … outcomes recorded", start)
    cpu_end = procs.cpu_seconds(pids)
    busiest = procs.busiest_thread(threads0, procs.thread_schedules(pids), clock() - sampled)
    lat = [us for r in results for us in r["lat"]]
    out: dict[str, Any] = {
        "errors": sum(r["errors"] for r in results),
        f"clients_c{clients}": clients,
        f"tasks_c{clients}": pushed,
        f"enqueue_c{clients}": pushed / (last["done"] - go),
        f"e2e_c{clients}": pushed / (end - go),
        f"p50_c{clients}": percentile(lat, 50) / 1000,
        f"p99_c{clients}": percentile(lat, 99) / 1000,
        f"cpu_e2e_c{clients}": (cpu_end - cpu0) / pushed * 1e6,
        f"client_cpu_c{clients}": sum(r["own_cpu"] for r in results) / len(lat) * 1e6,
    }
    if busiest is not None:
        out[f"thread_run_c{clients}"], out[f"thread_wait_c{clients}"] = busiest
    if spec.get("server_enqueues", True):
        out[f"cpu_enqueue_c{clients}"] = (last["cpu"] - cpu0) / pushed * 1e6
    return out, expected


def _close(proc: subprocess.Popen[bytes]) -> None:
    """Pushers end on their own after reporting; one that does not is killed."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def push_share(driver: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """One pusher's part after ``go``: its pushes, each timed in microseconds."""
    lat: list[int] = []
    errors = 0
    own0 = time.thread_time()
    for _ in range(spec["client_tasks"]):
        t = time.perf_counter_ns()
        ok = driver.push()
        lat.append((time.perf_counter_ns() - t) // 1000)
        errors += not ok
    done, own = clock(), time.thread_time() - own0
    return {
        "done": done,
        "own_cpu": own,
        "cpu": procs.cpu_seconds(spec["pids"]),
        "pushed": len(lat) - errors,
        "errors": errors,
        "lat": lat,
    }


def warm_up(driver: Any) -> None:
    """One accepted push: the connection is made and the code paths are loaded."""
    deadline = time.monotonic() + WARM_UP
    while not driver.push():  # a peer may refuse under load ("database is locked")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no warm-up push was accepted in {WARM_UP:g}s")
        time.sleep(0.05)


def main() -> int:
    spec = json.loads(sys.argv[1])
    driver = importlib.import_module(spec["driver"]).Driver(spec)
    try:
        warm_up(driver)
        emit({"event": "ready"})
        if sys.stdin.readline().strip() != "go":
            return 1
        emit({"event": "result", **push_share(driver, spec)})
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
