"""The figures the admin dashboard shows, from what leek already keeps.

Live counts (waiting, scheduled, running) come from the running leekd's ``stats``; without
it the page still draws from the database and says why the live part is missing. Finished
work comes from the outcome tables, each query bounded by an indexed time range
(``finished_at`` / ``failed_at``) or a row limit, so the page stays cheap on big tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from .charts import Bucket
from .models import FailedTask, QueuedTask, SuccessTask

SLOW_SAMPLE = 20_000  # latest successes of the day the percentiles are taken from
SLOWEST = 10
LATEST_FAILURES = 10


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
class Figures:
    now: datetime
    queues: list[QueueRow]
    hour: list[Bucket]
    day: list[Bucket]
    slowest: list[Slow]
    failures: list[FailedTask]
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
