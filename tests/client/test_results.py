"""``leek.result`` / ``Client.result`` against an in-process leekd: values, failures, waits."""

from __future__ import annotations

import threading
import time

import pytest

import leek
from leek.protocol import Request
from leekd.net.results import MAX_WAITERS

from .. import tasks
from ..helpers import SECRET, wait_for


def test_result_returns_the_value(client):
    task_id = client.push(tasks.add, (2, 3))
    assert client.result(task_id, timeout=10) == 5


def test_result_raises_the_remote_failure_with_its_traceback(make_server):
    server = make_server(max_retries=1)
    with leek.Client(port=server.port, secret=SECRET) as c:
        task_id = c.push(tasks.fail, ("kaput",))
        with pytest.raises(leek.LeekTaskFailed) as info:
            c.result(task_id, timeout=10)
    err = info.value
    assert isinstance(err, leek.LeekError) and err.task_id == task_id
    assert err.exc_type == "builtins.ValueError" and err.message == "kaput"
    assert "tests/tasks.py" in err.traceback and "raise ValueError(message)" in err.traceback


def test_result_times_out_and_can_wait_again(client, tmp_path):
    gate = tmp_path / "go"
    task_id = client.push(tasks.wait_for_file, (str(gate),))
    t0 = time.monotonic()
    with pytest.raises(leek.LeekTimeout, match=f"task {task_id} did not finish within 0.2s"):
        client.result(task_id, timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 5
    gate.touch()
    assert client.result(task_id, timeout=10) == "released"


def test_a_waiting_result_is_woken_by_the_commit_not_by_polling(server, tmp_path):
    # Given a result request waiting on leekd for a task that is blocked
    gate = tmp_path / "go"
    with leek.Client(port=server.port, secret=SECRET) as pusher:
        task_id = pusher.push(tasks.wait_for_file, (str(gate),))
        got: list[object] = []
        with leek.Client(port=server.port, secret=SECRET) as waiter:
            thread = threading.Thread(target=lambda: got.append(waiter.result(task_id, 30)))
            thread.start()
            wait_for(lambda: server.results, what="the wait to register on leekd")
            # When the task finishes
            t0 = time.monotonic()
            gate.touch()
            thread.join(10)
        # Then the waiter gets the value as soon as the outcome is committed
        assert got == ["released"] and time.monotonic() - t0 < 2
        assert not server.results  # nothing left registered


def test_module_result_waits_on_its_own_connection(server, monkeypatch, tmp_path):
    monkeypatch.setenv("LEEK_PORT", str(server.port))
    monkeypatch.setattr(leek.client, "_default", None)
    gate = tmp_path / "go"
    slow = leek.push(tasks.wait_for_file, (str(gate),))
    thread = threading.Thread(target=leek.result, args=(slow, 30))
    thread.start()
    wait_for(lambda: server.results)
    # The shared connection is free while another thread waits.
    assert leek.result(leek.push(tasks.add, (1, 1)), timeout=10) == 2
    gate.touch()
    thread.join(10)
    leek.get_client().close()


def test_unknown_purged_and_bad_ids(client):
    from leekd.models import QueuedTask

    with pytest.raises(leek.LeekRejected, match="no task with id 999999"):
        client.result(999999, timeout=1)
    first = client.push(tasks.noop)
    second = client.push(tasks.noop)
    client.result(second, timeout=10)
    client.result(first, timeout=10)
    QueuedTask.objects.filter(pk=first).delete()
    with pytest.raises(leek.LeekRejected, match=f"task {first}'s record was deleted"):
        client.result(first, timeout=1)
    for bad in ("abc", 0, -3, None, True, 1.5):
        with pytest.raises(leek.LeekError, match="a task id is a positive integer"):
            client.result(bad)  # type: ignore[arg-type]
        with pytest.raises(leek.LeekError, match="a task id is a positive integer"):
            client.status(bad)  # type: ignore[arg-type]
    assert client.status(str(second))["state"] == "succeeded"  # digits are an id too


def test_result_waits_per_connection_are_bounded(server, tmp_path):
    gate = tmp_path / "go"
    with leek.Client(port=server.port, secret=SECRET) as c:
        task_id = c.push(tasks.wait_for_file, (str(gate),))
        with c._lock:
            c._roundtrip([Request("ping")])  # connected
            requests = [Request("result", {"id": task_id, "wait": 30})] * (MAX_WAITERS + 1)
            assert c._sock is not None and c._conn is not None
            c._sock.sendall(b"".join(c._conn.send(r) for r in requests))
            gate.touch()
            replies = [c._read_event() for _ in requests]
    states = [getattr(r, "data", {}).get("state") for r in replies[:MAX_WAITERS]]
    assert states == ["succeeded"] * MAX_WAITERS
    assert "result waits already open on this connection" in replies[-1].message


def test_a_stop_answers_open_waits(make_server, tmp_path):
    server = make_server(grace=0.5)
    c = leek.Client(port=server.port, secret=SECRET)
    gate = tmp_path / "go"
    task_id = c.push(tasks.wait_for_file, (str(gate),))
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            c.result(task_id, 30)
        except leek.LeekError as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    wait_for(lambda: server.results)
    server.request_stop()
    thread.join(15)
    gate.touch()
    wait_for(server.stopped.is_set)
    assert errors and "leekd is stopping" in str(errors[0])
    c.close()


def test_a_cancel_answers_the_wait_with_leek_cancelled(server):
    with leek.Client(port=server.port, secret=SECRET) as c:
        task_id = c.push(tasks.add, (1, 2), delay=60)
        errors: list[BaseException] = []

        def wait() -> None:
            with leek.Client(port=server.port, secret=SECRET) as waiter:
                try:
                    waiter.result(task_id, timeout=30)
                except leek.LeekError as exc:
                    errors.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        wait_for(lambda: server.results, what="the wait to register on leekd")
        t0 = time.monotonic()
        assert c.cancel(task_id)["cancelled"]
        thread.join(10)
        assert isinstance(errors[0], leek.LeekCancelled) and time.monotonic() - t0 < 5
        with pytest.raises(leek.LeekCancelled, match=f"task {task_id} was cancelled"):
            c.result(task_id, timeout=1)
