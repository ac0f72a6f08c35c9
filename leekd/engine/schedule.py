"""Periodic schedules: which entries there are, and the thread that fires their ticks.

Entries come from ``settings.LEEK["schedule"]`` and from ``@leek.periodic`` (read after the
task modules are imported). Each is checked at start: a missing callable or command, a bad
cron line or interval stops leekd with a message naming the entry.

The ``Scheduler`` sleeps until the earliest next tick (a timed wait on its stop event;
nothing polls), then hands each due tick to ``claim``, which app.py wires to the store: the
tick is claimed in the database and its task committed with it, or another leekd had
claimed it first. A schedule that fell behind (leekd was down, or busy) runs its latest
tick once, never once per tick missed; with ``catch_up`` False, a tick that fell due
before this leekd started is skipped instead.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.module_loading import import_string

from leek.errors import LeekConfigError
from leek.protocol import TaskRecord
from leek.records import make_record, validate_options, validate_schedule

from ..conf import parse_duration
from .cron import Cron, Every, Timing

log = logging.getLogger("leekd.schedule")

KEYS = frozenset(
    {"task", "command", "cron", "every", "args", "kwargs", "queue", "priority"}
    | {"max_retries", "timeout", "tz", "catch_up"}
)
MAX_WAIT = 60.0  # seconds between looks at the clock even with no tick due (clock changes)
RETRY_WAIT = 5.0  # after the database refused a claim
CATCH_UP_STEPS = 1000  # ticks walked forward to find the latest due one


@dataclass
class Entry:
    name: str
    timing: Timing
    target: str  # the dotted callable, or the management command
    command: bool = False
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # queue, priority, retries, timeout
    catch_up: bool = True

    def record(self) -> TaskRecord:
        """The task a tick queues."""
        if self.command:
            from django.core.management import call_command

            return make_record(call_command, (self.target, *self.args), self.kwargs, **self.options)
        return make_record(import_string(self.target), self.args, self.kwargs, **self.options)

    def describe(self) -> str:
        return f"manage.py {self.target}" if self.command else self.target


def _entry(name: str, spec: Any, zone: str) -> Entry:
    where = f"schedule {name!r}"
    if not isinstance(spec, Mapping):
        raise LeekConfigError(f"{where}: must be a dict with task or command, and cron or every")
    unknown = set(spec) - KEYS
    if unknown:
        raise LeekConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    if ("task" in spec) == ("command" in spec):
        raise LeekConfigError(f"{where}: give task (a dotted callable) or command, not both")
    if ("cron" in spec) == ("every" in spec):
        raise LeekConfigError(f'{where}: give cron ("0 3 * * *") or every ("15m"), not both')
    try:
        tz = ZoneInfo(spec.get("tz") or zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise LeekConfigError(f"{where}: unknown time zone {spec.get('tz') or zone!r}") from None
    try:
        timing: Timing
        if "cron" in spec:
            timing = Cron(str(spec["cron"]), tz)
        else:
            timing = Every(parse_duration(spec["every"]))
    except ValueError as exc:
        raise LeekConfigError(f"{where}: {exc}") from None
    args, kwargs = spec.get("args", ()), spec.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        raise LeekConfigError(f"{where}: args must be a list and kwargs a dict")
    options = {k: spec[k] for k in ("queue", "priority", "max_retries", "timeout") if k in spec}
    try:
        validate_options(options.get("queue"), options.get("max_retries"), options.get("timeout"))
        validate_schedule(options.get("priority"), None)
    except Exception as exc:
        raise LeekConfigError(f"{where}: {exc}") from None
    command = "command" in spec
    target = str(spec["command" if command else "task"])
    entry = Entry(
        name, timing, target, command, tuple(args), dict(kwargs), options,
        bool(spec.get("catch_up", True)),
    )  # fmt: skip
    _check_target(entry, where)
    return entry


def _check_target(entry: Entry, where: str) -> None:
    if entry.command:
        from django.core.management import get_commands

        if entry.target not in get_commands():
            raise LeekConfigError(f"{where}: there is no management command {entry.target!r}")
    else:
        try:
            fn = import_string(entry.target)
        except ImportError as exc:
            raise LeekConfigError(f"{where}: cannot import {entry.target!r}: {exc}") from None
        if not callable(fn):
            raise LeekConfigError(f"{where}: {entry.target!r} is not callable")
    try:
        entry.record()
    except Exception as exc:  # arguments that cannot be pickled
        raise LeekConfigError(f"{where}: its task cannot be made: {exc}") from None


def import_task_modules(settings_schedule: Any) -> None:
    """Import the modules settings entries name, so their ``@leek.periodic`` run too."""
    if not isinstance(settings_schedule, Mapping):
        return
    for spec in settings_schedule.values():
        if isinstance(spec, Mapping) and isinstance(spec.get("task"), str):
            module = spec["task"].rpartition(".")[0]
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # reported, with the entry's name, by _check_target


def load_entries(
    settings_schedule: Any, registry: Mapping[str, Any], zone: str = "UTC"
) -> list[Entry]:
    """Every schedule, checked: ``settings.LEEK["schedule"]`` and ``@leek.periodic``."""
    if settings_schedule is None:
        settings_schedule = {}
    if not isinstance(settings_schedule, Mapping):
        raise LeekConfigError('settings.LEEK["schedule"] must be a dict: name → entry')
    specs = {**registry, **settings_schedule}  # settings win over a decorator's defaults
    return [_entry(str(name), spec, zone) for name, spec in specs.items()]


# (entry, last tick read, new tick, run it?) → (the last tick stored now, whether we won it)
Claim = Callable[[Entry, "datetime | None", datetime, bool], "tuple[datetime | None, bool]"]


class Scheduler(threading.Thread):
    """Fires due ticks through ``claim(entry, old, new, run)``."""

    def __init__(
        self,
        entries: list[Entry],
        last: dict[str, datetime | None],
        claim: Claim,
        started: datetime,
    ) -> None:
        super().__init__(name="leekd-scheduler", daemon=True)
        self.entries = entries
        self.last = dict(last)
        self.claim = claim
        self.started = started
        self.stop_event = threading.Event()
        self.fired = 0

    def next_run(self, entry: Entry) -> datetime:
        last = self.last.get(entry.name)
        return entry.timing.next_after(last) if last else entry.timing.next_after(self.started)

    def run(self) -> None:
        while not self.stop_event.is_set():
            wait = self.step(datetime.now(UTC))
            self.stop_event.wait(wait)

    def step(self, now: datetime) -> float:
        """Fire what is due at ``now``; returns the seconds until the next tick."""
        wake = now + timedelta(seconds=MAX_WAIT)
        for entry in self.entries:
            try:
                due = self._fire(entry, now)
            except Exception as exc:  # the database may be down: try again soon
                log.error(
                    "schedule %s: could not claim its tick (%s: %s); trying again in %gs",
                    entry.name,
                    type(exc).__name__,
                    exc,
                    RETRY_WAIT,
                )
                due = now + timedelta(seconds=RETRY_WAIT)
            wake = min(wake, due)
        return max((wake - datetime.now(UTC)).total_seconds(), 0.0)

    def _fire(self, entry: Entry, now: datetime) -> datetime:
        for _ in range(3):  # lost races: another leekd claimed the tick, look again
            due = self.next_run(entry)
            if due > now:
                return due
            tick = max(due, entry.timing.latest(now))
            for _ in range(CATCH_UP_STEPS):
                nxt = entry.timing.next_after(tick)
                if nxt > now:
                    break
                tick = nxt
            run = entry.catch_up or tick >= self.started
            old = self.last.get(entry.name)
            t0 = time.monotonic()
            stored, won = self.claim(entry, old, tick, run)
            self.last[entry.name] = stored
            if won:
                self.fired += 1
                log.log(
                    logging.INFO if run else logging.WARNING,
                    "schedule %s: tick %s %s (%.1f ms)",
                    entry.name,
                    tick.isoformat(),
                    "queued" if run else "skipped: it fell due while leekd was down",
                    (time.monotonic() - t0) * 1000,
                )
        return self.next_run(entry)
