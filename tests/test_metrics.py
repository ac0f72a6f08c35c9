"""Prometheus metrics: scrape a real leekd after a known workload, parse with prometheus_client."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from . import tasks
from .helpers import wait_for

parser = pytest.importorskip("prometheus_client.parser")


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by name, then by its sorted labels."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def one(samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def test_metrics_after_a_known_workload(make_server, tmp_path: Path):
    # Given leekd with metrics on, three tasks that succeed on "alpha" and two on "beta"
    # that fail both of their attempts, and one that fails once and then succeeds,
    app = make_server(metrics_port=0)
    assert app.metrics.url.startswith("http://127.0.0.1:")
    import leek

    with leek.Client(port=app.port, secret=b"test-secret-0123456789abcdef") as c:
        ok = [c.push(tasks.add, (i, i), queue="alpha") for i in range(3)]
        bad = [c.push(tasks.fail, ("x",), queue="beta", max_retries=2) for _ in range(2)]
        flaky = c.push(tasks.fail_until, (str(tmp_path), "f", 1), queue="beta", max_retries=2)
        for task_id in ok + [flaky]:
            wait_for(lambda t=task_id: c.status(t)["state"] == "succeeded")
        for task_id in bad:
            wait_for(lambda t=task_id: c.status(t)["state"] == "failed")
    # when Prometheus scrapes,
    m = scrape(app.metrics.url)
    add, fail, flaky_name = "tests.tasks.add", "tests.tasks.fail", "tests.tasks.fail_until"
    # then the counters say what happened, per queue and callable,
    assert one(m, "leek_tasks_pushed_total", queue="alpha", callable=add) == 3
    assert one(m, "leek_tasks_pushed_total", queue="beta", callable=fail) == 2
    assert one(m, "leek_tasks_succeeded_total", queue="alpha", callable=add) == 3
    assert one(m, "leek_tasks_succeeded_total", queue="beta", callable=flaky_name) == 1
    assert one(m, "leek_tasks_failed_total", queue="beta", callable=fail) == 2
    assert one(m, "leek_tasks_retried_total", queue="beta", callable=fail) == 2
    assert one(m, "leek_tasks_retried_total", queue="beta", callable=flaky_name) == 1
    assert ("callable", add) not in {k for key in m["leek_tasks_failed_total"] for k in key}
    # the histograms count each task's last attempt, and each task's first start once,
    assert one(m, "leek_task_duration_seconds_count", queue="alpha", callable=add) == 3
    assert one(m, "leek_task_duration_seconds_bucket", queue="alpha", callable=add, le="+Inf") == 3
    assert one(m, "leek_task_duration_seconds_sum", queue="alpha", callable=add) < 1.0
    assert one(m, "leek_task_start_latency_seconds_count", queue="alpha") == 3
    assert one(m, "leek_task_start_latency_seconds_count", queue="beta") == 3
    buckets = sorted(
        (float(dict(k)["le"]), v)
        for k, v in m["leek_task_start_latency_seconds_bucket"].items()
        if dict(k)["queue"] == "alpha"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    # and the gauges show an idle server: nothing waiting, scheduled or running.
    for state in ("waiting", "scheduled", "running"):
        assert one(m, f"leek_tasks_{state}", queue="alpha") == 0
    assert one(m, "leek_workers") == 2 and one(m, "leek_workers_busy") == 0
    assert one(m, "leek_store_healthy") == 1
    assert "process_resident_memory_bytes" in m


def test_gauges_show_waiting_and_running_tasks(make_server, tmp_path: Path):
    app = make_server(metrics_port=0, workers=1)
    import leek

    with leek.Client(port=app.port, secret=b"test-secret-0123456789abcdef") as c:
        first = c.push(tasks.touch, (str(tmp_path), "slow", 1.0))
        c.push(tasks.noop)
        wait_for(lambda: (tmp_path / "slow").exists() or c.status(first)["state"] == "running")
        m = scrape(app.metrics.url)
        assert one(m, "leek_tasks_running", queue="default") == 1
        assert one(m, "leek_tasks_waiting", queue="default") == 1
        assert one(m, "leek_workers_busy") == 1


def test_leekd_run_metrics_port_flag(leekd_proc):
    proc = leekd_proc("--metrics-port", "0")
    found = wait_for(
        lambda: re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", proc.output())
    )
    m = scrape(found.group(1))
    assert one(m, "leek_workers") == 4


def test_metrics_off_by_default(server):
    assert server.metrics is None
    assert all(q.observer is None for q in server.engine.queues.values())


def test_a_taken_metrics_port_is_a_clear_error(make_server):
    from leek.errors import LeekConfigError

    app = make_server(metrics_port=0)
    with pytest.raises(LeekConfigError, match="cannot serve metrics on 127.0.0.1"):
        make_server(metrics_port=app.metrics.port)


def test_start_latency_counts_from_run_at_not_from_the_push(make_server):
    app = make_server(metrics_port=0)
    import leek

    with leek.Client(port=app.port, secret=b"test-secret-0123456789abcdef") as c:
        later = c.push(tasks.noop, queue="later", delay=0.5)
        wait_for(lambda: c.status(later)["state"] == "succeeded")
    m = scrape(app.metrics.url)
    assert one(m, "leek_task_start_latency_seconds_count", queue="later") == 1
    assert one(m, "leek_task_start_latency_seconds_sum", queue="later") < 0.4
    assert one(m, "leek_tasks_cancelled_total", queue="later") == 0  # none cancelled here
    with leek.Client(port=app.port, secret=b"test-secret-0123456789abcdef") as c:
        c.cancel(c.push(tasks.noop, queue="later", delay=3600))
    m = scrape(app.metrics.url)
    assert one(m, "leek_tasks_cancelled_total", queue="later") == 1
