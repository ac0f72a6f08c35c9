"""Payloads left in the database while their tasks wait, read back when a worker needs one.

The engine keeps waiting payloads in memory up to ``payload_memory`` bytes; beyond that a
job waits as its id alone, and its worker reads the payload here (one indexed lookup by
primary key, on the worker's own connection).
"""

from __future__ import annotations

from ..models import QueuedTask


def load_payload(task_id: int) -> bytes:
    return bytes(QueuedTask.objects.values_list("payload", flat=True).get(pk=task_id))
