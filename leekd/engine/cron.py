"""When a schedule's ticks fall: ``every`` an interval, or on a cron line in a time zone.

Ticks are instants (aware UTC datetimes), so several leekd processes compute the same ones
and a tick can be claimed by its value. ``every`` ticks are whole multiples of the interval
since the Unix epoch ("1h" is on the hour, UTC). Cron lines are read by croniter in the
schedule's zone, with the daylight-saving rules of the classic cron daemon:

- a wall time that does not exist (clocks go forward) runs at the first moment after the
  gap: "30 2 * * *" runs at 03:00 on that day, not never;
- a wall time that happens twice (clocks go back) runs once, the first time, when the line
  names its hours; a line whose hour field is ``*`` (every n minutes) keeps running in real
  time through the repeated hour, since each of those ticks is a different instant.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

MAX_SKIPS = 10  # repeated wall times skipped in a row before giving up (there is one a year)
MAX_WALK = 200  # ticks walked forward from croniter's guess of the latest one


class Every:
    def __init__(self, seconds: float) -> None:
        if not seconds >= 1:
            raise ValueError("an interval of at least 1 second")
        self.seconds = seconds

    def next_after(self, when: datetime) -> datetime:
        k = math.floor(when.timestamp() / self.seconds) + 1
        return datetime.fromtimestamp(k * self.seconds, UTC)

    def latest(self, now: datetime) -> datetime:
        """The last tick at or before ``now``."""
        k = math.floor(now.timestamp() / self.seconds)
        return datetime.fromtimestamp(k * self.seconds, UTC)

    def __str__(self) -> str:
        return f"every {self.seconds:g}s"


class Cron:
    def __init__(self, line: str, zone: ZoneInfo) -> None:
        # Imported here: croniter (with dateutil and pytz) adds about 3 MiB to a leekd that
        # has no cron line.
        from croniter import croniter

        self._croniter: Any = croniter
        if not croniter.is_valid(line):
            raise ValueError(f"{line!r} is not a cron line (minute hour day month weekday)")
        self.line = line
        self.zone = zone
        fields = line.split()
        self.fixed_hours = len(fields) >= 2 and fields[1] != "*"

    def _repeat(self, local: datetime) -> bool:
        """True for the second occurrence of a wall time that clocks going back repeat."""
        first = local.replace(tzinfo=None).replace(tzinfo=self.zone, fold=0)
        return first.utcoffset() != local.utcoffset()

    def _skip(self, local: datetime) -> bool:
        return self.fixed_hours and self._repeat(local)

    def next_after(self, when: datetime) -> datetime:
        it = self._croniter(self.line, when.astimezone(self.zone))
        for _ in range(MAX_SKIPS):
            local = it.get_next(datetime)
            if not self._skip(local):
                return local.astimezone(UTC)
        raise ValueError(f"{self.line!r}: no tick found after {when.isoformat()}")

    def latest(self, now: datetime) -> datetime:
        """The last tick at or before ``now``.

        croniter's ``get_prev`` can land an hour early around a change of offset, so its
        answer is only a start: walk forward from it with ``next_after``, which is exact.
        """
        it = self._croniter(self.line, now.astimezone(self.zone) + timedelta(microseconds=1))
        local = it.get_prev(datetime)
        for _ in range(MAX_SKIPS):
            if not self._skip(local):
                break
            local = it.get_prev(datetime)
        tick = local.astimezone(UTC)
        for _ in range(MAX_WALK):
            nxt = self.next_after(tick)
            if nxt > now:
                return tick
            tick = nxt
        return tick

    def __str__(self) -> str:
        return f"cron {self.line!r} ({self.zone.key})"


Timing = Every | Cron
