"""Run as a web process would (``python -m tests.django.oncommit_child``): pushes in atomic().

Prints one JSON line with what it saw; the test checks it and leekd's rows.
"""

from __future__ import annotations

import json

import django

django.setup()

from django.db import connection, transaction  # noqa: E402

import leek  # noqa: E402
from leekd.models import QueuedTask  # noqa: E402
from tests import tasks  # noqa: E402


class Rollback(Exception):
    pass


def note(label: str) -> None:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO leek_notes (label) VALUES (%s)", [label])


def main() -> None:
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS leek_notes (label varchar(20))")
    seen: dict[str, object] = {}
    try:
        with transaction.atomic():
            note("rolled")  # this process now holds the write lock (SQLite)
            seen["rolled_push"] = leek.push(tasks.count_notes, ("rolled",))
            raise Rollback
    except Rollback:
        pass
    with transaction.atomic():
        note("kept")
        seen["kept_push"] = leek.push(tasks.count_notes, ("kept",))
        seen["queued_before_commit"] = QueuedTask.objects.filter(
            name="tests.tasks.count_notes"
        ).count()
    rows = list(
        QueuedTask.objects.filter(name="tests.tasks.count_notes").values_list("id", "args_preview")
    )
    seen["rows"] = [preview for _, preview in rows]
    seen["kept_result"] = leek.result(rows[0][0], timeout=20) if rows else None
    seen["outside"] = leek.push(tasks.add, (1, 2))
    print(json.dumps(seen))


main()
