"""The SQL of a job's step outcome, run inside the group commit that records the outcome.

A step that succeeded saves the workspace, moves the job on and inserts the next step's
task, in the same transaction as the step's own outcome row: a crash leaves either the
step unfinished (it runs again from the workspace before it) or the next step queued.
A step that failed its last attempt marks its job failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..job import Job, Outcome

_NEXT_TASK = (
    "INSERT INTO leekd_queuedtask (queue, name, args_preview, payload, state, enqueued_at, "
    "attempts, max_retries, timeout, deaths, priority, job_id, step{owned}) "
    "SELECT {ph}, {ph}, {ph}, {ph}, 'queued', {ph}, 0, {ph}, {ph}, 0, {ph}, {ph}, {ph}{marks} "
    "WHERE EXISTS (SELECT 1 FROM leekd_job WHERE id = {ph}) RETURNING id"
)


def step_preview(job_id: int, step: int, steps: int | None = None) -> str:
    return f"job {job_id}, step {step + 1}" + (f" of {steps}" if steps else "")


def write_steps(
    cur: Any,
    ph: str,
    outcomes: Sequence[Outcome],
    now: datetime,
    adapt: Callable[[datetime], Any],
    fence: tuple[str, int] | None = None,
) -> list[Job]:
    """Job rows for the steps among ``outcomes``; returns the next steps' tasks to queue.

    With several nodes (``fence``) the next step belongs to this node at its epoch, as a
    push it accepted would.
    """
    queued: list[Job] = []
    when = adapt(now)
    owner: tuple[Any, ...] = ()
    if fence is None:
        insert_next = _NEXT_TASK.format(ph=ph, owned="", marks="")
    else:
        owned, marks = ", owner, epoch", f", {ph}, {ph}"
        insert_next, owner = _NEXT_TASK.format(ph=ph, owned=owned, marks=marks), fence
    for o in outcomes:
        job = o.job
        if not job.job_id or not o.final:  # a failed attempt that is retried moves nothing
            continue
        if not o.ok:
            cur.execute(
                f"UPDATE leekd_job SET state = 'failed', error = {ph}, updated_at = {ph} "
                f"WHERE id = {ph}",
                [f"step {job.step + 1} ({job.name}): {o.exc_type}: {o.message}", when, job.job_id],
            )
            continue
        assert o.step is not None
        if o.step.next_name is None:
            cur.execute(
                f"UPDATE leekd_job SET state = 'completed', workspace = {ph}, updated_at = {ph}, "
                f"error = '' WHERE id = {ph}",
                [o.step.workspace, when, job.job_id],
            )
            continue
        nxt = job.step + 1
        cur.execute(
            insert_next,
            [
                job.queue, o.step.next_name, step_preview(job.job_id, nxt), b"", when,
                job.max_retries, job.timeout, job.priority, job.job_id, nxt, *owner, job.job_id,
            ],
        )  # fmt: skip
        row = cur.fetchone()
        if row is None:
            continue  # the job's row is gone: nothing to move on
        cur.execute(
            f"UPDATE leekd_job SET state = 'ready', step = {ph}, workspace = {ph}, "
            f"updated_at = {ph}, error = '' WHERE id = {ph}",
            [nxt, o.step.workspace, when, job.job_id],
        )
        queued.append(
            Job(
                row[0],
                o.step.next_name,
                job.queue,
                b"",
                job.max_retries,
                job.timeout,
                job.priority,
                job_id=job.job_id,
                step=nxt,
            )
        )
    return queued
