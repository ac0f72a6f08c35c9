"""Hostile input against a live ``leekd run`` subprocess, on a real socket.

Random bytes, a 4 GiB length prefix, forged and replayed frames carrying a pickle that
would create a file if it were ever loaded, thousands of idle connections. After each
attack leekd must still answer ``ping`` and run a normal push. The soak variants
(``--run-slow``) do the same at a larger scale; counts are printed at the end.
"""

from __future__ import annotations

import os
import pickle
import random
import resource
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import leek
from leek.frames import encode_tasks, frame_tag
from leek.protocol import (
    TAG_SIZE,
    Connection,
    ErrorCode,
    FrameType,
    Push,
    Request,
    TaskRecord,
)

from ..conftest import rows
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for
from ..rawpeer import Evil, RawPeer, assert_serves, error_code, frame, report_line

IDLE = 2_000
IDLE_SOAK = 10_000
RANDOM_CASES = 400
RANDOM_SOAK = 20_000
COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fd_limit(request: pytest.FixtureRequest) -> Iterator[int]:
    """Raise this process's open-file limit (leekd inherits it) to fit the idle connections."""
    want = (IDLE_SOAK if request.config.getoption("--run-slow") else IDLE) + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(hard, max(soft, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, new), hard))
    yield max(soft, new)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fd_limit: int) -> Iterator[LeekdProcess]:
    db = tmp_path_factory.mktemp("live") / "leek.sqlite3"
    proc = LeekdProcess(
        db,
        "--workers",
        "2",
        "--max-connections",
        str(fd_limit),
        "--handshake-timeout",
        "60",
        env=subprocess_env(),
    ).start()
    yield proc
    try:
        assert proc.stop() == 0, proc.output()[-2000:]
    finally:
        proc.kill()


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if COUNTS:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
        report_line(request.config, f"\nlive fuzz cases: {sum(COUNTS.values())} ({counts})")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def connections(port: int) -> int:
    with leek.Client(port=port, secret=SECRET) as c:
        return int(c.stats()["connections"]) - 1  # not counting this one


# --------------------------------------------------------------- random bytes


def random_input(rng: random.Random) -> bytes:
    """Random bytes, often shaped like a frame (plausible length, random type and tag)."""
    body = rng.randbytes(rng.randint(0, 2048))
    shape = rng.random()
    if shape < 0.3:
        return body or b"\0"
    if shape < 0.7:
        ftype = rng.choice([*FrameType, 0, 255])
        return frame(ftype, body, rng.randbytes(TAG_SIZE)) + rng.randbytes(rng.randint(0, 64))
    length = rng.choice([0, 1, 32, 33, 1 << 16, (1 << 16) + 1, 1 << 24, 2**32 - 1])
    return struct.pack("!I", length) + body


def send_random(port: int, rng: random.Random) -> None:
    with RawPeer(port) as peer:
        if rng.random() < 0.5:
            peer.handshake()  # garbage from an authenticated peer
            COUNTS["random-bytes:after-handshake"] += 1
        else:
            COUNTS["random-bytes:before-handshake"] += 1
        try:
            data = random_input(rng)
            step = rng.choice([1, 7, 512, len(data) or 1])
            for start in range(0, len(data), step):
                peer.send(data[start : start + step])
            peer.sock.shutdown(socket.SHUT_WR)  # then end of stream: leekd must hang up
        except OSError:
            return  # it already did
        peer.read_until_closed(timeout=10)


def test_random_bytes(live, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        send_random(live.port, rng)
    assert_serves(tmp_path, port=live.port)
    assert connections(live.port) == 0, f"seed {seed}"


@pytest.mark.slow
def test_soak_random_bytes(live, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    for i in range(RANDOM_SOAK):
        send_random(live.port, rng)
        if i % 2000 == 1999:
            assert_serves(tmp_path, port=live.port)
    assert_serves(tmp_path, port=live.port)


# ------------------------------------------------------------ 4 GiB length


@pytest.mark.parametrize("after_handshake", [False, True], ids=["before", "after-handshake"])
def test_a_4_gib_length_prefix_is_refused_at_once(live, tmp_path, after_handshake):
    before = rss_kib(live.proc.pid)
    with RawPeer(live.port) as peer:
        if after_handshake:
            peer.handshake()
        else:
            peer.recv_frame()
        t0 = time.monotonic()
        peer.send(b"\xff\xff\xff\xff" + os.urandom(1024))
        answer = peer.read_until_closed(timeout=5)
        assert time.monotonic() - t0 < 2
    assert error_code(answer) == ErrorCode.TOO_LARGE
    COUNTS["4GiB-prefix"] += 1
    after = rss_kib(live.proc.pid)
    if before is not None and after is not None:
        assert after - before < 64 * 1024, f"leekd grew by {after - before} KiB"
    assert_serves(tmp_path, port=live.port)


# -------------------------------------------------- a pickle that must never load


def test_forged_push_with_a_file_creating_pickle_is_never_loaded(live, tmp_path):
    marker = tmp_path / "pwned"
    body = encode_tasks([TaskRecord("builtins.open", pickle.dumps(Evil(marker)))])
    secret = SECRET.encode()
    # A push that was valid on its own connection, captured and replayed on another.
    with RawPeer(live.port) as victim:
        conn = victim.handshake()
        conn.send(Request("ping"))  # the capture comes from the middle of a session
        captured = conn.send(Push((TaskRecord("builtins.open", pickle.dumps(Evil(marker))),)))

    def attack(what: str, setup: str, data_for: object) -> None:
        with RawPeer(live.port) as peer:
            conn: Connection | None = None
            if setup == "handshake":
                conn = peer.handshake()
            else:
                peer.recv_frame()
            data = data_for(conn) if callable(data_for) else data_for
            try:
                peer.send(data)
            except OSError:
                pass
            answer = peer.read_until_closed(timeout=5)
            assert FrameType.PUSHED not in answer[4:5], what
            COUNTS["forged-push"] += 1

    def seq_tag(conn: Connection, offset: int) -> bytes:
        assert conn._key is not None
        return frame_tag(conn._key, b"C", conn._send_seq + offset, FrameType.PUSH, body)

    attack("push instead of a hello", "hello", frame(FrameType.PUSH, body))
    attack(
        "push tagged with the bare secret",
        "hello",
        frame(FrameType.PUSH, body, frame_tag(secret, b"C", 0, FrameType.PUSH, body)),
    )
    attack(
        "forged hello, then push",
        "hello",
        frame(FrameType.CLIENT_HELLO, os.urandom(16) + b"{}") + frame(FrameType.PUSH, body),
    )
    attack("random tag after a real handshake", "handshake", frame(FrameType.PUSH, body))
    attack(
        "tag for the wrong sequence number",
        "handshake",
        lambda conn: frame(FrameType.PUSH, body, seq_tag(conn, 1)),
    )
    attack("push replayed from another connection", "handshake", captured)
    # Given a normal push afterwards has run (the queue is first in, first out),
    assert_serves(tmp_path, port=live.port)
    time.sleep(0.2)
    # then nothing was unpickled and nothing was even recorded.
    assert not marker.exists()
    assert rows(
        live.db, "SELECT count(*) FROM leekd_queuedtask WHERE name = ?", "builtins.open"
    ) == [(0,)]
    # The same payload, pushed by a peer that holds the secret, is loaded: the marker works.
    control = tmp_path / "control"
    with RawPeer(live.port) as peer:
        conn = peer.handshake()
        peer.send(conn.send(Push((TaskRecord("builtins.open", pickle.dumps(Evil(control))),))))
        conn.receive_data(peer.recv_frame())
    wait_for(control.exists, timeout=15, what="the control pickle to be loaded")


# ----------------------------------------------------- many idle connections


def hold_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that leekd has accepted and greeted, and that then say nothing."""
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            batch = [
                socket.create_connection(("127.0.0.1", port), timeout=10)
                for _ in range(min(200, count - len(held)))
            ]
            held.extend(batch)
            for s in batch:
                assert s.recv(4096), "leekd closed an idle connection early"
    except BaseException:
        for s in held:
            s.close()
        raise
    return held


def idle_round(
    live: LeekdProcess, tmp_path: Path, want: int, fd_limit: int, config: pytest.Config
) -> None:
    count = min(want, fd_limit - 256)
    before = rss_kib(live.proc.pid)
    held = hold_idle(live.port, count)
    try:
        assert connections(live.port) >= count
        assert_serves(tmp_path, port=live.port)
        after = rss_kib(live.proc.pid)
        growth = f", leekd RSS +{(after - before) // 1024} MiB" if before and after else ""
        COUNTS["idle-connections"] += count
        report_line(config, f"\nheld {count} idle connections (fd limit {fd_limit}){growth}")
    finally:
        for s in held:
            s.close()
    wait_for(lambda: connections(live.port) == 0, timeout=30, what="idle connections to go")
    assert_serves(tmp_path, port=live.port)


def test_thousands_of_idle_connections(live, tmp_path, fd_limit, request):
    idle_round(live, tmp_path, IDLE, fd_limit, request.config)


@pytest.mark.slow
def test_soak_idle_connections(live, tmp_path, fd_limit, request):
    idle_round(live, tmp_path, IDLE_SOAK, fd_limit, request.config)
