"""The arguments of ``purge`` and ``retry_failed``, checked on the event loop.

Requests arrive as JSON; ``*Request.parse`` raises ``ValueError`` with a message for the
client, so nothing malformed reaches the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

FINISHED: tuple[str, ...] = ("succeeded", "failed", "cancelled")
RETRY_LIMIT = 100  # failures per retry_failed request unless the client asks otherwise
MAX_RETRY_LIMIT = 1000


def _check_keys(op: str, args: dict[str, Any], known: set[str]) -> None:
    unknown = set(args) - known
    if unknown:
        raise ValueError(f"{op}: unknown arguments {', '.join(sorted(unknown))}")


def _flag(args: dict[str, Any], key: str) -> bool:
    value = args.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    return value


def _int(args: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number in {low}..{high}, not {value!r}")
    return value


def _ids(args: dict[str, Any], key: str) -> tuple[int, ...] | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value
    ):
        raise ValueError(f"{key} must be a list of positive integers")
    if len(value) > 10 * MAX_RETRY_LIMIT:
        raise ValueError(f"{key}: at most {10 * MAX_RETRY_LIMIT} ids per request")
    return tuple(value)


@dataclass(frozen=True)
class PurgeRequest:
    states: tuple[str, ...]
    older_than: float
    dry_run: bool = False

    @classmethod
    def parse(cls, args: dict[str, Any]) -> PurgeRequest:
        _check_keys("purge", args, {"states", "older_than", "dry_run"})
        states = args.get("states")
        if (
            not isinstance(states, list)
            or not states
            or not all(isinstance(s, str) and s in FINISHED for s in states)
        ):
            raise ValueError(
                "purge needs states: a list of 'succeeded' and/or 'failed' (unfinished tasks "
                "are never purged)"
            )
        older = args.get("older_than")
        if isinstance(older, bool) or not isinstance(older, int | float) or not 0 <= older < 1e10:
            raise ValueError("purge needs older_than: a number of seconds, 0 or more")
        return cls(tuple(dict.fromkeys(states)), float(older), _flag(args, "dry_run"))


@dataclass(frozen=True)
class RetryRequest:
    failure_ids: tuple[int, ...] | None = None
    task_ids: tuple[int, ...] | None = None
    name: str | None = None
    since: datetime | None = None
    again: bool = False
    dry_run: bool = False
    limit: int = RETRY_LIMIT
    cursor: int = 0
    until: int | None = None  # the last failure id of the run; later ones are not its business

    @classmethod
    def parse(cls, args: dict[str, Any]) -> RetryRequest:
        known = {"ids", "task_ids", "name", "since", "all", "again", "dry_run"}
        known |= {"limit", "cursor", "until"}
        _check_keys("retry_failed", args, known)
        name = args.get("name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 255):
            raise ValueError("name must be a callable's dotted name, e.g. myapp.tasks.send_mail")
        since = args.get("since")
        if since is not None:
            since = _parse_time(since)
        req = cls(
            failure_ids=_ids(args, "ids"),
            task_ids=_ids(args, "task_ids"),
            name=name,
            since=since,
            again=_flag(args, "again"),
            dry_run=_flag(args, "dry_run"),
            limit=_int(args, "limit", RETRY_LIMIT, 1, MAX_RETRY_LIMIT),
            cursor=_int(args, "cursor", 0, 0, 2**63 - 1),
            until=_int(args, "until", 0, 0, 2**63 - 1) if "until" in args else None,
        )
        filtered = (req.failure_ids, req.task_ids, req.name, req.since) != (None,) * 4
        if not filtered and not _flag(args, "all"):
            raise ValueError(
                "retry_failed needs ids, task_ids, name or since, or all=true to retry every "
                "failed task"
            )
        return req


def _parse_time(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"since must be an ISO 8601 time, not {value!r}") from None
    return when if timezone.is_aware(when) else timezone.make_aware(when)
