"""Waiting for a task's result: what leekd's ``result`` answers, made into a value or raise.

leekd answers a ``result`` request when the task's outcome is committed (it wakes the
request; nobody polls), or after the ``wait`` the request asked for, with ``pending``.
The client asks again until its own deadline, in steps of at most ``STEP`` seconds so that
every socket wait stays bounded.
"""

from __future__ import annotations

import base64
import pickle
import time
from collections.abc import Callable
from typing import Any

from .errors import LeekCancelled, LeekError, LeekProtocolError, LeekTaskFailed, LeekTimeout

STEP = 300.0  # seconds one request waits at most (leekd allows up to an hour)
SHORT_STEP = 2.0  # the same with several nodes, where another node may record the outcome


def task_id_of(value: Any) -> int:
    """A task id as the user gave it (an int, or digits), or a ``LeekError`` that says so."""
    if isinstance(value, bool):
        value = None
    try:
        task_id = int(value)
    except (TypeError, ValueError):
        task_id = 0
    if task_id < 1 or (isinstance(value, float) and value != task_id):
        raise LeekError(f"a task id is a positive integer (what a push returned), not {value!r}")
    return task_id


def outcome_value(task_id: int, reply: Any) -> tuple[bool, Any]:
    """``(True, value)`` for a finished task, ``(False, None)`` while pending; else raises."""
    if not isinstance(reply, dict):
        raise LeekProtocolError(f"expected a result, got {type(reply).__name__}")
    state = reply.get("state")
    if state == "succeeded":
        data = reply.get("result")
        return True, None if data is None else pickle.loads(base64.b64decode(data))
    if state == "failed":
        raise LeekTaskFailed(
            task_id,
            str(reply.get("exc_type", "")),
            str(reply.get("message", "")),
            str(reply.get("traceback", "")),
        )
    if state == "cancelled":
        raise LeekCancelled(task_id)
    if state == "pending":
        return False, None
    raise LeekProtocolError(f"leekd answered a result request with state {state!r}")


def wait_result(
    ask: Callable[[float], Any], task_id: int, timeout: float | None, step: float = STEP
) -> Any:
    """Ask (``ask(wait)`` sends one ``result`` request) until the task is done or time is up."""
    if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
        raise LeekError(f"timeout is a number of seconds (or None: no limit), not {timeout!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = step if deadline is None else max(0.0, deadline - time.monotonic())
        done, value = outcome_value(task_id, ask(min(left, step)))
        if done:
            return value
        if deadline is not None and time.monotonic() >= deadline:
            raise LeekTimeout(
                f"task {task_id} did not finish within {timeout:g}s; it may still run — "
                "call result() again to keep waiting"
            )
