"""One group commit's writes: the pushed tasks, the outcomes, and the jobs they move on.

Records with a ``unique_key`` are looked up one by one before they are inserted (the
task holding the key answers for them). A record sent again (its answer was lost, perhaps
on another node) fails the plain insert on its key; the whole batch is then written again with that record skipped and answered
with the id it got the first time, so the other pushes of the commit go through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from leek.protocol import TaskRecord

from ..job import Job, Outcome
from .outcomes import write_outcomes
from .rows import Fence, insert_all, insert_deduped
from .steps import write_steps

Announce = Callable[[Any, list[int]], object]


def write_batch(
    transaction: Callable[..., Any],
    raw: Any,
    single: bool,
    records: Sequence[TaskRecord],
    outcomes: list[Outcome],
    retry_of: Sequence[int | None] | None,
    adapt: Callable[[datetime], Any],
    fence: Fence | None,
    unique: bool = False,
    announce: Announce | None = None,
) -> tuple[list[int], list[bool] | None, list[Outcome], list[Job]]:
    """Write in one transaction; returns the ids, which records were inserted (None: all),
    the outcomes another node owns now (not written), and the jobs' next steps to queue.
    ``unique``: some record has a ``unique_key``, so each is looked up before its insert.
    ``announce(cur, ids)`` (several nodes) tells the others, on commit, which tasks ended."""
    now = timezone.now()
    steps = any(o.job.job_id for o in outcomes)
    following: list[Job] = []
    try:
        with transaction(raw, single) as (cur, ph):
            flat, fresh = insert_all(cur, ph, records, now, adapt, retry_of, fence, unique)
            lost = write_outcomes(cur, ph, outcomes, adapt, fence)
            if steps:
                following = write_steps(cur, ph, _kept(outcomes, lost), now, adapt, fence)
            if announce is not None and outcomes:
                _announce(announce, cur, _kept(outcomes, lost))
    except IntegrityError:  # a record sent again: done again, the duplicate skipped
        with transaction(raw, False) as (cur, ph):
            flat, fresh = insert_deduped(cur, ph, records, now, adapt, retry_of, fence)
            lost = write_outcomes(cur, ph, outcomes, adapt, fence)
            if steps:
                following = write_steps(cur, ph, _kept(outcomes, lost), now, adapt, fence)
            if announce is not None and outcomes:
                _announce(announce, cur, _kept(outcomes, lost))
    return flat, fresh, lost, following


def _announce(announce: Announce, cur: Any, written: list[Outcome]) -> None:
    ended = [o.job.id for o in written if o.final]  # a retried attempt ends no wait
    if ended:
        announce(cur, ended)


def _kept(outcomes: list[Outcome], lost: list[Outcome]) -> list[Outcome]:
    """The outcomes that were written: a step another node owns now moves no job on."""
    if not lost:
        return outcomes
    gone = {id(o) for o in lost}
    return [o for o in outcomes if id(o) not in gone]
