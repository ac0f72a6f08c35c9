"""SQLite's write-ahead log, checkpointed off the commit path."""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("leekd.store")


class Checkpointer(threading.Thread):
    """Checkpoints SQLite's write-ahead log off the writer's path.

    A checkpoint copies the log into the database file and syncs both; done by the writer
    (SQLite's default, every 1000 pages) it stalls the pushes of that commit for
    milliseconds. Here a passive checkpoint runs every ``interval`` on its own connection
    and never blocks the writer.
    """

    def __init__(self, path: str, interval: float = 0.5) -> None:
        super().__init__(name="leekd-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("no background checkpoints for %s: %s", self.path, exc)
            return
        try:
            while not self.stop_event.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.debug("checkpoint skipped: %s", exc)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                pass
        finally:
            conn.close()
