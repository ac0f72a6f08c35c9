"""Prometheus metrics: what leekd counts, served on ``--metrics-port`` (``leekd[metrics]``).

The engine and the store do not know this module. ``app.py`` hands ``TaskMetrics`` the
moments a task passes through (committed, started, retried, ended) only when metrics are
on, so with them off a task pays nothing. Each moment costs one lock and a few dict
updates here; ``prometheus_client`` sees the figures only when Prometheus scrapes, through
a collector that also reads the live gauges (waiting, scheduled, running) from leekd's own
counters. Names and labels are listed in the README ("Dashboard and metrics").
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from leek.errors import LeekConfigError

from .job import Job, Outcome

# Seconds. Tasks run from microseconds to hours; a wait from a push to its start is short
# when workers keep up and long when a backlog builds.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)

Key = tuple[str, ...]


class Histograms:
    """Histograms by label values, kept as plain lists: one ``bisect`` per observation."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts: dict[Key, list[int]] = {}
        self.sums: dict[Key, float] = {}

    def observe(self, key: Key, value: float) -> None:
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(self.buckets) + 1)
        counts[bisect_left(self.buckets, value)] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value

    def families(self, family: Any) -> Any:
        for key, counts in sorted(self.counts.items()):
            cumulative, running = [], 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                cumulative.append((_bound(bound), running))
            family.add_metric(list(key), cumulative, self.sums[key])
        return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class TaskMetrics:
    """Counters per queue and callable, histograms of run time and of wait before the start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pushed: Counter[Key] = Counter()
        self.succeeded: Counter[Key] = Counter()
        self.failed: Counter[Key] = Counter()
        self.retried: Counter[Key] = Counter()
        self.duration = Histograms(DURATION_BUCKETS)
        self.latency = Histograms(LATENCY_BUCKETS)
        self._due_at: dict[int, float] = {}  # task id -> Unix time it became due to start

    def committed(self, jobs: Iterable[Job]) -> list[Job]:
        """Pushes just committed (not recovered tasks: they were counted before a restart)."""
        jobs = list(jobs)
        now = time.time()
        with self._lock:
            for job in jobs:
                self.pushed[(job.queue, job.name)] += 1
                self._due_at[job.id] = max(now, job.run_at)  # a run_at is not a wait
        return jobs

    def started(self, job: Job) -> None:
        """A worker took the job: its first start measures the wait since it was due."""
        now = time.time()
        with self._lock:
            since = self._due_at.pop(job.id, None)
            if since is not None:
                self.latency.observe((job.queue,), max(now - since, 0.0))

    def retried_later(self, job: Job) -> None:
        with self._lock:
            self.retried[(job.queue, job.name)] += 1

    def ended(self, outcome: Outcome) -> None:
        key = (outcome.job.queue, outcome.job.name)
        with self._lock:
            (self.succeeded if outcome.ok else self.failed)[key] += 1
            self.duration.observe(key, outcome.duration)


class Collector:
    """What a scrape sees: ``TaskMetrics`` copied under its lock, and leekd's live gauges."""

    def __init__(self, tasks: TaskMetrics, stats: Callable[[], dict[str, Any]]) -> None:
        self.tasks = tasks
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            HistogramMetricFamily,
        )

        t = self.tasks
        labels = ["queue", "callable"]
        with t._lock:
            counters = [
                ("leek_tasks_pushed", "Tasks pushed and committed", dict(t.pushed)),
                ("leek_tasks_succeeded", "Tasks that succeeded", dict(t.succeeded)),
                ("leek_tasks_failed", "Tasks that failed their last attempt", dict(t.failed)),
                ("leek_tasks_retried", "Failed attempts given another one", dict(t.retried)),
            ]
            duration = HistogramMetricFamily(
                "leek_task_duration_seconds", "Run time of a task's last attempt", labels=labels
            )
            t.duration.families(duration)
            latency = HistogramMetricFamily(
                "leek_task_start_latency_seconds",
                "Time from a push's commit to a worker starting the task",
                labels=["queue"],
            )
            t.latency.families(latency)
        for name, doc, values in counters:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, value in sorted(values.items()):
                family.add_metric(list(key), value)
            yield family
        yield duration
        yield latency
        yield from self._gauges()

    def _gauges(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.stats()
        queues = stats.get("queues", {})
        # Cancels are counted by the engine per queue; shown for the queues it reports them for.
        cancelled = CounterMetricFamily(
            "leek_tasks_cancelled", "Tasks cancelled before they ran", labels=["queue"]
        )
        for queue, counts in sorted(queues.items()):
            if "cancelled" in counts:
                cancelled.add_metric([queue], counts["cancelled"])
        yield cancelled
        for state in ("waiting", "scheduled", "running"):
            family = GaugeMetricFamily(
                f"leek_tasks_{state}", f"Tasks {state} now, per queue", labels=["queue"]
            )
            for queue, counts in sorted(queues.items()):
                family.add_metric([queue], counts.get(state, 0))
            yield family
        workers = stats.get("workers", {})
        yield GaugeMetricFamily("leek_workers", "Worker threads", value=workers.get("total", 0))
        yield GaugeMetricFamily(
            "leek_workers_busy", "Worker threads running a task", value=workers.get("busy", 0)
        )
        yield GaugeMetricFamily(
            "leek_connections", "Client connections open", value=stats.get("connections", 0)
        )
        store = stats.get("store", {})
        yield GaugeMetricFamily(
            "leek_store_backlog", "Writes waiting for the database", value=store.get("backlog", 0)
        )
        yield GaugeMetricFamily(
            "leek_store_healthy",
            "1 while the database accepts writes",
            value=1 if store.get("healthy", True) else 0,
        )


class MetricsServer:
    """The HTTP endpoint (prometheus_client's own server, in a daemon thread)."""

    def __init__(self, host: str, port: int, collector: Collector) -> None:
        try:
            from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
        except ImportError:
            raise LeekConfigError(
                "--metrics-port needs prometheus-client: pip install 'leekd[metrics]'"
            ) from None
        self.registry = CollectorRegistry()
        self.registry.register(collector)  # type: ignore[arg-type]
        ProcessCollector(registry=self.registry)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise LeekConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                "pick another --metrics-port"
            ) from None
        self.host = host
        self.port = int(self._server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
