"""The admin for leek's records: read-only, readable, and a way to retry failures.

Only leekd writes these rows, so the admin adds and edits nothing. It never shows the
pickled payload (opaque bytes; unpickling them here would run code) and never loads it in
list views. Unfinished tasks cannot be deleted here: leekd still holds them in memory and
would have nowhere to record their outcome; deleting an outcome deletes its task's record. "Retry selected" asks the running leekd to
queue the failed tasks again (``retry_failed``), exactly as ``leek-retry-failed`` does.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .admin_parts import RecordAdmin, _args, _pre, _short
from .admin_retry import retry_through_leekd, task_link
from .models import FailedTask, QueuedTask, State, SuccessTask

RECENT = 1000  # tasks the queue filter looks at for queue names


class QueueFilter(admin.SimpleListFilter):
    """Queues seen among the latest tasks: Django's own filter would scan the whole table."""

    title = "queue"
    parameter_name = "queue"
    field = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = QueuedTask.objects.order_by("-id").values_list("queue", flat=True)[:RECENT]
        return [(q, q) for q in sorted(set(recent))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class TaskQueueFilter(QueueFilter):
    field = "task__queue"


@admin.register(QueuedTask)
class QueuedTaskAdmin(RecordAdmin):
    list_display = ("id", "name", "arguments", "queue", "state", "enqueued_at", "attempts", "retry")
    list_display_links = ("id", "name")
    list_filter = (QueueFilter, "state", ("enqueued_at", admin.DateFieldListFilter))
    search_fields = ("name",)
    ordering = ("-id",)
    fields = (
        "id",
        "name",
        "arguments_full",
        "queue",
        "state",
        "enqueued_at",
        "attempts",
        "max_retries",
        "timeout",
        "deaths",
        "retry",
        "outcome",
        "error",
        "traceback",
        "retried_as",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[QueuedTask]:
        return super().get_queryset(request).defer("payload")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.state == State.QUEUED:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="arguments")
    def arguments(self, obj: QueuedTask) -> str:
        return _args(obj.args_preview)

    @admin.display(description="arguments")
    def arguments_full(self, obj: QueuedTask) -> str:
        return obj.args_preview or "()"

    @admin.display(description="retry of")
    def retry(self, obj: QueuedTask) -> str:
        if obj.retry_of_id is None:
            return "-"
        url = reverse("admin:leekd_failedtask_change", args=[obj.retry_of_id])
        return format_html('<a href="{}">failure #{}</a>', url, obj.retry_of_id)

    @admin.display(description="outcome")
    def outcome(self, obj: QueuedTask) -> str:
        success = SuccessTask.objects.filter(task=obj).defer("result").first()
        if success is not None:
            return f"succeeded at {success.finished_at:%Y-%m-%d %H:%M:%S} in {success.duration * 1000:.1f} ms"
        failure = _failure(obj)
        if failure is not None:
            url = reverse("admin:leekd_failedtask_change", args=[failure.pk])
            return format_html(
                '<a href="{}">failed</a> at {} after {} attempt(s)',
                url,
                f"{failure.failed_at:%Y-%m-%d %H:%M:%S}",
                failure.attempts,
            )
        return "not finished"

    @admin.display(description="error")
    def error(self, obj: QueuedTask) -> str:
        failure = _failure(obj)
        return f"{failure.exc_type}: {failure.message}" if failure else "-"

    @admin.display(description="traceback")
    def traceback(self, obj: QueuedTask) -> str:
        failure = _failure(obj)
        return _pre(failure.traceback) if failure else "-"

    @admin.display(description="retried as")
    def retried_as(self, obj: QueuedTask) -> str:
        failure = _failure(obj)
        if failure is None:
            return "-"
        ids = failure.retries.order_by("id").values_list("id", flat=True)
        return format_html_join(", ", "{}", ((task_link(i),) for i in ids)) or "-"


def _failure(task: QueuedTask) -> FailedTask | None:
    return FailedTask.objects.filter(task=task).first() if task.state == State.FAILED else None


class OutcomeAdmin(RecordAdmin):
    """Deleting an outcome deletes its task's record: a finished task without one would lie."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        QueuedTask.objects.filter(pk=obj.task_id).delete()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        QueuedTask.objects.filter(pk__in=list(queryset.values_list("task_id", flat=True))).delete()


@admin.register(SuccessTask)
class SuccessTaskAdmin(OutcomeAdmin):
    list_display = ("task_id_link", "name", "arguments", "queue", "finished_at", "took", "attempts")
    list_display_links = None
    list_filter = (TaskQueueFilter, ("finished_at", admin.DateFieldListFilter))
    search_fields = ("task__name",)
    ordering = ("-finished_at",)
    fields = (
        "task_id_link",
        "name",
        "arguments",
        "queue",
        "finished_at",
        "took",
        "attempts",
        "result_size",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[SuccessTask]:
        qs = super().get_queryset(request)
        return qs.select_related("task").defer("task__payload", "result")

    @admin.display(description="task", ordering="task_id")
    def task_id_link(self, obj: SuccessTask) -> str:
        return task_link(obj.task_id)

    @admin.display(description="callable", ordering="task__name")
    def name(self, obj: SuccessTask) -> str:
        return obj.task.name

    @admin.display(description="arguments")
    def arguments(self, obj: SuccessTask) -> str:
        return _args(obj.task.args_preview)

    @admin.display(description="queue", ordering="task__queue")
    def queue(self, obj: SuccessTask) -> str:
        return obj.task.queue

    @admin.display(description="duration", ordering="duration")
    def took(self, obj: SuccessTask) -> str:
        return f"{obj.duration * 1000:.1f} ms"

    @admin.display(description="result")
    def result_size(self, obj: SuccessTask) -> str:
        size = SuccessTask.objects.filter(pk=obj.pk).values_list("result", flat=True).first()
        return f"{len(size)} bytes, pickled (not shown)" if size else "none kept"


class RetriedFilter(admin.SimpleListFilter):
    title = "retried"
    parameter_name = "retried"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(was_retried=self.value() == "yes")
        return queryset


@admin.register(FailedTask)
class FailedTaskAdmin(OutcomeAdmin):
    list_display = (
        "id",
        "task_id_link",
        "name",
        "arguments",
        "queue",
        "exc_type",
        "short_message",
        "failed_at",
        "attempts",
        "retried",
    )
    list_filter = (TaskQueueFilter, RetriedFilter, ("failed_at", admin.DateFieldListFilter))
    search_fields = ("task__name", "exc_type")
    ordering = ("-failed_at",)
    actions = ("retry_selected", "retry_selected_again")
    fields = (
        "task_id_link",
        "name",
        "arguments",
        "queue",
        "failed_at",
        "attempts",
        "exc_type",
        "message",
        "formatted_traceback",
        "retries_links",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[FailedTask]:
        retried = Exists(QueuedTask.objects.filter(retry_of=OuterRef("pk")))
        qs = super().get_queryset(request).select_related("task").defer("task__payload")
        return qs.annotate(was_retried=retried)

    @admin.display(description="task", ordering="task_id")
    def task_id_link(self, obj: FailedTask) -> str:
        return task_link(obj.task_id)

    @admin.display(description="callable", ordering="task__name")
    def name(self, obj: FailedTask) -> str:
        return obj.task.name

    @admin.display(description="arguments")
    def arguments(self, obj: FailedTask) -> str:
        return _args(obj.task.args_preview)

    @admin.display(description="queue", ordering="task__queue")
    def queue(self, obj: FailedTask) -> str:
        return obj.task.queue

    @admin.display(description="message")
    def short_message(self, obj: FailedTask) -> str:
        return _short(" ".join(obj.message.split()), 100)

    @admin.display(description="retried", boolean=True, ordering="was_retried")
    def retried(self, obj: FailedTask) -> bool:
        return bool(getattr(obj, "was_retried", False))

    @admin.display(description="traceback")
    def formatted_traceback(self, obj: FailedTask) -> str:
        return _pre(obj.traceback)

    @admin.display(description="retried as")
    def retries_links(self, obj: FailedTask) -> str:
        ids = obj.retries.order_by("id").values_list("id", flat=True)
        return format_html_join(", ", "{}", ((task_link(i),) for i in ids)) or "-"

    @admin.action(description="Retry selected failed tasks (skip those already retried)")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[FailedTask]) -> None:
        self._retry(request, queryset, again=False)

    @admin.action(description="Retry selected failed tasks, even those already retried")
    def retry_selected_again(self, request: HttpRequest, queryset: QuerySet[FailedTask]) -> None:
        self._retry(request, queryset, again=True)

    def _retry(self, request: HttpRequest, queryset: QuerySet[FailedTask], again: bool) -> None:
        retry_through_leekd(self, request, sorted(queryset.values_list("pk", flat=True)), again)


# Registered after the models above: the dashboard, jobs and schedules.
from . import admin_dashboard, admin_jobs  # noqa: E402, F401
