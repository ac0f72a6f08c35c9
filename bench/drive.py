"""The client side of one round, run inside the system's own Python.

``python -m bench.drive SPEC_JSON``: warms the server up with one task, prints ``ready``
(the orchestrator then reads the server's idle RSS), waits for ``go`` on stdin, runs the
phases and prints the figures as one JSON line. Timing happens here, in a client process,
as an application would see it. Only the standard library and the system under test are
imported: leek itself is not installed in the peers' environment.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from typing import Any, Protocol

from bench.progress import Progress

WARM_UP = 60.0  # seconds for the first task, server start included


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
            now = time.perf_counter()
            if got >= target:
                bar.finish(got - start)
                return now
            bar.update(got - start)
            elapsed = time.monotonic() - t0
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {got - start} of {target - start} after {timeout:g}s")
            time.sleep(min(0.1, max(0.005, elapsed * 0.005)))


def run(driver: Any, spec: dict[str, Any]) -> dict[str, Any]:
    n, lat_n, timeout = spec["tasks"], spec["latency_pushes"], spec["timeout"]
    out: dict[str, Any] = {"errors": 0}
    expected = driver.recorded()

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
        t0 = time.perf_counter()
        for i in range(n):
            pushed(driver.push())
            if i % 256 == 0:
                bar.update(i)
        t1 = time.perf_counter()
        bar.finish(n)
    t2 = wait_recorded(driver, expected, timeout, "  … outcomes recorded", start)
    out["enqueue"] = (expected - start) / (t1 - t0)
    out["e2e"] = (expected - start) / (t2 - t0)

    push_many = getattr(driver, "push_many", None)
    if push_many is not None:
        batch = spec["batch"]
        start = expected
        with Progress(f"push_many ×{batch}", n) as bar:
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                k = min(batch, n - i)
                push_many(k)
                expected += k
                bar.update(i + k)
            t1 = time.perf_counter()
        t2 = wait_recorded(driver, expected, timeout, "  … outcomes recorded", start)
        out["enqueue_many"] = n / (t1 - t0)
        out["e2e_many"] = n / (t2 - t0)
    out["recorded"] = driver.recorded()
    return out


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
