"""How one group commit opens its transaction, on SQLite and on other databases.

On SQLite the store talks to the driver directly, tunes the connection once, and decides
whether the event loop may commit on it (the fast path); elsewhere it goes through Django.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, transaction

from .sqlite import Checkpointer, database_file

log = logging.getLogger("leekd.store")


class Transactions:
    """The database side of ``Store``: its connection, and transactions on it."""

    _db: Any  # the writer thread's DatabaseWrapper
    _tuned: Any  # the raw SQLite connection whose autocheckpoint is off
    _fast: Any  # that connection, when the event loop may commit on it too
    _busy_ms: int  # its busy timeout for the writer thread, which may wait
    _waits: bool  # whether that timeout is set (the fast path sets zero)
    _utc_text: bool  # datetimes go to the database as naive UTC text (SQLite)
    _lock: threading.Lock  # one commit at a time
    healthy: bool
    last_error: str
    lost: str
    wal_limit: int
    _pending_outcomes: list[Any]  # written when the database is back
    on_pushed: Any  # answers pushes from the writer thread

    def _failed(self, exc: Exception, pushes: list[Any], outcomes: list[Any]) -> None:
        """A commit failed: refuse its pushes, keep its outcomes for later, reconnect."""
        self.healthy, self.last_error = False, f"{type(exc).__name__}: {exc}"
        log.error(
            "database write failed (%s): refusing %d pushes, keeping %d outcomes to write later",
            self.last_error,
            sum(len(op.records) for op in pushes),
            len(outcomes),
        )
        self._pending_outcomes = outcomes
        self._fast = None
        try:
            self._db.close()  # reconnect on the next turn
        except DatabaseError:
            pass
        if pushes:
            err = DatabaseError(f"database unavailable: {self.last_error}")
            self.on_pushed([(op.token, err) for op in pushes])

    def _watch_wal(self) -> Checkpointer | None:
        """On a SQLite file: the thread that checkpoints its log and watches the file."""
        from django.db import connection

        path = database_file(str(connection.settings_dict["NAME"]))
        if connection.vendor != "sqlite" or path is None:
            return None
        checkpointer = Checkpointer(path, self.wal_limit, self._file_lost, self._lock)
        checkpointer.start()
        return checkpointer

    def _refuse_lost(self, pushes: list[Any], answer: Any) -> bool:
        """Once the database file is gone, every push is answered "not recorded"."""
        if not self.lost:
            return False
        err = DatabaseError(f"database unavailable: {self.lost}")
        answer([(op.token, err) for op in pushes])
        return True

    def _file_lost(self, why: str) -> None:
        """The database file is gone or replaced: whatever commits now is lost at restart."""
        with self._lock:  # a commit in progress ends first; ``_settle`` then sees ``lost``
            self.lost = why
            self.healthy, self.last_error, self._fast = False, why, None
        log.error("%s: refusing every push from now on; restore the file and restart leekd", why)

    def check_writable(self) -> str:
        """At start, from a pool thread: "" if a write works, else why not (and refuse pushes)."""
        from django.db import connection

        try:
            probe_write(connection)
        except DatabaseError as exc:
            self.healthy, self.last_error = False, f"{type(exc).__name__}: {exc}"
            log.error(
                "the database does not take writes (%s): every push is refused until it does; "
                "ping and status say so",
                self.last_error,
            )
            return self.last_error
        finally:
            connection.close()
        return ""

    def _recheck(self) -> bool:
        """The writer, while the database fails and nothing is to be written: is it back?"""
        with self._lock:
            try:
                probe_write(self._db, self._sqlite() if self._db.vendor == "sqlite" else None)
            except DatabaseError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._fast = None
                self._db.close()
                return False
        log.warning("database writable again")
        self.healthy, self.last_error = True, ""
        return True

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
        adapter returns, at a fifth of its cost (settings are looked up on every call
        there; ``isoformat`` without the ``+00:00`` is the same text as ``str()`` of the
        naive value, and half its price). Other cases go through Django's.
        """
        if self._utc_text and value.tzinfo is UTC:
            return value.isoformat(" ")[:-6]
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


def probe_write(db: Any, raw: Any = None) -> None:
    """A write that changes nothing, rolled back; raises DatabaseError if writes fail.

    Reading works on a read-only or full database, so only a write tells whether pushes
    can be recorded. On SQLite ``BEGIN IMMEDIATE`` alone succeeds even on a read-only file:
    the header is written (with the value it has) to make SQLite touch the file.
    """
    with db.wrap_database_errors:
        if db.vendor != "sqlite":
            with transaction.atomic(using=db.alias), db.cursor() as cur:
                cur.execute("UPDATE leekd_queuedtask SET state = state WHERE id < 0")
            return
        if raw is None:
            db.ensure_connection()
            raw = db.connection
        raw.execute("BEGIN IMMEDIATE")
        try:
            (version,) = raw.execute("PRAGMA user_version").fetchone()
            raw.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            if raw.in_transaction:
                raw.rollback()
