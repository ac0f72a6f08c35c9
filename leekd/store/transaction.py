"""How one group commit opens its transaction, on SQLite and on other databases.

On SQLite the store talks to the driver directly, tunes the connection once, and decides
whether the event loop may commit on it (the fast path); elsewhere it goes through Django.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import transaction


class Transactions:
    """The database side of ``Store``: its connection, and transactions on it."""

    _db: Any  # the writer thread's DatabaseWrapper
    _tuned: Any  # the raw SQLite connection whose autocheckpoint is off
    _fast: Any  # that connection, when the event loop may commit on it too
    _busy_ms: int  # its busy timeout for the writer thread, which may wait
    _waits: bool  # whether that timeout is set (the fast path sets zero)
    _utc_text: bool  # datetimes go to the database as naive UTC text (SQLite)

    @contextmanager
    def _transaction(self, raw: Any = None, single: bool = False) -> Iterator[tuple[Any, str]]:
        """One transaction; yields a cursor and its placeholder.

        On SQLite this talks to the driver directly (``BEGIN IMMEDIATE`` … ``COMMIT``):
        Django's cursor wrapper and atomic() cost more than the commit itself on this path.
        ``single`` says the body runs one statement, which SQLite then commits by itself.
        Other databases go through Django's transaction and cursor. ``raw`` is the fast
        path's connection, already open; without it this is the writer thread.
        """
        if raw is None and self._db.vendor != "sqlite":
            with transaction.atomic(), self._db.cursor() as cur:
                yield cur, "%s"
            return
        with self._db.wrap_database_errors:
            if raw is None:
                raw = self._sqlite()
                if not self._waits:
                    raw.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                    self._waits = True
            cur = raw.cursor()
            if not single:
                cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur, "?"
                if raw.in_transaction:  # always, unless ``single``: then it committed
                    cur.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.rollback()
                raise
            finally:
                cur.close()

    def _adapt(self, value: datetime) -> Any:
        """A datetime as the database column takes it.

        SQLite's, in a UTC connection, is the naive UTC ``str()``: that is what Django's
        adapter returns, at a third of its cost (settings are looked up on every call
        there). Other cases go through Django's.
        """
        if self._utc_text and value.tzinfo is UTC:
            return str(value.replace(tzinfo=None))
        return self._db.ops.adapt_datetimefield_value(value)

    def _sqlite(self) -> Any:
        """The writer's raw SQLite connection, opened and tuned on first use. Hold ``_lock``."""
        self._db.ensure_connection()
        raw = self._db.connection
        if raw is not self._tuned:
            # Checkpoints (two fsyncs each) run in the checkpointer thread, not here.
            raw.execute("PRAGMA wal_autocheckpoint=0")
            self._busy_ms = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            self._waits = True
            mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
            sync = raw.execute("PRAGMA synchronous").fetchone()[0]
            # OFF is 0, NORMAL 1: in WAL mode neither syncs on commit, so it cannot stall.
            self._fast = raw if str(mode).lower() == "wal" and sync <= 1 else None
            self._tuned = raw
        return raw
