"""When ticks fall: intervals on the epoch, cron lines in a zone across daylight-saving changes.

Europe/Berlin in 2026: clocks go forward at 02:00 on 29 March (02:00-03:00 does not exist)
and back at 03:00 on 25 October (02:00-03:00 happens twice).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from leek.errors import LeekConfigError
from leekd.engine.cron import Cron, Every
from leekd.engine.schedule import load_entries

BERLIN = ZoneInfo("Europe/Berlin")


def ticks(timing, start: datetime, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = timing.next_after(t)
        out.append(t.astimezone(BERLIN).isoformat())
    return out


def test_every_ticks_on_multiples_of_the_interval():
    e = Every(60)
    t = datetime(2026, 1, 1, 10, 0, 30, tzinfo=UTC)
    assert e.next_after(t) == datetime(2026, 1, 1, 10, 1, tzinfo=UTC)
    assert e.latest(t) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    # A tick is strictly after the one given: the same tick never comes twice.
    assert e.next_after(e.latest(t)) == e.next_after(t)


def test_a_daily_line_in_the_hour_clocks_skip_runs_once_just_after_the_gap():
    daily = Cron("30 2 * * *", BERLIN)
    assert ticks(daily, datetime(2026, 3, 28, 12, tzinfo=UTC), 3) == [
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night: not lost
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_daily_line_in_the_hour_clocks_repeat_runs_once():
    daily = Cron("30 2 * * *", BERLIN)
    assert ticks(daily, datetime(2026, 10, 24, 12, tzinfo=UTC), 3) == [
        "2026-10-25T02:30:00+02:00",  # the first 02:30; the second one (+01:00) is not run
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # Asked from inside the repeated hour, it still does not run the second 02:30.
    inside = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00+01:00, after the first 02:30
    assert daily.next_after(inside).astimezone(BERLIN).isoformat() == "2026-10-26T02:30:00+01:00"


def test_a_line_every_n_minutes_follows_real_time_through_both_changes():
    half = Cron("*/30 * * * *", BERLIN)
    autumn = [
        datetime.fromisoformat(t)
        for t in ticks(half, datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 5)
    ]
    spring = [
        datetime.fromisoformat(t) for t in ticks(half, datetime(2026, 3, 29, 0, 10, tzinfo=UTC), 3)
    ]
    for series in (autumn, spring):
        gaps = {b - a for a, b in zip(series, series[1:], strict=False)}
        assert gaps == {timedelta(minutes=30)}, series  # none twice, none lost
    assert [t.isoformat() for t in autumn[:4]] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


@pytest.mark.parametrize(
    "line, now, expected",
    [
        ("30 2 * * *", datetime(2026, 10, 25, 2, 0, tzinfo=UTC), "2026-10-25T02:30:00+02:00"),
        ("0 * * * *", datetime(2026, 10, 25, 1, 10, tzinfo=UTC), "2026-10-25T02:00:00+01:00"),
        ("30 2 * * *", datetime(2026, 3, 30, 0, 30, tzinfo=UTC), "2026-03-30T02:30:00+02:00"),
    ],
)
def test_latest_is_the_last_tick_at_or_before_now(line, now, expected):
    assert Cron(line, BERLIN).latest(now).astimezone(BERLIN).isoformat() == expected


def test_bad_entries_are_refused_with_their_name(django_db):
    with pytest.raises(LeekConfigError, match="schedule 'x'.*not a cron line"):
        load_entries({"x": {"task": "tests.tasks.noop", "cron": "61 * * * *"}}, {})
    with pytest.raises(LeekConfigError, match="schedule 'y'.*cannot import 'tests.tasks.nope'"):
        load_entries({"y": {"task": "tests.tasks.nope", "every": "1m"}}, {})
    with pytest.raises(LeekConfigError, match="schedule 'z'.*no management command 'nope'"):
        load_entries({"z": {"command": "nope", "every": "1h"}}, {})
    with pytest.raises(LeekConfigError, match="schedule 'w'.*unknown time zone"):
        load_entries(
            {"w": {"task": "tests.tasks.noop", "cron": "* * * * *", "tz": "Mars/Olympus"}}, {}
        )
    with pytest.raises(LeekConfigError, match="schedule 'v'.*not a duration"):
        load_entries({"v": {"task": "tests.tasks.noop", "every": "often"}}, {})
