"""Cancelling a task another node holds: asked and answered over LISTEN/NOTIFY.

Only the node that holds a task in memory can take it out before a worker starts it, so a
node asked to cancel a task another node owns says ``cancel {"to", "from", "id"}`` and
waits, bounded, for ``cancelled {"to", "id", "answer"}``. An answer lost on the way leaves
the row to say what happened (``store/cancel.py`` reads it again).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from django.db import connection

from . import notify

MAX_REASON = 500  # characters of a refusal's reason carried back: the payload stays small


def message(kind: str, body: dict[str, Any]) -> str:
    return f"{kind} {json.dumps(body, separators=(',', ':'))}"


def parse(text: str) -> dict[str, Any] | None:
    """The body of a ``cancel``/``cancelled`` notification, or None if it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("to"), str):
        return None
    task_id = body.get("id")
    if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 1:
        return None
    return body


def answer(to: str, task_id: int, reply: dict[str, Any]) -> None:
    """Tell node ``to`` what became of its cancel (blocking; a pool thread)."""
    reply = {**reply, "reason": str(reply.get("reason", ""))[:MAX_REASON]}
    try:
        notify.send(message("cancelled", {"to": to, "id": task_id, "answer": reply}))
    finally:
        connection.close()


class _Box:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None


class Cancels:
    """This node's cancels waiting for another node's answer, by task id."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._lock = threading.Lock()
        self._waiting: dict[int, list[_Box]] = {}

    def ask(self, owner: str, task_id: int, timeout: float) -> dict[str, Any] | None:
        """Ask ``owner`` to cancel ``task_id``; its answer, or None after ``timeout``."""
        box = _Box()
        with self._lock:
            self._waiting.setdefault(task_id, []).append(box)
        try:
            try:
                notify.send(message("cancel", {"to": owner, "from": self.me, "id": task_id}))
            finally:
                connection.close()
            box.done.wait(timeout)
            return box.reply
        finally:
            with self._lock:
                boxes = self._waiting.get(task_id, [])
                if box in boxes:
                    boxes.remove(box)
                if not boxes:
                    self._waiting.pop(task_id, None)

    def answered(self, body: dict[str, Any]) -> None:
        """From the listener: a ``cancelled`` notification for this node."""
        reply = body.get("answer")
        if not isinstance(reply, dict):
            return
        with self._lock:
            boxes = list(self._waiting.get(body["id"], ()))
        for box in boxes:
            box.reply = reply
            box.done.set()
