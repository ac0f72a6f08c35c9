"""The client side of one round, run inside the system's own Python.

``python -m bench.drive SPEC_JSON``: warms the server up with one task, prints ``ready``
(the orchestrator then reads the server's idle RSS), waits for ``go`` on stdin, runs the
phases and prints the figures as one JSON line. Timing happens here, in a client process,
as an application would see it; so does reading the server's CPU time from /proc, at the
edges of each timed window. The N-client phases start N more processes (``bench.crowd``). Only the standard library and the system under test are
imported: leek itself is not installed in the peers' environment.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from typing import Any, Protocol

from bench import procs
from bench.progress import Progress

WARM_UP = 60.0  # seconds for the first task, server start included
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for every process on the machine


class Driver(Protocol):
    """What each system offers the workload (see ``bench/peers/*.py``)."""

    def push(self) -> bool: ...  # one no-op task; False if the system refused it
    def recorded(self) -> int: ...  # outcomes recorded in the system's database
    def close(self) -> None: ...


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    k = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[k - 1]


def wait_recorded(driver: Driver, target: int, timeout: float, label: str, start: int) -> float:
    """Poll the database until ``target`` outcomes are recorded; returns the time seen.

    The interval grows with the wait (5 ms up to 100 ms): fine resolution for fast systems,
    and little lock traffic for slow ones, whose default-journal SQLite a reader slows down.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    with Progress(label, target - start) as bar:
        while True:
            got = driver.recorded()
            now = clock()
            if got >= target:
                bar.finish(got - start)
                return now
            bar.update(got - start)
            elapsed = time.monotonic() - t0
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {got - start} of {target - start} after {timeout:g}s")
            time.sleep(min(0.1, max(0.005, elapsed * 0.005)))


def cpu_per_task(cpu: float, tasks: int) -> float:
    """Server CPU in microseconds per task."""
    return cpu / max(tasks, 1) * 1e6


def run(driver: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from bench.crowd import run_crowd

    pids = procs.descendants(spec["server_pid"])
    for pid in spec.get("also_pids", []):  # processes outside its tree that serve it (a database)
        pids += procs.descendants(pid)
    out: dict[str, Any] = {"errors": 0}
    expected = driver.recorded()
    if 1 in spec["clients"]:
        expected = one_client(driver, spec, out, expected, pids)
    for clients in spec["clients"]:
        if clients > 1:
            figures, expected = run_crowd(driver, spec, clients, expected, pids)
            out["errors"] += figures.pop("errors")
            out.update(figures)
    out["recorded"] = driver.recorded()
    return out


def one_client(
    driver: Any, spec: dict[str, Any], out: dict[str, Any], expected: int, pids: list[int]
) -> int:
    """The 1-client phases: latency, sequential pushes, ``push_many``; fills ``out``."""
    n, lat_n, timeout = spec["tasks"], spec["latency_pushes"], spec["timeout"]
    server_enqueues = spec.get("server_enqueues", True)

    def pushed(ok: bool) -> None:
        nonlocal expected
        if ok:
            expected += 1
        else:
            out["errors"] += 1

    # Latency: sequential pushes, each timed on its own.
    lat: list[float] = []
    with Progress("push latency", lat_n) as bar:
        for i in range(lat_n):
            t = time.perf_counter()
            ok = driver.push()
            lat.append(time.perf_counter() - t)
            pushed(ok)
            if i % 64 == 0:
                bar.update(i)
        bar.finish(lat_n)
    out["p50"] = percentile(lat, 50) * 1000
    out["p99"] = percentile(lat, 99) * 1000
    wait_recorded(driver, expected, timeout, "  … latency tasks recorded", expected - lat_n)

    # Sequential pushes, and the same tasks until their last outcome is recorded.
    start = expected
    with Progress("sequential push", n) as bar:
        cpu0 = procs.cpu_seconds(pids)
        t0, own0 = clock(), time.thread_time()
        for i in range(n):
            pushed(driver.push())
            if i % 256 == 0:
                bar.update(i)
        t1, own1 = clock(), time.thread_time()
        cpu1 = procs.cpu_seconds(pids)
        bar.finish(n)
    t2 = wait_recorded(driver, expected, timeout, "  … outcomes recorded", start)
    cpu2 = procs.cpu_seconds(pids)
    out["enqueue"] = (expected - start) / (t1 - t0)
    out["e2e"] = (expected - start) / (t2 - t0)
    if server_enqueues:
        out["cpu_enqueue"] = cpu_per_task(cpu1 - cpu0, expected - start)
    out["cpu_e2e"] = cpu_per_task(cpu2 - cpu0, expected - start)
    out["client_cpu"] = cpu_per_task(own1 - own0, n)  # the pushing thread's own CPU

    push_many = getattr(driver, "push_many", None)
    if push_many is not None:
        batch = spec["batch"]
        start = expected
        with Progress(f"push_many ×{batch}", n) as bar:
            cpu0 = procs.cpu_seconds(pids)
            t0 = clock()
            for i in range(0, n, batch):
                k = min(batch, n - i)
                push_many(k)
                expected += k
                bar.update(i + k)
            t1 = clock()
            cpu1 = procs.cpu_seconds(pids)
        t2 = wait_recorded(driver, expected, timeout, "  … outcomes recorded", start)
        cpu2 = procs.cpu_seconds(pids)
        out["enqueue_many"] = n / (t1 - t0)
        out["e2e_many"] = n / (t2 - t0)
        if server_enqueues:
            out["cpu_enqueue_many"] = cpu_per_task(cpu1 - cpu0, n)
        out["cpu_e2e_many"] = cpu_per_task(cpu2 - cpu0, n)
    return expected


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main() -> int:
    spec = json.loads(sys.argv[1])
    module = importlib.import_module(spec["driver"])
    driver = module.Driver(spec)
    try:
        # Warm-up: one task through the whole path (connections, imports, worker start).
        if not driver.push():
            raise RuntimeError("the warm-up task was refused")
        wait_recorded(driver, 1, WARM_UP, "warm-up", 0)
        emit({"event": "ready"})
        if sys.stdin.readline().strip() != "go":
            return 1
        emit({"event": "result", "figures": run(driver, spec)})
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
