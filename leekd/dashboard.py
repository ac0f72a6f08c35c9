"""The figures the admin dashboard shows, from what leek already keeps.

Live counts (waiting, scheduled, running) come from the running leekd's ``stats``, and the
periodic schedules (with their next run, which only leekd knows) from its ``schedules``;
without it the page still draws from the database and says why the live part is missing.
Nodes come from their rows, their heartbeat ages from the database's clock, as the cluster
itself measures them. Finished
work comes from the outcome tables, each query bounded by an indexed time range
(``finished_at`` / ``failed_at``) or a row limit, so the page stays cheap on big tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, OuterRef, Subquery
from django.db.models.functions import Now, TruncHour, TruncMinute
from django.utils import timezone

from .charts import Bucket
from .models import FailedTask, Node, QueuedTask, Schedule, SuccessTask

SLOW_SAMPLE = 20_000  # latest successes of the day the percentiles are taken from
SLOWEST = 10
LATEST_FAILURES = 10
MAX_ROWS = 200  # schedules and nodes shown


@dataclass
class QueueRow:
    name: str
    waiting: int | None = None  # None: leekd did not say
    scheduled: int | None = None
    running: int | None = None
    succeeded: int = 0  # in the last 24 hours, from the database
    failed: int = 0


@dataclass
class Slow:
    name: str
    runs: int
    p50: float
    p95: float
    slowest: float


@dataclass
class ScheduleRow:
    name: str
    last_run: datetime | None = None
    next_run: datetime | None = None  # None: leekd did not say
    last_task: int | None = None
    last_state: str | None = None
    when: str = ""  # "every 3600s", a cron line; "" when leekd did not say
    target: str = ""
    queue: str = ""


@dataclass
class NodeRow:
    name: str
    address: str
    heartbeat_age: float  # seconds, by the database's clock
    lease: str  # alive, dead (its lease ran out), stopped (it left cleanly)
    waiting: int
    running: int

    @property
    def age(self) -> str:
        return seconds(self.heartbeat_age)


@dataclass
class Figures:
    now: datetime
    queues: list[QueueRow]
    hour: list[Bucket]
    day: list[Bucket]
    slowest: list[Slow]
    failures: list[FailedTask]
    schedules: list[ScheduleRow]
    nodes: list[NodeRow]
    live: dict[str, Any] | None = None  # leekd's stats, when it answered
    problem: str = ""  # why it did not

    def totals(self, buckets: list[Bucket]) -> dict[str, Any]:
        ok = sum(b.succeeded for b in buckets)
        bad = sum(b.failed for b in buckets)
        return {
            "succeeded": ok,
            "failed": bad,
            "rate": 100.0 * bad / (ok + bad) if ok + bad else 0.0,
        }

    @property
    def hour_totals(self) -> dict[str, Any]:
        return self.totals(self.hour)

    @property
    def day_totals(self) -> dict[str, Any]:
        return self.totals(self.day)


def ask_leekd() -> tuple[dict[str, Any] | None, str]:
    import leek

    try:
        return leek.get_client().stats(), ""
    except leek.LeekError as exc:
        return None, str(exc)


def gather() -> Figures:
    now = timezone.now()
    live, problem = ask_leekd()
    day_ago = now - timedelta(hours=24)
    queues = _queues(live, day_ago)
    local = timezone.localtime(now) if timezone.is_aware(now) else now
    hour_start = local.replace(second=0, microsecond=0) - timedelta(minutes=59)
    day_start = local.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    return Figures(
        now=now,
        queues=queues,
        hour=_buckets(hour_start, timedelta(minutes=1), 60, TruncMinute),
        day=_buckets(day_start, timedelta(hours=1), 24, TruncHour),
        slowest=_slowest(day_ago),
        failures=_latest_failures(),
        schedules=_schedules(live is not None),
        nodes=_nodes(),
        live=live,
        problem=problem,
    )


def _queues(live: dict[str, Any] | None, since: datetime) -> list[QueueRow]:
    rows: dict[str, QueueRow] = {}

    def row(name: str) -> QueueRow:
        return rows.setdefault(name, QueueRow(name))

    if live is not None:
        for name, counts in live.get("queues", {}).items():
            r = row(name)
            r.waiting = counts.get("waiting", 0)
            r.scheduled = counts.get("scheduled", 0)
            r.running = counts.get("running", 0)
    else:  # the database knows what is unfinished, not what is running
        unfinished = QueuedTask.objects.unfinished().values_list("queue").annotate(n=Count("id"))
        for name, n in unfinished:
            row(name).waiting = n
    done = SuccessTask.objects.filter(finished_at__gte=since)
    for name, n in done.values_list("task__queue").annotate(n=Count("id")):
        row(name).succeeded = n
    failed = FailedTask.objects.filter(failed_at__gte=since)
    for name, n in failed.values_list("task__queue").annotate(n=Count("id")):
        row(name).failed = n
    return [rows[name] for name in sorted(rows)]


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _schedules(ask: bool) -> list[ScheduleRow]:
    """leekd's schedules (``ask``: it answered ``stats``); else the rows of their last ticks."""
    import leek

    if ask:
        try:
            listed = leek.get_client().request("schedules")
        except leek.LeekError:
            listed = None
        if isinstance(listed, list):
            return [
                ScheduleRow(
                    s["name"],
                    _when(s.get("last_run")),
                    _when(s.get("next_run")),
                    s.get("last_task"),
                    s.get("last_state"),
                    s.get("when", ""),
                    s.get("target", ""),
                    s.get("queue", ""),
                )
                for s in listed[:MAX_ROWS]
            ]
    rows = [
        # Until a first claim, last_tick is only where counting starts: nothing ran.
        ScheduleRow(s.name, s.last_tick if s.claimed_at else None, None, s.last_task)
        for s in Schedule.objects.order_by("name")[:MAX_ROWS]
    ]
    ids = [r.last_task for r in rows if r.last_task]
    states = dict(QueuedTask.objects.filter(pk__in=ids).values_list("id", "state"))
    for r in rows:
        r.last_state = states.get(r.last_task)
    return rows


def lease() -> float:
    """The seconds of silence after which a node is dead: the project's ``lease`` setting."""
    from leek.errors import LeekConfigError

    from .conf import Config, resolve

    try:
        return resolve().lease
    except LeekConfigError:  # a bad setting elsewhere; leekd itself would refuse to start
        return Config.lease


def _nodes() -> list[NodeRow]:
    age = ExpressionWrapper(Now() - F("heartbeat"), output_field=DurationField())
    found = Node.objects.annotate(age=age).order_by("name")[:MAX_ROWS]
    limit = lease() if found else 0.0
    out = []
    for n in found:
        seconds = max(n.age.total_seconds(), 0.0)
        state = "stopped" if n.stopped else ("alive" if seconds < limit else "dead")
        out.append(NodeRow(n.name, n.address, seconds, state, n.waiting, n.running))
    return out


def _buckets(start: datetime, step: timedelta, count: int, trunc: Any) -> list[Bucket]:
    buckets = [Bucket(start + i * step) for i in range(count)]
    index = {b.start: b for b in buckets}
    for model, when, attr in (
        (SuccessTask, "finished_at", "succeeded"),
        (FailedTask, "failed_at", "failed"),
    ):
        counted = (
            model.objects.filter(**{f"{when}__gte": start})
            .annotate(bucket=trunc(when))
            .values_list("bucket")
            .annotate(n=Count("id"))
            .order_by()
        )
        for bucket, n in counted:
            b = index.get(bucket)
            if b is not None:
                setattr(b, attr, n)
    return buckets


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ordered, non-empty list."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _slowest(since: datetime) -> list[Slow]:
    durations: dict[str, list[float]] = defaultdict(list)
    latest = (
        SuccessTask.objects.filter(finished_at__gte=since)
        .order_by("-finished_at")
        .values_list("task__name", "duration")[:SLOW_SAMPLE]
    )
    for name, duration in latest:
        durations[name].append(duration)
    slow = []
    for name, values in durations.items():
        values.sort()
        slow.append(
            Slow(name, len(values), percentile(values, 0.5), percentile(values, 0.95), values[-1])
        )
    slow.sort(key=lambda s: (s.p95, s.p50), reverse=True)
    return slow[:SLOWEST]


def _latest_failures() -> list[FailedTask]:
    retry = QueuedTask.objects.filter(retry_of=OuterRef("pk")).order_by("-id").values("id")[:1]
    return list(
        FailedTask.objects.select_related("task")
        .defer("task__payload", "traceback")
        .annotate(retry_id=Subquery(retry))
        .order_by("-failed_at", "-id")[:LATEST_FAILURES]
    )


def seconds(value: float) -> str:
    """A duration for people: 40 µs, 12.3 ms, 1.50 s, 3m20s."""
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}m{secs:02d}s"
