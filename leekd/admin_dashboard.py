"""The dashboard page in the admin: /<admin>/leekd/dashboard/, staff with view permission only.

It is the "changelist" of ``Dashboard``, a proxy model with no table, so the admin lists it
in leekd's section under whatever prefix the project mounts the admin at. Its URLs replace
the model's: the page, the fragment the page's script fetches to refresh itself
(``data/``), and the retry button's POST (``retry/``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from . import dashboard
from .admin_retry import retry_through_leekd
from .charts import throughput_chart
from .models import Dashboard, FailedTask

DEFAULT_REFRESH = 5  # seconds between refreshes; ?refresh=N changes it (1 to 3600)


def _refresh(request: HttpRequest) -> int:
    try:
        value = int(request.GET.get("refresh", DEFAULT_REFRESH))
    except ValueError:
        return DEFAULT_REFRESH
    return min(max(value, 1), 3600)


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Whoever may see the dashboard, or leekd's task records, may see the dashboard."""
        user: Any = request.user
        return super().has_view_permission(request, obj) or user.has_perm("leekd.view_queuedtask")

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.dashboard_view), name=f"{name}_changelist"),
            path("data/", view(self.data_view), name=f"{name}_data"),
            path("retry/", view(require_POST(self.retry_view)), name=f"{name}_retry"),
        ]

    def _context(self, request: HttpRequest) -> dict[str, Any]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        figures = dashboard.gather()
        return {
            "figures": figures,
            "hour_chart": throughput_chart(
                figures.hour, "tasks finished per minute, last hour", 10, "%H:%M"
            ),
            "day_chart": throughput_chart(
                figures.day, "tasks finished per hour, last 24 hours", 3, "%H:%M"
            ),
            "slowest": [
                (
                    s,
                    dashboard.seconds(s.p50),
                    dashboard.seconds(s.p95),
                    dashboard.seconds(s.slowest),
                )
                for s in figures.slowest
            ],
            "retry_url": reverse(f"{self.admin_site.name}:leekd_dashboard_retry"),
            "can_retry": self._can_retry(request),
        }

    def _can_retry(self, request: HttpRequest) -> bool:
        failures = self.admin_site._registry.get(FailedTask)
        return failures is not None and failures.has_view_permission(request)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        refresh = _refresh(request)
        data_url = reverse(f"{self.admin_site.name}:leekd_dashboard_data")
        context = {
            **self.admin_site.each_context(request),
            **self._context(request),
            "title": "leek dashboard",
            "opts": self.opts,
            "data_url": f"{data_url}?refresh={refresh}",
            "refresh": refresh,
        }
        return render(request, "leekd/dashboard.html", context)

    def data_view(self, request: HttpRequest) -> HttpResponse:
        response = render(request, "leekd/dashboard_body.html", self._context(request))
        response["Cache-Control"] = "no-store"
        return response

    def retry_view(self, request: HttpRequest) -> HttpResponse:
        if not self._can_retry(request):
            raise PermissionDenied
        back = reverse(f"{self.admin_site.name}:leekd_dashboard_changelist")
        try:
            failure_id = int(request.POST.get("failure", ""))
        except ValueError:
            self.message_user(request, "Say which failure to retry.", messages.ERROR)
            return HttpResponseRedirect(back)
        if not FailedTask.objects.filter(pk=failure_id).exists():
            self.message_user(request, f"There is no failure #{failure_id}.", messages.ERROR)
            return HttpResponseRedirect(back)
        retry_through_leekd(self, request, [failure_id], again=False)
        return HttpResponseRedirect(back)
