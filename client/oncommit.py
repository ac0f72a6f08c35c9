"""Pushes that wait for the caller's transaction: ``transaction.on_commit`` when in ``atomic()``.

A push made inside an atomic block is sent once that block's outermost transaction
commits, so its task never runs against data that is rolled back, and never before the
data it needs is visible. Outside a transaction it is sent at once. Only Django's default
database is looked at; a process without configured Django settings never is.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any


class _Seen(threading.local):
    wrapper: Any = None  # this thread's connection to the default database
    generation = -1


_seen = _Seen()
_generation = 0  # bumped when settings.DATABASES changes: the wrappers are new then


def in_atomic_block() -> bool:
    """True when Django is configured here and its default connection is inside ``atomic()``.

    On every push, so the thread's connection wrapper is remembered: looking it up through
    ``connections[...]`` costs a few microseconds each time, this a fraction of one.
    """
    seen = _seen
    if seen.generation == _generation:
        return bool(seen.wrapper.in_atomic_block)
    if "django.db" not in sys.modules:
        return False
    from django.conf import settings

    if not settings.configured:
        return False
    from django.db import DEFAULT_DB_ALIAS, connections

    _follow_databases()
    seen.wrapper, seen.generation = connections[DEFAULT_DB_ALIAS], _generation
    return bool(seen.wrapper.in_atomic_block)


def _follow_databases() -> None:
    from django.core.signals import setting_changed

    def changed(setting: str = "", **kwargs: Any) -> None:
        global _generation
        if setting == "DATABASES":
            _generation += 1

    setting_changed.connect(changed, weak=False, dispatch_uid="leek.oncommit.databases")


def defer(send: Callable[[], Any]) -> None:
    """Run ``send`` when the current transaction commits (never, if it rolls back).

    Not ``robust``: should the push fail after the commit, the caller sees the error, as it
    would outside a transaction; the commit itself has happened.
    """
    from django.db import transaction

    transaction.on_commit(send)
