"""What the admin pages of leek's records share: read-only model admins and small renderers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

_PRE = "white-space: pre-wrap; font-size: 12px; margin: 0; max-height: 40em; overflow: auto"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _args(preview: str) -> str:
    return format_html('<span title="{}">{}</span>', preview, _short(preview)) if preview else "()"


def _pre(text: str) -> str:
    return format_html('<pre style="{}">{}</pre>', _PRE, text) if text else "-"


class RecordAdmin(admin.ModelAdmin):
    """Shared by every leek model: view and filter, never add or edit."""

    show_full_result_count = False  # no COUNT(*) over a big table on every page
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
