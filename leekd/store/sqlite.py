"""SQLite's write-ahead log, checkpointed off the commit path, and the file kept in sight."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("leekd.store")

WAL_LIMIT = 64 * 1024 * 1024  # default ``wal_limit``


def file_identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of ``path``; None if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def database_file(name: str) -> str | None:
    """The file behind a SQLite database NAME, or None (in memory, or a URI)."""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return name


class Checkpointer(threading.Thread):
    """Checkpoints SQLite's write-ahead log off the writer's path, and watches its file.

    A checkpoint copies the log into the database file and syncs both; done by the writer
    (SQLite's default, every 1000 pages) it stalls the pushes of that commit for
    milliseconds. Here a passive checkpoint runs every ``interval`` (or sooner, once the log
    is over its limit) on its own connection and never blocks the writer. A passive checkpoint cannot reset the log while writers
    keep appending to it, so under steady load the log would grow forever: once it is over
    ``wal_limit``, a TRUNCATE checkpoint follows the passive one, holding the store's commit
    ``lock`` (SQLite's busy handler alone lets a steady stream of commits starve it). Pushes
    meanwhile go to the writer thread and wait, but only for what the passive pass left
    to copy; the log is then empty again.

    Every ``watch`` seconds it also compares the database file at ``path`` with the one
    opened at start: a file deleted or replaced under leekd would take every later commit
    with it, so ``on_lost`` is told at once (one ``stat``; no commit pays for it).
    """

    def __init__(
        self,
        path: str,
        wal_limit: int = WAL_LIMIT,
        on_lost: Callable[[str], object] | None = None,
        lock: threading.Lock | None = None,
        interval: float = 0.5,
        watch: float = 0.1,
    ) -> None:
        super().__init__(name="leekd-checkpoint", daemon=True)
        self.path = path
        self.wal_limit = wal_limit
        self.on_lost = on_lost
        self.lock = lock or threading.Lock()
        self.interval = interval
        self.watch = watch
        self.identity = file_identity(path)
        self.lost = ""
        self.truncations = 0
        self.stop_event = threading.Event()

    def changed(self) -> str:
        """Why the file at ``path`` is no longer the database leekd opened, or ""."""
        now = file_identity(self.path)
        if now == self.identity:
            return ""
        if now is None:
            return f"the database file {self.path} was deleted while leekd ran"
        return f"the database file {self.path} was replaced while leekd ran"

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("no background checkpoints for %s: %s", self.path, exc)
            return
        try:
            due = time.monotonic() + self.interval
            while not self.stop_event.wait(min(self.watch, self.interval)):
                if not self.lost and self.identity is not None:
                    self.lost = self.changed()
                    if self.lost and self.on_lost is not None:
                        self.on_lost(self.lost)
                # A busy leekd writes tens of MiB of log a second: its size is looked at
                # on every tick, so the limit holds to within a tick's worth.
                if self.lost or (time.monotonic() < due and self.wal_size() <= self.wal_limit):
                    continue
                due = time.monotonic() + self.interval
                self.checkpoint(conn)
            if not self.lost:
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error:
                    pass
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if self.wal_size() <= self.wal_limit:
                return
            with self.lock:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                log.debug("WAL over %d bytes; truncating checkpoint was blocked", self.wal_limit)
            else:
                self.truncations += 1
        except sqlite3.Error as exc:
            log.debug("checkpoint skipped: %s", exc)

    def wal_size(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except FileNotFoundError:
            return 0
