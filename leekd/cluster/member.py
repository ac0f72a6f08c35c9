"""This node's membership: the heartbeat thread, takeover of dead nodes, learning of a loss.

Each pass (a third of the lease apart, or sooner when a wake-up arrives or another node's
lease is about to run out) refreshes our heartbeat, then claims the tasks of nodes whose
lease ran out. When our own heartbeat has failed for half the lease we may soon be taken for
dead, so the engine holds its queued jobs until the database says what is still ours; a heartbeat that finds our epoch moved on means we were: we join again at a new
epoch, then forget (and interrupt) whatever is no longer ours.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from django.db import DatabaseError, connection

from ..job import Job
from . import cancels, nodes, notify, takeover

log = logging.getLogger("leekd.cluster")

MAX_CLAIMS = 100  # claims per pass; the rest waits for the next one


class Host(Protocol):
    """What the rest of leekd does for the cluster (app.py implements it)."""

    def counts(self) -> tuple[int, int]:
        """Tasks waiting and running here."""

    def hold(self, held: bool) -> None:
        """Stop (or resume) starting queued tasks."""

    def fence(self, epoch: int) -> None:
        """Write rows and outcomes as this node at ``epoch`` from now on."""

    def known(self) -> set[int]:
        """Ids of the tasks held in memory."""

    def drop(self, ids: set[int]) -> None:
        """Forget these tasks and stop those running where possible."""

    def queue(self, jobs: Iterable[Job]) -> object:
        """Run these tasks, claimed from another node."""

    def ended(self, ids: list[int]) -> None:
        """Another node committed these tasks' outcomes (from the listener thread)."""

    def cancel_asked(self, task_id: int, by: str) -> None:
        """Node ``by`` was asked to cancel a task of ours: cancel it here, answer ``by``."""


class Member(threading.Thread):
    def __init__(
        self, name: str, address: str, lease: float, host: Host, lasting: bool = True
    ) -> None:
        super().__init__(name="leekd-heartbeat", daemon=True)
        self.node, self.address, self.lease, self.host = name, address, lease, host
        self.lasting = lasting  # the name survives a restart (not made for one process)
        self.interval = lease / 3
        self.epoch = 0
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.last_ok = time.monotonic()
        self.held = False
        self.healthy = True
        self.taken = 0  # tasks claimed from other nodes
        self.lost = 0  # tasks other nodes claimed from us while we lived
        self.seen: list[dict[str, Any]] = []  # every node, as of the last pass
        self.listener: notify.Listener | None = None
        self.cancels = cancels.Cancels(name)  # ours, waiting for another node's answer

    def join_cluster(self) -> int:
        """Join at a new epoch and claim our unfinished tasks; returns how many (blocking)."""
        try:
            self.epoch = nodes.join(self.node, self.address, os.getpid())
            self.host.fence(self.epoch)
            n = takeover.adopt(self.node, self.epoch, self.host.queue)
            self.seen = nodes.list_nodes(self.lease)
            self.listener = notify.Listener(notify.connect_params(), self._heard, self.wake.set)
            return n
        finally:
            connection.close()

    def run(self) -> None:
        if self.listener is not None:
            self.listener.start()
        try:
            while not self.stop_event.is_set():
                wait = self.step()
                self.wake.wait(wait)
                self.wake.clear()
        finally:
            connection.close()

    def stop(self, timeout: float) -> None:
        """End the thread, then tell the others we left, so they take what is left at once."""
        self.stop_event.set()
        self.wake.set()
        if self.listener is not None:
            self.listener.stop_event.set()
            self.listener.join(timeout)
        self.join(timeout)
        try:
            nodes.leave(self.node, self.epoch)
            notify.send(f"left {self.node}")
        except DatabaseError as exc:
            log.warning(
                "could not mark node %s as stopped (%s); its lease will run out", self.node, exc
            )
        finally:
            connection.close()

    def stats(self) -> dict[str, Any]:
        """This node, and every node as of the last pass with the live ones' totals."""
        seen = self.seen
        alive = [n for n in seen if n["lease"] == "alive"]
        return {
            "node": self.node,
            "epoch": self.epoch,
            "healthy": self.healthy,
            "taken_over": self.taken,
            "lost": self.lost,
            "nodes": {n["name"]: n for n in seen},
            "total": {
                "alive": len(alive),
                "waiting": sum(n["waiting"] for n in alive),
                "running": sum(n["running"] for n in alive),
                "unfinished": sum(n["unfinished"] for n in seen),
            },
        }

    def _heard(self, message: str) -> None:
        kind, _, name = message.partition(" ")
        if kind == "outcome":
            name, _, ids = name.rpartition(" ")  # a node's name may hold spaces; ids do not
            if name != self.node:  # our own outcomes woke our waits as they committed
                self.host.ended(notify.outcome_ids(ids))
        elif kind in ("cancel", "cancelled"):
            body = cancels.parse(name)
            if body is None or body["to"] != self.node:
                return
            if kind == "cancelled":
                self.cancels.answered(body)
            elif isinstance(body.get("from"), str):
                self.host.cancel_asked(body["id"], body["from"])
        elif (kind == "left" and name != self.node) or (kind == "took" and name == self.node):
            self.wake.set()

    def ended_here(self, task_id: int) -> None:
        """A task of ours ended outside an outcome commit (a cancel): wake waits elsewhere."""
        try:
            notify.send(f"outcome {self.node} {task_id}")
        except DatabaseError as exc:
            log.warning("could not tell the other nodes task %d ended (%s)", task_id, exc)
        finally:
            connection.close()

    def step(self) -> float:
        """One pass; returns the seconds until the next (tests call it directly)."""
        try:
            waiting, running = self.host.counts()
            if not nodes.beat(self.node, self.epoch, self.address, waiting, running):
                self._rejoin()
            self.last_ok = time.monotonic()
            if not self.healthy:
                log.warning("node %s: heartbeat back", self.node)
                self.healthy = True
            if self.held:
                self.host.hold(False)
                self.held = False
            wait = self._take_over()
            self.seen = nodes.list_nodes(self.lease)
            return wait
        except DatabaseError as exc:
            connection.close()
            if self.healthy:
                log.error("node %s: heartbeat failed (%s)", self.node, exc)
                self.healthy = False
            # Half the lease, not all of it: the others count from our last heartbeat too,
            # so by then we must have stopped starting what they may claim.
            if not self.held and time.monotonic() - self.last_ok > self.lease / 2:
                log.error(
                    "node %s: no heartbeat for %.1fs, half the lease: starting no more tasks "
                    "until the database says which are still ours",
                    self.node,
                    time.monotonic() - self.last_ok,
                )
                self.host.hold(True)
                self.held = True
            return min(self.interval, 0.5)

    def _rejoin(self) -> None:
        """Our epoch moved on: another node took our tasks. Keep only what is still ours."""
        self.host.hold(True)
        self.held = True
        self.epoch = nodes.join(self.node, self.address, os.getpid())
        self.host.fence(self.epoch)  # every commit under the old epoch has finished
        takeover.renew(self.node, self.epoch)
        known = self.host.known()
        gone = known - takeover.still_mine(self.node, self.epoch, known)
        if gone:
            self.host.drop(gone)
            self.lost += len(gone)
        log.warning(
            "node %s was taken for dead and joined again at epoch %d; %d task(s) now belong to "
            "other nodes and were dropped here",
            self.node,
            self.epoch,
            len(gone),
        )

    def _take_over(self) -> float:
        for _ in range(MAX_CLAIMS):
            dead, jobs = takeover.take_over(self.node, self.epoch, self.lease)
            if dead is None or not jobs:
                break
            self.host.queue(jobs)
            self.taken += len(jobs)
            log.warning("took over %d unfinished task(s) of node %s", len(jobs), dead)
            notify.send(f"took {dead}")
        # Wake up just after the next lease runs out, rather than up to a third late.
        soonest = min((t for t in nodes.expiries(self.lease, self.node) if t > 0), default=None)
        return self.interval if soonest is None else min(self.interval, soonest + 0.05)
