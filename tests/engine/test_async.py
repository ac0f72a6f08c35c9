"""Coroutine functions pushed to leekd run on an event loop of their own and are recorded."""

from __future__ import annotations

import time

import pytest

import leek

from .. import tasks
from ..helpers import SECRET


def test_async_task_result_and_failure(make_server):
    server = make_server(max_retries=1)
    with leek.Client(port=server.port, secret=SECRET) as c:
        assert c.result(c.push(tasks.async_add, (2, 3)), timeout=10) == 5
        with pytest.raises(leek.LeekTaskFailed, match="builtins.KeyError") as info:
            c.result(c.push(tasks.async_fail, ("gone",)), timeout=10)
        assert "async_fail" in info.value.traceback


def test_an_async_task_does_not_hold_up_other_workers(make_server):
    server = make_server(workers=2)
    with leek.Client(port=server.port, secret=SECRET) as c:
        slow = c.push(tasks.async_add, (1, 1), {"delay": 1.5})
        t0 = time.monotonic()
        assert c.result(c.push(tasks.add, (1, 2)), timeout=10) == 3
        assert time.monotonic() - t0 < 1.0  # ran beside the sleeping coroutine
        assert c.result(slow, timeout=10) == 2
