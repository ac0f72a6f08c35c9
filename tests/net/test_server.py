"""End to end against an in-process leekd on an ephemeral port and a real SQLite file."""

from __future__ import annotations

import os
import pickle
import select
import socket
import sys

import pytest

import leek
from leek.protocol import Connection, Push, Role, TaskRecord
from leek.records import make_record

from .. import tasks
from ..helpers import SECRET, wait_for


def outcome(task_id: int):
    from leekd.models import QueuedTask

    return QueuedTask.objects.filter(pk=task_id).values_list("state", flat=True).first()


def finished(task_id: int) -> bool:
    return outcome(task_id) in ("succeeded", "failed")


def test_push_runs_the_task_and_records_success(client, tmp_path):
    from leekd.models import QueuedTask, SuccessTask

    task_id = client.push(tasks.add, (2, 3))
    # The row exists as soon as the push is answered.
    assert QueuedTask.objects.filter(pk=task_id).exists()
    wait_for(lambda: finished(task_id), what="task to finish")
    done = SuccessTask.objects.get(task_id=task_id)
    assert pickle.loads(done.result) == 5
    assert done.attempts == 1 and done.duration >= 0
    row = QueuedTask.objects.get(pk=task_id)
    assert row.name == "tests.tasks.add" and row.args_preview == "2, 3" and row.state == "succeeded"


def test_push_task_to_queue_passes_args_and_kwargs_untouched(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LEEK_PORT", str(server.port))
    monkeypatch.setattr(leek.client, "_default", None)
    task_id = leek.push_task_to_queue(tasks.touch, str(tmp_path), name="kw", delay=0)
    wait_for(lambda: (tmp_path / "kw").exists())
    assert finished(task_id) or wait_for(lambda: finished(task_id))
    leek.get_client().close()


def test_failing_task_is_tried_max_retries_times_then_failed(client):
    from leekd.models import FailedTask

    task_id = client.push(tasks.fail, ("kaput",))
    wait_for(lambda: finished(task_id))
    failure = FailedTask.objects.get(task_id=task_id)
    assert failure.attempts == 3
    assert failure.exc_type == "builtins.ValueError" and failure.message == "kaput"
    assert (
        "Traceback (most recent call last)" in failure.traceback
        and "def fail" not in failure.message
    )
    assert "raise ValueError(message)" in failure.traceback
    status = client.status(task_id)
    assert status["state"] == "failed" and status["attempts"] == 3 and "kaput" in status["error"]


def test_retry_then_success(client, tmp_path):
    task_id = client.push(tasks.fail_until, (str(tmp_path), "flaky", 2))
    wait_for(lambda: finished(task_id))
    assert outcome(task_id) == "succeeded"
    assert (tmp_path / "flaky").read_text() == "xxx"
    assert client.status(task_id)["attempts"] == 3


def test_max_retries_option_per_push(client):
    task_id = client.push(tasks.fail, max_retries=1)
    wait_for(lambda: finished(task_id))
    assert client.status(task_id)["attempts"] == 1


def test_functions_from_main_and_lambdas_travel_by_value(client, tmp_path):
    target = tmp_path / "closure"

    def local_closure():  # not importable by the server: pickled by value
        target.write_text("ran")
        return 42

    tid = client.push(local_closure)
    lam = client.push(lambda x: x * 2, (21,))
    wait_for(lambda: finished(tid) and finished(lam))
    assert target.read_text() == "ran"
    assert client.status(lam)["state"] == "succeeded"


def test_task_decorator_runs_inline_and_delays(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LEEK_PORT", str(server.port))
    monkeypatch.setattr(leek.client, "_default", None)
    decorated = leek.task(queue="files", max_retries=2)(tasks.touch)
    assert decorated(str(tmp_path), "inline") == "inline"
    task_id = decorated.delay(str(tmp_path), "delayed")
    wait_for(lambda: finished(task_id))
    st = leek.get_client().status(task_id)
    assert st["queue"] == "files" and st["state"] == "succeeded"
    assert (tmp_path / "delayed").exists()
    leek.get_client().close()


def test_push_many_is_one_call_and_all_run(client):
    ids = client.push_many([(tasks.add, (i, i)) for i in range(300)], queue="bulk")
    assert len(ids) == 300 and len(set(ids)) == 300 and ids == sorted(ids)
    wait_for(lambda: all(finished(i) for i in ids[-5:]) and client.waiting() == 0, timeout=30)
    assert client.stats()["queues"]["bulk"]["succeeded"] == 300


def test_control_values_after_a_known_workload(make_server, tmp_path):
    app = make_server(workers=1)
    with leek.Client(port=app.port, secret=SECRET) as c:
        info = c.ping()
        assert (
            info["status"] == "ok" and info["version"] == leek.__version__ and info["workers"] == 1
        )
        blocker = c.push(tasks.sleep, (2.0,))  # long enough to hold on a loaded machine
        wait_for(lambda: c.status(blocker)["state"] == "running")
        ids = c.push_many([tasks.noop] * 5)
        assert c.waiting() == 5
        assert c.status(ids[0])["state"] == "queued"
        c.push(tasks.fail, max_retries=1)
        wait_for(lambda: c.handled() == 7, timeout=20)
        assert c.waiting() == 0
        # A worker counts its task handled just before it lets go of it.
        stats = wait_for(lambda: (s := c.stats())["workers"]["busy"] == 0 and s)
        assert stats["queues"]["default"]["succeeded"] == 6
        assert stats["queues"]["default"]["failed"] == 1
        assert stats["workers"] == {"total": 1, "busy": 0, "idle": 1}
        with pytest.raises(leek.LeekRejected, match="no task with id"):
            c.status(10**9)


def test_unloadable_payload_becomes_a_clear_failure(client):
    from leekd.models import FailedTask

    fake = b"\x80\x04cnomodule_xyz\nfn\n)}\x87."  # (nomodule_xyz.fn, (), {}): no such module here
    record = TaskRecord("nomodule.fn", fake)
    (task_id,) = client.push_records([record])
    wait_for(lambda: finished(task_id))
    failure = FailedTask.objects.get(task_id=task_id)
    assert failure.attempts == 1
    assert failure.message.startswith("could not load the task (leekd imports from: ")


def test_system_exit_and_unpicklable_results_are_recorded(client):
    from leekd.models import FailedTask, SuccessTask

    a = client.push(tasks.raise_system_exit, max_retries=1)
    b = client.push(tasks.return_unpicklable)
    wait_for(lambda: finished(a) and finished(b))
    assert FailedTask.objects.get(task_id=a).exc_type == "builtins.SystemExit"
    assert SuccessTask.objects.get(task_id=b).result is None
    assert client.ping()["status"] == "ok"


def test_tasks_can_use_the_orm(client):
    from leekd.models import SuccessTask

    task_id = client.push(tasks.uses_orm)
    wait_for(lambda: finished(task_id))
    assert pickle.loads(SuccessTask.objects.get(task_id=task_id).result) >= 1


def test_wrong_secret_is_refused_and_nothing_is_unpickled(server, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(leek.LeekAuthError, match="secret"):
        leek.Client(port=server.port, secret="not-the-secret").push(os.system, (f"touch {marker}",))
    # A raw client that ignores the server's hello and sends a frame signed with a wrong key.
    evil = pickle.dumps((os.system, (f"touch {marker}",), {}))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    conn = Connection(Role.CLIENT, b"wrong")
    sock.recv(4096)
    conn._server_nonce = b"\0" * 16  # skip verification: pretend we trusted the hello
    sock.sendall(conn.hello({}) + conn.send(Push((TaskRecord("os.system", evil),))))
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    with leek.Client(port=server.port, secret=SECRET) as good:
        assert good.ping()["status"] == "ok"
        assert good.handled() == 0
    assert not marker.exists()


def test_by_value_payload_from_another_python_is_refused(server):
    # A client announcing another Python version: by-reference tasks pass, by-value ones do not.
    c = leek.Client(port=server.port, secret=SECRET)
    import leek.link as lc

    real = lc.client_info
    lc.client_info = lambda: {**real(), "python": "3.99"}
    try:
        assert c.push(tasks.noop) > 0
        with pytest.raises(leek.LeekVersionError) as err:
            c.push(lambda: None)
        assert "3.99" in str(
            err.value
        ) and f"{sys.version_info.major}.{sys.version_info.minor}" in str(err.value)
        assert err.value.code == "version"
    finally:
        lc.client_info = real
        c.close()


def test_server_unreachable_is_a_quick_clear_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(leek.LeekConnectionError, match=f"127.0.0.1:{port}.*is it running"):
        leek.Client(port=port, secret=SECRET, connect_timeout=1).ping()


def test_client_reconnects_after_server_restart(make_server):
    app = make_server()
    c = leek.Client(port=app.port, secret=SECRET)
    assert c.ping()["status"] == "ok"
    port = app.port
    # Given a client connected to a server that then stops,
    app.request_stop()
    assert app.stopped.wait(15)
    assert not _listening(port)
    # when another server comes up on the same port,
    app2 = make_server(port=port)
    assert app2.port == port
    # then the next request reconnects without an error.
    assert c.ping()["status"] == "ok"
    c.close()


def test_a_push_on_a_connection_just_closed_by_leekd_is_sent_again_once(make_server, django_db):
    app = make_server(idle_timeout=0.2)
    c = leek.Client(port=app.port, secret=SECRET)
    first = c.push(tasks.noop)
    # Given leekd closing the connection for being idle, a moment after its last push
    # (too soon for the client to look before it sends again),
    wait_for(lambda: select.select([c._sock], [], [], 0)[0], timeout=10, what="leekd's close")
    # the next push goes on a new connection, and is recorded once.
    second = c.push(tasks.noop)
    assert second > first
    wait_for(lambda: c.status(second)["state"] == "succeeded")
    from leekd.models import QueuedTask

    assert QueuedTask.objects.filter(id__gte=first).count() == 2
    c.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_bad_options_are_refused_before_sending(client):
    with pytest.raises(leek.LeekError, match="max_retries"):
        client.push(tasks.noop, max_retries=0)
    with pytest.raises(leek.LeekError, match="queue"):
        client.push(tasks.noop, queue="")
    with pytest.raises(TypeError, match="unknown push options"):
        client.push(tasks.noop, retries=3)
    with pytest.raises(leek.LeekError, match="priority"):
        client.push(tasks.noop, priority=101)
    with pytest.raises(leek.LeekError, match="callable"):
        client.push("not a function")


def test_a_child_process_opens_its_own_connection(server, tmp_path):
    c = leek.Client(port=server.port, secret=SECRET)
    c.ping()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's socket
        code = 1
        try:
            task_id = c.push(tasks.touch, (str(tmp_path), "child"))
            code = 0 if task_id > 0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.ping()["status"] == "ok"  # the parent's connection still works
    wait_for(lambda: (tmp_path / "child").exists())
    c.close()


def test_a_malformed_record_is_refused_alone(client):
    good = make_record(tasks.noop)
    long_name = TaskRecord("x" * 300, good.payload)
    with pytest.raises(leek.LeekRejected, match="too long"):
        client.push_records([long_name])
    with pytest.raises(leek.LeekRejected, match="max_retries"):
        client.push_records([TaskRecord("m.f", good.payload, max_retries=5000)])
    assert client.push_records([good])[0] > 0
