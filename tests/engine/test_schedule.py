"""Periodic schedules on a real leekd: ticks counted, claimed once by two processes sharing a
database (SQLite and PostgreSQL), run once after a downtime, bad entries refused at start."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import leek
from leekd.cli import shell

from ..helpers import ROOT, SECRET, LeekdProcess, lines, subprocess_env, wait_for
from ..postgres import PostgresServer
from .conftest import migrate

TICK = re.compile(r"schedule (\S+): tick (\S+) (queued|skipped)")


def ticks(log: str, name: str, kind: str = "queued") -> list[datetime]:
    return [datetime.fromisoformat(t) for n, t, k in TICK.findall(log) if n == name and k == kind]


def until(seconds: float) -> None:
    """Let ``seconds`` of wall time pass (ticks are wall-clock events), within a deadline."""
    end = time.time() + seconds
    wait_for(lambda: time.time() >= end, timeout=seconds + 5, interval=0.05, what="time to pass")


def test_every_second_fires_once_a_second(make_server, tmp_path):
    from django.utils import timezone

    from leekd.models import QueuedTask

    name = f"in-process-{tmp_path.name}"
    entry = {"task": "tests.tasks.touch", "args": [str(tmp_path), "ticks"], "every": "1s"}
    before, since = time.time(), timezone.now()
    app = make_server(schedule={name: entry})
    after = time.time()
    until(3.5)
    stop_before = time.time()
    app.request_stop()
    wait_for(app.stopped.is_set)
    stop_after = time.time()
    queued = QueuedTask.objects.filter(name="tests.tasks.touch", enqueued_at__gte=since).count()
    # One task per whole second that passed while it ran: never more, never one missing.
    assert math.floor(stop_before) - math.floor(after) <= queued
    assert queued <= math.floor(stop_after) - math.floor(before)
    assert queued >= 3 and len(lines(tmp_path / "ticks")) >= queued - 1


def start(tmp_path: Path, env: dict[str, str], n: int) -> LeekdProcess:
    p = LeekdProcess(
        tmp_path / "flow.sqlite3",
        "--settings",
        "tests.flow_settings",
        env=env,
        log=tmp_path / f"leekd-{n}.log",
    )
    return p.start()


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_leekd_on_one_database_run_each_tick_once(backend, request, tmp_path):

    extra = {"LEEK_TEST_DIR": str(tmp_path), "LEEK_TEST_DB": str(tmp_path / "flow.sqlite3")}
    if backend == "postgres":
        extra["LEEK_TEST_PG_PORT"] = str(request.getfixturevalue("postgres").port)
    env = subprocess_env(**extra)
    migrate(env)
    # Given two leekd processes on one database, both with the same every-second schedules,
    first, second = start(tmp_path, env, 1), start(tmp_path, env, 2)
    try:
        # when they have run side by side for a few seconds,
        wait_for(lambda: len(ticks(first.output() + second.output(), "tick")) >= 5, timeout=30)
        with leek.Client(port=first.port, secret=SECRET) as c:
            listing = c.request("schedules")
            out = io.StringIO()
            shell.cmd_schedule(c, shell.build_parser().parse_args(["schedule"]), out)
            names = [c.request("stats").get("cluster", {}).get("node")]
        with leek.Client(port=second.port, secret=SECRET) as c:
            names.append(c.request("stats").get("cluster", {}).get("node"))
    finally:
        assert first.stop() == 0 and second.stop() == 0
    logs = first.output() + second.output()
    # then every tick was claimed by exactly one of them, with none left out in between,
    claimed = sorted(ticks(logs, "tick"))
    assert len(claimed) == len(set(claimed)) >= 5
    # (a tick whose claim came more than a second late, on a starved machine, is passed over
    # for the next one: never run twice, and seldom)
    steps = [b - a for a, b in zip(claimed, claimed[1:], strict=False)]
    assert all(step >= timedelta(seconds=1) for step in steps)
    assert sum(step == timedelta(seconds=1) for step in steps) >= 0.75 * len(steps)
    both = ticks(first.output(), "tick"), ticks(second.output(), "tick")
    assert not set(both[0]) & set(both[1])
    # and, with several nodes on PostgreSQL, no claimed tick's task ran twice (one still queued
    # at the stop runs at the next start). Two leekd on one SQLite file are not nodes: each
    # recovers every unfinished task at its start, the other's included (see README).
    if backend == "postgres":
        # (two nodes on ephemeral ports of one machine are two names, not one name twice)
        assert names[0] != names[1] and None not in names
        # (whose crash ledgers no later run would read: a clean stop removed them)
        assert not list(tmp_path.glob("leekd-*.running"))
        assert len(lines(tmp_path / "tick-runs")) <= len(claimed)
    # and each claimed tick queued one task, which ran once.
    runs = len(lines(tmp_path / "tick-runs"))
    assert len(claimed) - 2 <= runs <= len(claimed)
    # The management command ran, with its arguments, and so did the decorated function.
    assert lines(tmp_path / "command-runs")[0].startswith("hello ")
    assert lines(tmp_path / "beat-runs")
    by_name = {r["name"]: r for r in listing}
    assert set(by_name) >= {"tick", "touch-command", "nightly", "tests.periodic_tasks.beat"}
    assert by_name["touch-command"]["target"] == "manage.py leek_test_touch"
    assert by_name["tick"]["last_task"] and by_name["tick"]["next_run"]
    assert by_name["nightly"]["when"] == "cron '30 2 * * *' (Europe/Berlin)"
    assert by_name["nightly"]["next_run"].endswith("+00:00")
    text = out.getvalue()
    assert "tick" in text and "manage.py leek_test_touch" in text and "last run" in text


def test_ticks_missed_while_down_run_once_or_are_skipped(flow_env, tmp_path):
    # Given leekd running the every-second schedules,
    p = start(tmp_path, flow_env, 1)
    wait_for(lambda: len(lines(tmp_path / "tick-runs")) >= 2, timeout=30)
    assert p.stop() == 0
    last_before = max(ticks(p.output(), "tick"))
    # when it is down for several ticks and comes back,
    until(3.5)
    p = start(tmp_path, flow_env, 2)
    ready = time.time()
    wait_for(lambda: len(ticks(p.output(), "tick")) >= 3, timeout=30)
    assert p.stop() == 0
    log = p.output()
    # then the ticks missed meanwhile ran once, at start, as their latest one (catch_up,
    # the default), and the ticks after it each once;
    done = sorted(ticks(log, "tick"))
    assert done[0] - last_before >= timedelta(seconds=3)
    assert done[0].timestamp() <= ready + 1
    assert {b - a for a, b in zip(done, done[1:], strict=False)} == {timedelta(seconds=1)}
    # and the schedule with catch_up False skipped that tick instead of running it.
    first = next(m for m in TICK.finditer(log) if m.group(1) == "no-catch-up")
    assert first.group(3) == "skipped"
    assert len(ticks(log, "no-catch-up", "skipped")) == 1


@pytest.mark.parametrize(
    "bad, name, why",
    [
        ("task", "broken", "cannot import 'tests.periodic_tasks.missing'"),
        ("cron", "bad-cron", "is not a cron line"),
        ("command", "no-command", "no management command 'no_such_command'"),
    ],
)
def test_a_bad_schedule_entry_stops_leekd_run_and_fails_check(flow_env, tmp_path, bad, name, why):
    env = {**flow_env, "LEEK_TEST_BAD": bad}
    run = subprocess.run(
        [sys.executable, "-m", "leekd", "run", "--settings", "tests.flow_settings", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 78, run.stderr
    assert f"schedule {name!r}" in run.stderr and why in run.stderr
    check = subprocess.run(
        [sys.executable, "-m", "django", "check", "--settings", "tests.flow_settings"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1 and "leekd.E004" in check.stderr and name in check.stderr


def test_a_schedule_on_a_queue_this_leekd_does_not_serve_stops_it_at_start(django_db):
    from leek.errors import LeekConfigError
    from leekd.app import Leekd
    from leekd.conf import Config

    config = Config(
        port=0,
        queues={"default": 1},
        schedule={"reports": {"task": "tests.tasks.noop", "every": "1m", "queue": "reports"}},
    ).validate()
    with pytest.raises(LeekConfigError, match="schedule 'reports': queue 'reports' is not served"):
        Leekd(config, SECRET.encode())
