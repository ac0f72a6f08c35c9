"""Standard Django tasks (``django.tasks`` on Django 6, the ``django_tasks`` backport on 5.2).

Import only with ``TASKS`` naming ``leekd.backend.LeekBackend``: the framework validates each
task against its backend when the module is imported.
"""

from __future__ import annotations

from pathlib import Path

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from . import tasks as plain


@task()
def add(a, b):
    return a + b


@task(queue_name="mail", priority=7)
def mail(to):
    return {"sent": [to], "count": 1}


@task()
def fail(message):
    raise ValueError(message)


@task()
def wait_for_file(path):
    return plain.wait_for_file(path)


@task(takes_context=True)
def attempt_number(context, directory):
    """Fails on the first attempt; returns the attempt it succeeded on."""
    marker = Path(directory) / "first-attempt-done"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("first attempt fails")
    return context.attempt


@task()
async def async_double(x):
    return 2 * x
