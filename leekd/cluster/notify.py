"""Wake-ups between nodes over PostgreSQL's LISTEN/NOTIFY.

A node says ``left <name>`` when it stops cleanly (the others take its unfinished tasks at
once instead of after the lease) and ``took <name>`` when it took a node's tasks over (that
node, if it is alive after all, checks its heartbeat at once and drops them). Each commit
of outcomes says ``outcome <name> <id>,<id>,…`` (in notifications of at most ``IDS`` ids,
well under PostgreSQL's 8000-byte payload), so a node where a client waits for one of
those results reads it and answers at once. A notification sent while a listener was disconnected is lost, so every reconnect calls
``on_connect``, and the heartbeat's own pass remains the slow safety sweep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

log = logging.getLogger("leekd.cluster")

CHANNEL = "leekd_cluster"
_NOT_LIBPQ = ("context", "cursor_factory", "prepare_threshold")
IDS = 500  # task ids per notification: at most 500 * 20 digits and commas, under 8000 bytes


def send(message: str) -> None:
    """NOTIFY the other nodes (committed with the surrounding transaction, if any)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, message])


def announce_outcomes(node: str, cur: Any, ids: list[int]) -> None:
    """Within an outcome commit: say which tasks ended; delivered when it commits."""
    for k in range(0, len(ids), IDS):
        listed = ",".join(map(str, ids[k : k + IDS]))
        cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"outcome {node} {listed}"])


def outcome_ids(text: str) -> list[int]:
    """The task ids of an ``outcome`` notification (at most ``IDS``; anything else skipped)."""
    ids = []
    for part in text.split(",", IDS)[:IDS]:
        if part.isdigit():
            ids.append(int(part))
    return ids


def connect_params() -> dict[str, Any]:
    """psycopg's keyword arguments for the project's database, as Django would connect."""
    params = dict(connection.get_connection_params())
    for key in _NOT_LIBPQ:
        params.pop(key, None)
    return params


class Listener(threading.Thread):
    """Its own autocommit connection, LISTENing; hands each payload to ``on_message``."""

    def __init__(
        self,
        params: dict[str, Any],
        on_message: Callable[[str], None],
        on_connect: Callable[[], None],
    ) -> None:
        super().__init__(name="leekd-listen", daemon=True)
        self.params = params
        self.on_message = on_message
        self.on_connect = on_connect
        self.stop_event = threading.Event()
        self.connected = False

    def run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(**self.params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected, backoff = True, 0.1
                    self.on_connect()
                    while not self.stop_event.is_set():
                        # Blocks on the socket; the timeout only lets us see stop_event.
                        for note in conn.notifies(timeout=0.5):
                            self.on_message(note.payload)
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("cluster listener lost the database (%s); reconnecting", exc)
                self.connected = False
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 2.0)
