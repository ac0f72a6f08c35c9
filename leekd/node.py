"""This leekd as a node among others on one PostgreSQL: what the cluster may ask of it.

``cluster/`` knows neither the engine nor the store; here its ``Host`` callbacks are
answered with this node's queue, workers and store. Only ``app.py`` imports this.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from leek.errors import LeekConfigError

from .cluster.cancels import answer
from .cluster.member import Member
from .engine.workers import stop_lost

log = logging.getLogger("leekd.cluster")


def member_for(app: Any) -> Member | None:
    """This node's membership on PostgreSQL; None on one node (SQLite)."""
    from django.db import connection

    from .cluster.nodes import default_name, ephemeral
    from .cluster.notify import announce_outcomes

    config = app.config
    if connection.vendor != "postgresql":
        if config.node:
            raise LeekConfigError(
                f"--node needs PostgreSQL: several nodes share one PostgreSQL database, and "
                f"this one is {connection.vendor}; drop --node, or point leekd at PostgreSQL"
            )
        return None
    where = config.unix or config.port
    name = config.node or default_name(where, os.getpid())
    address = config.unix or f"{config.host}:{config.port}"
    assert app.store is not None
    lasting = bool(config.node) or not ephemeral(where)
    member = Member(name, address, config.lease, _Host(app), lasting)

    def fenced(lost: list[Any]) -> None:
        member.lost += len(lost)
        ids = ", ".join(str(o.job.id) for o in lost[:10]) + (" …" if len(lost) > 10 else "")
        log.warning(
            "%d outcome(s) not recorded: another node owns those tasks now (%s)", len(lost), ids
        )

    app.store.on_fenced = fenced
    app.store.announce = functools.partial(announce_outcomes, name)
    return member


class _Host:
    """What the cluster may ask of this node's engine and store (cluster/member.py)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def counts(self) -> tuple[int, int]:
        return self.app.engine.waiting(), self.app.busy()

    def hold(self, held: bool) -> None:
        self.app.engine.hold(held)

    def fence(self, epoch: int) -> None:
        assert self.app.store is not None and self.app.member is not None
        self.app.store.set_fence((self.app.member.node, epoch))

    def known(self) -> set[int]:
        return self.app.engine.known()

    def drop(self, ids: set[int]) -> None:
        stopped = stop_lost(self.app.workers, self.app.engine.drop(ids))
        log.warning("dropped %d task(s) another node owns now (%d interrupted)", len(ids), stopped)

    def queue(self, jobs: Iterable[Any]) -> object:
        return self.app.engine.put_many(jobs)

    def ended(self, ids: list[int]) -> None:
        self.app.outcomes_elsewhere(ids)

    def cancel_asked(self, task_id: int, by: str) -> None:
        app = self.app
        me = app.member.node

        def work() -> None:
            try:
                reply = app.cancel(task_id, forward=False)
            except Exception as exc:  # noqa: BLE001 - the asking node reports it
                reply = {
                    "cancelled": False,
                    "found": True,
                    "reason": f"{type(exc).__name__}: {exc}",
                }
            if reply.get("cancelled"):
                app.cancelled_here(task_id)
            elif "reason" in reply:
                reply["reason"] = f"{reply['reason']} (on node {me})"
            answer(by, task_id, {**reply, "node": me})

        try:
            app.pool.submit(work)
        except RuntimeError:
            pass  # stopping: the asking node's wait runs out and it reads the row


CANCEL_WAIT = 3.0  # seconds a cancel waits for the node holding the task to answer


def cancel_elsewhere(member: Member) -> Callable[[int, str], dict[str, Any] | None]:
    """``store/cancel.py``'s question to the node owning a task: its answer, ``{"address"}``
    if it gave none in time, or None when the task is this node's own."""

    def ask(task_id: int, owner: str) -> dict[str, Any] | None:
        if owner == member.node:
            return None
        reply = member.cancels.ask(owner, task_id, CANCEL_WAIT)
        if reply is not None:
            return reply
        from django.db import connection

        from .cluster.nodes import address_of

        try:
            return {"address": address_of(owner)}
        finally:
            connection.close()

    return ask


def nodes_job(member: Member | None) -> Any:
    """The blocking work of a ``nodes`` request; ``ValueError`` on one node."""
    if member is None:
        raise ValueError("this leekd runs alone on SQLite: several nodes need PostgreSQL")

    def nodes() -> dict[str, Any]:
        from django.db import connection

        from .cluster.nodes import list_nodes

        try:
            return {"me": member.node, "lease": member.lease, "nodes": list_nodes(member.lease)}
        finally:
            connection.close()

    return nodes
