"""Worker threads run their tasks as batch work, so a woken worker does not preempt the loop."""

from __future__ import annotations

import os
import threading

from .. import tasks


def test_tasks_run_under_sched_batch_and_the_event_loop_keeps_the_normal_policy(client):
    policy = client.result(client.push(tasks.scheduling_policy), timeout=10)
    loop = next(t for t in threading.enumerate() if t.name == "leekd-main")
    assert loop.native_id is not None
    if hasattr(os, "SCHED_BATCH"):  # Linux
        assert policy == os.SCHED_BATCH
        # The loop that answers pushes is not batch work: it keeps the policy it started with.
        assert os.sched_getscheduler(loop.native_id) == os.SCHED_OTHER
    else:  # elsewhere a worker is left under the policy it started with
        assert policy == tasks.scheduling_policy()
