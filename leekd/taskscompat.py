"""Django's Tasks framework, wherever it lives: ``django.tasks`` (Django 6) or the
``django_tasks`` backport (Django 5.2). One import site, so the backend has one code path."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = "django.tasks"
except ImportError:
    try:
        from django_tasks import (  # type: ignore[no-redef]
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task_backends,
        )
        from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]
        from django_tasks.base import TaskError  # type: ignore[no-redef]
        from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef]
        from django_tasks.signals import (  # type: ignore[no-redef]
            task_enqueued,
            task_finished,
            task_started,
        )
        from django_tasks.utils import normalize_json  # type: ignore[no-redef]
    except ImportError as exc:
        from leek.errors import LeekConfigError

        raise LeekConfigError(
            "leekd.backend.LeekBackend needs Django 6's django.tasks, or on Django 5.2 the "
            f"backport: pip install 'leekd[tasks]' ({exc})"
        ) from None
    FRAMEWORK = "django_tasks"


def set_field(result: Any, name: str, value: Any) -> None:
    """TaskResult is a frozen dataclass; the framework's own backends set fields this way."""
    object.__setattr__(result, name, value)


__all__ = [
    "FRAMEWORK",
    "BaseTaskBackend",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "set_field",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
