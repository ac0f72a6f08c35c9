"""A file-descriptor flood under the open-file limit a systemd service gets (1,024)."""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import leek

from .. import tasks
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for

LIMIT = 1024


@pytest.fixture
def room() -> Iterator[None]:
    """This test process needs more descriptors than the leekd it floods."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * LIMIT
    if hard != resource.RLIM_INFINITY and hard < need:
        if os.geteuid() != 0:  # only root may raise its hard limit
            reason = f"the hard open-file limit here ({hard}) is too low to flood from"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start(tmp_path: Path, *args: str) -> LeekdProcess:
    limits = {resource.RLIMIT_NOFILE: (LIMIT, LIMIT)}
    p = LeekdProcess(tmp_path / "leek.sqlite3", *args, env=subprocess_env(), limits=limits)
    return p.start()


def flood(port: int, n: int) -> list[socket.socket]:
    """``n`` idle connections from a peer without the secret."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def fresh_ping(port: int) -> str:
    with leek.Client(port=port, secret=SECRET, timeout=5) as c:
        return str(c.ping()["status"])


def server_lines(text: str) -> str:
    """The log without the per-task lines (those grow with the pushes, as they should)."""
    return "".join(line for line in text.splitlines(True) if "leekd.worker" not in line)


def test_idle_connections_over_the_fd_limit_do_not_take_leekd_down(tmp_path, room):
    # Given leekd under a 1,024 open-file limit with the default max_connections (1,024),
    p = start(tmp_path)
    try:
        # it says at start that it serves fewer connections than asked, and why;
        assert "serving at most" in p.output() and "open-file limit is 1024" in p.output()
        with leek.Client(port=p.port, secret=SECRET) as c:
            c.push(tasks.noop)
            before = len(server_lines(p.output()))
            # when a peer without the secret opens 1,100 idle connections,
            socks = flood(p.port, 1100)
            try:
                # then the connected client keeps pushing in milliseconds,
                latencies = []
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    c.push(tasks.noop)
                    latencies.append(time.perf_counter() - t0)
                latencies.sort()
                p50 = latencies[len(latencies) // 2]
                p99 = latencies[int(len(latencies) * 0.99)]
                assert p50 < 0.005 and p99 < 0.1, (
                    f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.1f} ms"
                )
                # a new client is told to try later rather than left hanging,
                with pytest.raises(leek.LeekUnavailable, match="try later"):
                    fresh_ping(p.port)
            finally:
                for s in socks:
                    s.close()
            # and the log grew by lines, not megabytes.
            grown = len(server_lines(p.output())) - before
            print(
                f"\nflood of 1,100: {len(latencies)} pushes, p50 {p50 * 1000:.2f} ms, "
                f"p99 {p99 * 1000:.2f} ms, max {latencies[-1] * 1000:.1f} ms; log +{grown} bytes"
            )
            assert grown < 20_000, f"log grew by {grown} bytes"
            assert "Traceback" not in p.output()
            wait_for(lambda: fresh_ping(p.port) == "ok", what="a new client served again")
    finally:
        p.kill()


def test_out_of_descriptors_pauses_accepting_with_one_line(tmp_path, room):
    p = start(tmp_path)
    try:
        with leek.Client(port=p.port, secret=SECRET) as c:
            # Given a task that takes every free descriptor for 2 s,
            c.push(tasks.hold_files, (4 * LIMIT, 2.0))
            # (no status reads meanwhile: they need a descriptor for the database too)
            assert p.proc is not None
            fds = Path(f"/proc/{p.proc.pid}/fd")
            wait_for(lambda: len(list(fds.iterdir())) >= LIMIT - 1, what="descriptors taken")
            # when peers keep connecting meanwhile,
            socks = flood(p.port, 50)
            try:
                wait_for(lambda: "cannot accept connections" in p.output(), timeout=5)
                # then the connected client is still served,
                assert c.ping()["status"] == "ok"
                wait_for(lambda: c.handled() == 1, timeout=10, what="the task to let go")
            finally:
                for s in socks:
                    s.close()
            # accepting resumed once descriptors were free again, and it was said once.
            with leek.Client(port=p.port, secret=SECRET) as again:
                assert again.ping()["status"] == "ok"
            assert p.output().count("cannot accept connections") == 1
            assert "Traceback" not in p.output()
    finally:
        p.kill()
