"""Node rows: joining, the heartbeat, leaving, and the list ``leek-shell nodes`` shows.

Ages are measured with the database's clock (``now()``), never the machines', so nodes
whose clocks disagree still agree on who is alive. A node's ``epoch`` grows when it joins
and when another node takes its tasks over: a heartbeat that finds its epoch changed
tells the node it was taken for dead.
"""

from __future__ import annotations

import socket
from typing import Any

from django.db import connection, transaction


def ephemeral(port: int | str) -> bool:
    """A port chosen afresh at each start (0): no name made from it lasts past a restart."""
    return str(port) == "0"


def default_name(port: int | str, pid: int) -> str:
    """This machine's host name and leekd's port: unique per leekd on a machine, and the same
    after a restart, so a node takes its own unfinished tasks back at once. An ephemeral port
    is neither: several such leekd would share one name (and each take the others' tasks
    for its own), so the process id stands in, and what a dead one left waits out its lease."""
    if ephemeral(port):
        return f"{socket.gethostname()}:0-pid{pid}"
    return f"{socket.gethostname()}:{port}"


def join(name: str, address: str, pid: int) -> int:
    """Insert or revive this node's row; returns its new epoch."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO leekd_node (name, address, pid, epoch, started_at, heartbeat, stopped, "
            "waiting, running) VALUES (%s, %s, %s, 1, now(), now(), false, 0, 0) "
            "ON CONFLICT (name) DO UPDATE SET "
            "address = EXCLUDED.address, pid = EXCLUDED.pid, epoch = leekd_node.epoch + 1, "
            "started_at = now(), heartbeat = now(), stopped = false RETURNING epoch",
            [name, address, pid],
        )
        return int(cur.fetchone()[0])


def beat(name: str, epoch: int, address: str, waiting: int, running: int) -> bool:
    """Refresh the heartbeat; False if the epoch moved on (our tasks were taken over)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE leekd_node SET heartbeat = now(), address = %s, waiting = %s, running = %s "
            "WHERE name = %s AND epoch = %s",
            [address, waiting, running, name, epoch],
        )
        return cur.rowcount == 1


def leave(name: str, epoch: int) -> None:
    """A clean stop: the row says so, and the others may take what is left at once."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE leekd_node SET stopped = true, heartbeat = now(), waiting = 0, running = 0 "
            "WHERE name = %s AND epoch = %s",
            [name, epoch],
        )


def address_of(name: str) -> str:
    """The address node ``name`` last gave, or "" for a node never seen."""
    with connection.cursor() as cur:
        cur.execute("SELECT address FROM leekd_node WHERE name = %s", [name])
        row = cur.fetchone()
        return "" if row is None else str(row[0])


def expiries(lease: float, me: str) -> list[float]:
    """Seconds until each other live node's lease runs out (negative: already out)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT %s - extract(epoch FROM now() - heartbeat) FROM leekd_node "
            "WHERE name <> %s AND NOT stopped",
            [lease, me],
        )
        return [float(row[0]) for row in cur.fetchall()]


def list_nodes(lease: float) -> list[dict[str, Any]]:
    """Every node with its heartbeat age, lease state and counts."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT n.name, n.address, n.pid, n.epoch, extract(epoch FROM now() - n.heartbeat), "
            "n.stopped, n.waiting, n.running, n.started_at, (SELECT count(*) FROM "
            "leekd_queuedtask q WHERE q.owner = n.name AND q.state = 'queued') "
            "FROM leekd_node n ORDER BY n.name"
        )
        rows = cur.fetchall()
    out = []
    for name, address, pid, epoch, age, stopped, waiting, running, started, owned in rows:
        age = float(age)
        state = "stopped" if stopped else ("alive" if age < lease else "expired")
        out.append(
            {
                "name": name,
                "address": address,
                "pid": pid,
                "epoch": epoch,
                "heartbeat_age": round(age, 3),
                "lease": state,
                "waiting": waiting,
                "running": running,
                "unfinished": owned,
                "started_at": started.isoformat(),
            }
        )
    return out
