"""Retrying failures from the admin: ask the running leekd, as ``leek-retry-failed`` does.

Shared by the failed tasks' "retry selected" actions and the dashboard's retry buttons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

RETRY_CHUNK = 1000  # leekd's limit per retry_failed request


def task_link(task_id: int | None) -> str:
    if task_id is None:
        return "-"
    url = reverse("admin:leekd_queuedtask_change", args=[task_id])
    return format_html('<a href="{}">#{}</a>', url, task_id)


def retry_through_leekd(
    model_admin: Any, request: HttpRequest, ids: Sequence[int], again: bool
) -> list[int]:
    """Queue these failures again through leekd; tells the user how it went, returns new ids."""
    import leek

    new: list[int] = []
    skipped = 0
    try:
        client = leek.get_client()
        for start in range(0, len(ids), RETRY_CHUNK):
            chunk = list(ids[start : start + RETRY_CHUNK])
            reply = client.request("retry_failed", ids=chunk, again=again, limit=RETRY_CHUNK)
            new += [t["new_id"] for t in reply["tasks"]]
            skipped += int(reply.get("already_retried") or 0)
    except leek.LeekError as exc:
        done = f" ({len(new)} were queued before that)" if new else ""
        model_admin.message_user(
            request, f"Could not retry through leekd: {exc}{done}", messages.ERROR
        )
        return new
    if new:
        links = format_html_join(", ", "{}", ((task_link(i),) for i in new))
        model_admin.message_user(
            request,
            format_html("Queued {} failed task(s) again as {}.", len(new), links),
            messages.SUCCESS,
        )
    if skipped:
        model_admin.message_user(
            request,
            f"{skipped} selected task(s) had been retried already and were skipped; use "
            "“Retry selected failed tasks, even those already retried” to queue them anyway.",
            messages.WARNING,
        )
    if not new and not skipped:
        model_admin.message_user(request, "Nothing to retry.", messages.INFO)
    return new
