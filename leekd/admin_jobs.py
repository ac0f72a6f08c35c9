"""The admin for multi-step jobs and periodic schedules: read-only, like the task admin.

"Resume selected failed jobs" asks the running leekd to queue each failed job's failed
step again (``resume_job``), as ``leek-retry-failed --job`` does.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from .admin_parts import RecordAdmin, _pre
from .admin_retry import task_link as _task_link
from .models import Job, JobState, Schedule


@admin.register(Job)
class JobAdmin(RecordAdmin):
    list_display = ("id", "name", "queue", "state", "step_number", "created_at", "updated_at")
    list_filter = ("state", "name", ("updated_at", admin.DateFieldListFilter))
    search_fields = ("name",)
    ordering = ("-id",)
    actions = ("resume_selected",)
    fields = (
        "id",
        "name",
        "queue",
        "state",
        "step_number",
        "created_at",
        "updated_at",
        "error_text",
        "workspace_json",
        "step_tasks",
    )
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.state not in (JobState.COMPLETED, JobState.FAILED):
            return False  # leekd runs its steps and has nowhere to record them
        return super().has_delete_permission(request, obj)

    @admin.display(description="step", ordering="step")
    def step_number(self, obj: Job) -> int:
        return obj.step + 1

    @admin.display(description="error")
    def error_text(self, obj: Job) -> str:
        return _pre(obj.error)

    @admin.display(description="workspace")
    def workspace_json(self, obj: Job) -> str:
        return _pre(json.dumps(obj.workspace, indent=2, sort_keys=True))

    @admin.display(description="step tasks")
    def step_tasks(self, obj: Job) -> str:
        rows = obj.tasks.order_by("id").values_list("id", "step", "state")[:100]
        return (
            format_html_join(
                ", ", "{} (step {}, {})", ((_task_link(i), (s or 0) + 1, st) for i, s, st in rows)
            )
            or "-"
        )

    @admin.action(description="Resume selected failed jobs at the step that failed")
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        import leek

        ids = sorted(queryset.filter(state=JobState.FAILED).values_list("pk", flat=True))
        resumed: list[int] = []
        try:
            client = leek.get_client()
            for job_id in ids:
                client.request("resume_job", id=job_id)
                resumed.append(job_id)
        except leek.LeekError as exc:
            done = f" ({len(resumed)} were resumed before that)" if resumed else ""
            self.message_user(
                request, f"Could not resume through leekd: {exc}{done}", messages.ERROR
            )
            return
        if resumed:
            self.message_user(
                request,
                f"Resumed {len(resumed)} job(s): {', '.join(map(str, resumed))}.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, "No failed job was selected.", messages.INFO)


@admin.register(Schedule)
class ScheduleAdmin(RecordAdmin):
    list_display = ("name", "last_tick", "last_task_link", "claimed_at")
    ordering = ("name",)
    fields = ("name", "last_tick", "last_task_link", "claimed_at")
    readonly_fields = fields

    @admin.display(description="last task")
    def last_task_link(self, obj: Schedule) -> str:
        return _task_link(obj.last_task) if obj.last_task else "-"


__all__ = ["JobAdmin", "ScheduleAdmin"]
