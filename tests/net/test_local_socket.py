"""Clients on leekd's host move from TCP to its local socket (an abstract Unix-domain one)."""

from __future__ import annotations

import socket

import pytest

import leek
from bench import procs

from .. import tasks
from ..helpers import SECRET, wait_for


def finished(task_id: int) -> bool:
    from leekd.models import QueuedTask

    state = QueuedTask.objects.filter(pk=task_id).values_list("state", flat=True).first()
    return state in ("succeeded", "failed")


def listening(name: str) -> bool:
    """Some process listens on the abstract Unix-domain socket ``name``."""
    return procs.listening_unix("@" + name)


def peers(server) -> list[str]:
    return sorted(c.peer for c in tuple(server.net.shared.live))  # one C call: no race


def test_a_client_on_leekds_host_moves_to_its_local_socket(server):
    name = server.listener.local_name
    assert name and name.startswith("leek-") and listening(name)
    with leek.Client(port=server.port, secret=SECRET) as c:
        task_id = c.push(tasks.add, (2, 3))
        assert c._sock.family == socket.AF_UNIX
        assert c._sock.getpeername() == b"\0" + name.encode()
        wait_for(lambda: finished(task_id), what="the task pushed on the local socket")
        # The TCP connection it came in on is closed: leekd serves it on the local one alone.
        wait_for(lambda: peers(server) == ["unix"], what="one connection, on the local socket")
        assert c.result(task_id, timeout=10) == 5


def test_the_local_socket_goes_with_leekd(server):
    name = server.listener.local_name
    assert listening(name)
    server.request_stop()  # as SIGTERM does
    wait_for(server.stopped.is_set, timeout=30, what="leekd to stop")
    assert not listening(name)


def test_without_the_local_socket_clients_stay_on_tcp(make_server):
    server = make_server(local_socket=False)
    assert server.listener.local_name is None
    with leek.Client(port=server.port, secret=SECRET) as c:
        task_id = c.push(tasks.add, (1, 1))
        assert c._sock.family == socket.AF_INET
        assert "local" not in c.server_info
        wait_for(lambda: finished(task_id))


def test_a_client_that_cannot_reach_the_local_socket_stays_on_tcp(server):
    # As from another host or network namespace: the name in the welcome leads nowhere
    # (here, because leekd's loop stops listening on it).
    local = next(s for s in server.listener.server.socks if s.family == socket.AF_UNIX)

    def unlisten() -> None:
        server._loop.remove_reader(local.fileno())
        local.close()

    server._loop.call_soon_threadsafe(unlisten)
    name = server.listener.local_name
    wait_for(lambda: not listening(name))
    with leek.Client(port=server.port, secret=SECRET, timeout=5) as c:
        task_id = c.push(tasks.add, (4, 4))
        assert c._sock.family == socket.AF_INET
        assert c._remote == name
        wait_for(lambda: finished(task_id))
        # Not tried again on a reconnect: a listener now under that name sees no connect.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as trap:
            trap.bind("\0" + name)
            trap.listen(1)
            trap.setblocking(False)
            c.close()
            assert c.push(tasks.add, (5, 5)) > task_id
            assert c._sock.family == socket.AF_INET
            with pytest.raises(BlockingIOError):
                trap.accept()


def test_leekd_as_a_process_moves_its_local_clients_unless_told_not_to(leekd_proc, tmp_path):
    p = leekd_proc("--workers", "1")
    assert "clients on this host move to a local socket" in p.output()
    with leek.Client(port=p.port, secret=SECRET) as c:
        assert c.push(tasks.noop) > 0
        assert c._sock.family == socket.AF_UNIX
    assert p.stop() == 0
    p = leekd_proc("--workers", "1", "--no-local-socket", db=tmp_path / "tcp.sqlite3")
    assert "local socket" not in p.output()
    with leek.Client(port=p.port, secret=SECRET) as c:
        assert c.push(tasks.noop) > 0
        assert c._sock.family == socket.AF_INET and "local" not in c.server_info
    assert p.stop() == 0
