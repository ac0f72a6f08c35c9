"""Pushes that wait for the caller's transaction: ``transaction.on_commit`` when in ``atomic()``.

A push made inside an atomic block is sent once that block's outermost transaction
commits, so its task never runs against data that is rolled back, and never before the
data it needs is visible. Outside a transaction it is sent at once. Only Django's default
database is looked at; a process without configured Django settings never is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def in_atomic_block() -> bool:
    """True when Django is configured here and its default connection is inside ``atomic()``."""
    if "django.db" not in sys.modules:
        return False
    from django.conf import settings

    if not settings.configured:
        return False
    from django.db import DEFAULT_DB_ALIAS, connections

    return bool(connections[DEFAULT_DB_ALIAS].in_atomic_block)


def defer(send: Callable[[], Any]) -> None:
    """Run ``send`` when the current transaction commits (never, if it rolls back).

    Not ``robust``: should the push fail after the commit, the caller sees the error, as it
    would outside a transaction; the commit itself has happened.
    """
    from django.db import transaction

    transaction.on_commit(send)
