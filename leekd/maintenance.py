"""Purge and retry: database maintenance leekd runs in its query pool, never on the event loop.

Both work in small batches so that no transaction holds the database's write lock for long
(the store's writer waits for it). Both take ``_lock``: a retry links its new task to a
failure record, and a purge deleting that record in between would make the store's commit
fail on the foreign key, refusing every push of that commit.

Requests arrive as JSON (``purge`` and ``retry_failed``); ``*Request.parse`` checks them on
the event loop and raises ``ValueError`` with a message for the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from leek.protocol import Pushed, TaskRecord

from .conf import format_duration
from .models import FailedTask, QueuedTask, State, SuccessTask

if TYPE_CHECKING:
    from .app import Leekd
    from .store import Store

log = logging.getLogger("leekd.maintenance")

FINISHED: tuple[str, ...] = ("succeeded", "failed")
PURGE_BATCH = 500  # rows per delete transaction
PURGE_BUDGET = 5.0  # seconds of deleting per request; the client asks again while "more"
RETENTION_INTERVAL = 3600.0
RETENTION_BUDGET = 1.0  # short turns, so the pool stays free for status queries
RETRY_LIMIT = 100  # failures per retry_failed request unless the client asks otherwise
MAX_RETRY_LIMIT = 1000
COMMIT_WAIT = 30.0  # how long a retry waits for the store to commit its new rows

_lock = threading.Lock()


# ---------------------------------------------------------------- arguments


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


# ---------------------------------------------------------------- purge


def _finished_before(state: str, cutoff: datetime) -> QuerySet[Any]:
    """Ids of tasks that reached ``state`` before ``cutoff``, oldest first (indexed)."""
    if state == State.SUCCEEDED:
        return (
            SuccessTask.objects.filter(finished_at__lt=cutoff, task__state=state)
            .order_by("finished_at")
            .values_list("task_id", flat=True)
        )
    return (
        FailedTask.objects.filter(failed_at__lt=cutoff, task__state=state)
        .order_by("failed_at")
        .values_list("task_id", flat=True)
    )


def purge(
    states: Sequence[str],
    older_than: float,
    *,
    dry_run: bool = False,
    batch: int = PURGE_BATCH,
    budget: float = PURGE_BUDGET,
) -> dict[str, Any]:
    """Delete tasks that finished in ``states`` more than ``older_than`` seconds ago.

    Deleting the task row removes its outcome row too (CASCADE); a retry that pointed at a
    deleted failure keeps running, unlinked. Works for at most ``budget`` seconds and says
    ``more`` when rows are left, so one request never holds the pool for long.
    """
    try:
        return _purge(states, older_than, dry_run, batch, budget)
    finally:
        connection.close()  # pool threads come and go; never leave a connection behind


def _purge(
    states: Sequence[str], older_than: float, dry_run: bool, batch: int, budget: float
) -> dict[str, Any]:
    cutoff = timezone.now() - timedelta(seconds=older_than)
    counts = dict.fromkeys(states, 0)
    deadline = time.monotonic() + budget
    more = False
    for state in states:
        if dry_run:
            counts[state] = _finished_before(state, cutoff).count()
            continue
        while not more:
            if time.monotonic() > deadline:
                more = True
                break
            with _lock, transaction.atomic():
                ids = list(_finished_before(state, cutoff)[:batch])
                if ids:
                    _, per_model = QueuedTask.objects.filter(pk__in=ids, state=state).delete()
                    counts[state] += per_model.get(QueuedTask._meta.label, 0)
            if len(ids) < batch:
                break
    return {**counts, "more": more, "dry_run": dry_run, "older_than": older_than}


def start_retention(app: Leekd) -> asyncio.Task[None] | None:
    """Apply ``config.retention`` now and every hour; None when retention is off."""
    if not app.config.retention:
        return None
    log.info(
        "retention: deleting task records finished more than %s ago, hourly",
        format_duration(app.config.retention),
    )
    return asyncio.create_task(_retain(app, app.config.retention))


async def _retain(app: Leekd, keep: float) -> None:
    loop = asyncio.get_running_loop()
    step = functools.partial(purge, FINISHED, keep, budget=RETENTION_BUDGET)
    while True:
        total = dict.fromkeys(FINISHED, 0)
        t0 = time.monotonic()
        try:
            while not app.draining:
                result = await loop.run_in_executor(app.pool, step)
                for state in FINISHED:
                    total[state] += result[state]
                if not result["more"]:
                    break
        except Exception as exc:  # the database may be down: try again next time
            log.error("retention: purge failed (%s: %s); next try in 1h", type(exc).__name__, exc)
        else:
            log.log(
                logging.INFO if any(total.values()) else logging.DEBUG,
                "retention: deleted %d succeeded and %d failed task records finished more "
                "than %s ago (%.2fs)",
                total["succeeded"],
                total["failed"],
                format_duration(keep),
                time.monotonic() - t0,
            )
        await asyncio.sleep(RETENTION_INTERVAL)


# ---------------------------------------------------------------- retry


class _Answer:
    """Both halves of a push token, ``(connection, slot)``, for a thread that waits on it.

    The store hands the token to ``server.resolve_pushes`` on the event loop, which sets
    ``event`` (the ids, or an error) and calls ``flush()``.
    """

    def __init__(self) -> None:
        self.event: Any = None
        self.done = threading.Event()

    def flush(self) -> None:
        self.done.set()


def _matching(req: RetryRequest) -> QuerySet[FailedTask]:
    qs = FailedTask.objects.all()
    if req.failure_ids is not None:
        qs = qs.filter(pk__in=req.failure_ids)
    if req.task_ids is not None:
        qs = qs.filter(task_id__in=req.task_ids)
    if req.name is not None:
        if req.name.endswith("*"):
            qs = qs.filter(task__name__startswith=req.name[:-1])
        else:
            qs = qs.filter(task__name=req.name)
    if req.since is not None:
        qs = qs.filter(failed_at__gte=req.since)
    return qs


def retry_failed(req: RetryRequest, store: Store | None) -> dict[str, Any]:
    """One page of failures matching ``req``, queued again (unless ``dry_run``).

    Each new task is a copy of the failed one with ``retry_of`` pointing at the failure
    record, which stays. ``total`` and ``already_retried`` are counted on the first page
    (cursor 0) only; the client pages on with ``cursor`` and ``until`` while ``more``.
    ``until`` fixes the run to the failures that existed when it began: a retried task that
    fails again must not be picked up by a later page of the same run, and so on forever.
    """
    try:
        with _lock:
            return _retry_failed(req, store)
    finally:
        connection.close()


def _retry_failed(req: RetryRequest, store: Store | None) -> dict[str, Any]:
    until = req.until
    if until is None:
        until = FailedTask.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    matching = _matching(req).filter(pk__lte=until)
    retried = Exists(QueuedTask.objects.filter(retry_of=OuterRef("pk")))
    todo = matching if req.again else matching.filter(~retried)
    fields = ["id", "failed_at", "exc_type", "message", "task__id", "task__name", "task__queue"]
    fields += ["task__args_preview", "task__max_retries", "task__timeout"]
    if not req.dry_run:
        fields.append("task__payload")
    page = list(
        todo.filter(pk__gt=req.cursor)
        .select_related("task")
        .only(*fields)
        .order_by("pk")[: req.limit + 1]
    )
    more = len(page) > req.limit
    page = page[: req.limit]
    first = req.cursor == 0
    # Counted before this page is queued: afterwards its failures count as retried.
    total = todo.filter(pk__gt=req.cursor).count() if first else None
    already = matching.filter(retried).count() if first and not req.again else 0
    items = [
        {
            "failure_id": f.pk,
            "task_id": f.task_id,
            "name": f.task.name,
            "queue": f.task.queue,
            "args": f.task.args_preview,
            "failed_at": f.failed_at.isoformat(),
            "error": _short(f"{f.exc_type}: {f.message}"),
        }
        for f in page
    ]
    if page and not req.dry_run:
        if store is None:
            raise DatabaseError("leekd is not ready to take tasks yet")
        records = [
            TaskRecord(
                name=f.task.name,
                payload=bytes(f.task.payload),
                queue=f.task.queue,
                preview=f.task.args_preview,
                max_retries=f.task.max_retries,
                timeout=f.task.timeout,
            )
            for f in page
        ]
        new_ids = _push_and_wait(store, records, [f.pk for f in page])
        for item, new_id in zip(items, new_ids, strict=True):
            item["new_id"] = new_id
        log.info(
            "retried %d failed task(s): %s",
            len(items),
            ", ".join(f"{i['task_id']} as {i['new_id']}" for i in items[:20])
            + (", …" if len(items) > 20 else ""),
        )
    return {
        "tasks": items,
        "cursor": page[-1].pk if page else req.cursor,
        "until": until,
        "more": more,
        "dry_run": req.dry_run,
        "total": total,
        "already_retried": already,
    }


def _push_and_wait(store: Store, records: list[TaskRecord], retry_of: list[int]) -> list[int]:
    answer = _Answer()
    store.submit_push(records, (answer, answer), retry_of=retry_of)
    if not answer.done.wait(COMMIT_WAIT):
        raise TimeoutError(
            f"the database did not confirm the retried tasks within {COMMIT_WAIT:g}s; they may "
            "still be queued: check with --dry-run before retrying again"
        )
    if not isinstance(answer.event, Pushed):
        raise DatabaseError(getattr(answer.event, "message", "retried tasks were not recorded"))
    return list(answer.event.ids)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- for server.py


def purge_job(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Check a purge request; returns the work to run in the pool."""
    req = PurgeRequest.parse(args)
    return functools.partial(purge, req.states, req.older_than, dry_run=req.dry_run)


def retry_job(args: dict[str, Any], store: Store | None) -> Callable[[], dict[str, Any]]:
    """Check a retry_failed request; returns the work to run in the pool."""
    return functools.partial(retry_failed, RetryRequest.parse(args), store)


def is_dry_run(args: dict[str, Any]) -> bool:
    return args.get("dry_run") is True
