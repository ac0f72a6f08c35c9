"""The client's socket keeps to its deadline, whichever way its timeouts are kept."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from leek.transport import Wire


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    return a, b


@pytest.fixture(params=["unix", "tcp"])
def pair(request):
    a, b = socket.socketpair() if request.param == "unix" else tcp_pair()
    yield a, b
    a.close()
    b.close()


def test_a_plain_socket_on_linux_uses_the_kernels_timeouts(pair):
    wire = Wire(pair[0])
    assert wire.kernel_timeouts is (sys.platform == "linux")
    if wire.kernel_timeouts:
        assert pair[0].gettimeout() is None  # blocking: no poll before each send and recv
        # A Unix-domain socket waits for its answers in poll; TCP in recv.
        assert (wire.poller is not None) is (pair[0].family == socket.AF_UNIX)


def test_a_receive_with_nothing_coming_ends_at_its_deadline(pair):
    wire = Wire(pair[0])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        wire.recv(t0 + 0.2)
    assert 0.19 <= time.monotonic() - t0 < 1.0


def test_a_later_deadline_is_kept_after_a_shorter_one(pair):
    # The kernel's timeout, set for 0.1 s, must not end a wait that may last 0.6 s.
    wire = Wire(pair[0])
    with pytest.raises(TimeoutError):
        wire.recv(time.monotonic() + 0.1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        wire.recv(t0 + 0.6)
    assert 0.59 <= time.monotonic() - t0 < 1.5
    # and bytes that come before the deadline are read, the wait then ends at once.
    timer = threading.Timer(0.3, pair[1].sendall, (b"answer",))
    timer.start()
    t0 = time.monotonic()
    assert wire.recv(t0 + 5.0) == b"answer"
    assert time.monotonic() - t0 < 3.0
    timer.join()


def test_a_send_nobody_reads_ends_at_its_deadline(pair):
    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    wire = Wire(pair[0])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        wire.sendall(b"x" * (8 << 20), t0 + 0.3)  # far more than both buffers hold
    assert 0.29 <= time.monotonic() - t0 < 1.5


def test_a_send_read_slowly_still_ends_at_its_deadline(pair):
    # Each send makes some progress, so no single one times out: the deadline still holds.
    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.02):
            pair[1].recv(4096)

    reader = threading.Thread(target=trickle)
    reader.start()
    wire = Wire(pair[0])
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            wire.sendall(b"x" * (64 << 20), t0 + 0.5)
        assert 0.49 <= time.monotonic() - t0 < 2.0
    finally:
        stop.set()
        reader.join()


def test_an_end_of_stream_reads_as_empty(pair):
    wire = Wire(pair[0])
    pair[1].shutdown(socket.SHUT_WR)
    assert wire.recv(time.monotonic() + 5.0) == b""


def switches() -> int:
    with open("/proc/thread-self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt"))


_ECHO = """
import socket, sys, time
peer = socket.socket(fileno=int(sys.argv[1]))
while data := peer.recv(64):
    time.sleep(0.002)
    peer.sendall(data)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="counts the thread's switches in /proc")
def test_a_round_trip_on_a_unix_socket_sleeps_once():
    # The peer (another process: no GIL shared) reads the request, sleeps a moment, answers:
    # a client blocked in recv would be woken when the request is read (its send space
    # freed) and again by the answer.
    a, b = socket.socketpair()
    peer = subprocess.Popen([sys.executable, "-c", _ECHO, str(b.fileno())], pass_fds=[b.fileno()])
    b.close()
    try:
        wire = Wire(a)
        wire.sendall(b"ping", time.monotonic() + 5.0)
        assert wire.recv(time.monotonic() + 30.0) == b"ping"  # once the peer has started
        rounds = 50
        before = switches()
        for _ in range(rounds):
            wire.sendall(b"ping", time.monotonic() + 5.0)
            assert wire.recv(time.monotonic() + 5.0) == b"ping"
        assert switches() - before < rounds * 1.5
    finally:
        a.close()
        peer.wait(timeout=30)
