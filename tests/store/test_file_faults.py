"""Faults of the database file itself: deleted, replaced, read-only, a full disk, a long log.

Each runs a real ``leekd run`` on a real SQLite file and does to the file what an unlucky
operator (or a full disk) would.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for


def shell_ping(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leekd.cli.shell", "--port", str(port), "ping"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=30,
    )


def remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def push_until_refused(c: leek.Client, seconds: float) -> tuple[list[float], list[float]]:
    """Push for ``seconds``: the monotonic times of the answered pushes, and of the refused."""
    answered: list[float] = []
    refused: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            c.push(tasks.noop)
            answered.append(time.monotonic())
        except leek.LeekUnavailable:
            refused.append(time.monotonic())
    return answered, refused


def test_a_deleted_database_refuses_pushes_and_says_so(leekd_proc):
    p = leekd_proc()
    with leek.Client(port=p.port, secret=SECRET) as c:
        c.push(tasks.noop)
        # Given a running leekd whose database file is deleted under it (rm db.sqlite3*),
        remove_database(p.db)
        gone = time.monotonic()
        # when clients keep pushing,
        answered, refused = push_until_refused(c, 1.5)
        # then within a fraction of a second every push is refused, none answered after,
        assert refused, "pushes into a deleted file were answered"
        assert not answered or answered[-1] < refused[0]
        assert refused[0] - gone < 0.5, f"noticed after {refused[0] - gone:.2f}s"
        with pytest.raises(leek.LeekUnavailable, match="not recorded.*deleted"):
            c.push(tasks.noop)
        # and ping, leek-shell ping and the log say why.
        info = c.ping()
        assert info["status"] == "unavailable" and "was deleted" in info["database"]
    out = shell_ping(p.port)
    assert out.returncode == 1 and "was deleted" in out.stdout, out
    assert "was deleted while leekd ran: refusing every push" in p.output()


def test_a_replaced_database_is_noticed_too(leekd_proc, tmp_path):
    p = leekd_proc()
    other = tmp_path / "other.sqlite3"
    other.write_bytes(p.db.read_bytes())
    with leek.Client(port=p.port, secret=SECRET) as c:
        c.push(tasks.noop)
        os.replace(other, p.db)  # e.g. a backup restored over the live file
        wait_for(lambda: c.ping()["status"] == "unavailable", timeout=2)
        assert "was replaced" in c.ping()["database"]
        with pytest.raises(leek.LeekUnavailable, match="replaced"):
            c.push(tasks.noop)


def project_settings(tmp_path: Path, name: str) -> str:
    """A settings module in ``tmp_path`` whose database is ``name``; returns its module name."""
    (tmp_path / "faultsettings.py").write_text(
        "SECRET_KEY = 'x'\nUSE_TZ = True\nINSTALLED_APPS = ['leekd']\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': {name!r}}}}}\n"
    )
    return "faultsettings"


def test_a_read_only_database_is_reported_at_start_and_by_ping(tmp_path):
    db = tmp_path / "leek.sqlite3"
    first = LeekdProcess(db, env=subprocess_env()).start()  # creates the tables
    assert first.stop() == 0
    # Given leekd started on a database it can read but not write,
    module = project_settings(tmp_path, f"file:{db}?mode=ro")
    p = LeekdProcess(db, "--settings", module, env=subprocess_env())
    try:
        p.start()
        # then its start-up says so instead of a plain "listening",
        assert "the database does not take writes" in p.output()
        assert "refusing pushes" in p.output()
        with leek.Client(port=p.port, secret=SECRET) as c:
            # ping says it cannot record pushes, and why,
            info = c.ping()
            assert info["status"] == "unavailable" and "readonly" in info["database"]
            # pushes are refused,
            with pytest.raises(leek.LeekUnavailable, match="readonly"):
                c.push(tasks.noop)
        # and leek-shell ping exits non-zero.
        out = shell_ping(p.port)
        assert out.returncode == 1 and out.stdout.startswith("unavailable:"), out
    finally:
        p.kill()


def test_a_full_disk_at_start_names_the_cause_not_missing_tables(tmp_path):
    db = tmp_path / "leek.sqlite3"
    first = LeekdProcess(db, env=subprocess_env()).start()
    assert first.stop() == 0
    # Given a database with its tables, and a disk with no room for SQLite's shared memory
    # file (RLIMIT_FSIZE: every write past 20,000 bytes fails),
    limit = 20_000

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = subprocess.run(
        [sys.executable, "-m", "leekd", "run", "--port", "0", "--db", str(db)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        preexec_fn=full_disk,
        timeout=60,
    )
    # then leekd does not start, and says what failed.
    assert out.returncode == 78
    assert "could not create leekd's tables" not in out.stderr
    assert "cannot open leekd's database" in out.stderr and "disk I/O error" in out.stderr


def test_uptime_comes_from_the_monotonic_clock(make_server):
    before = time.monotonic()
    app = make_server()
    with leek.Client(port=app.port, secret=SECRET) as c:
        uptime = c.ping()["uptime"]
    # A wall-clock start would put "started" decades away from the monotonic clock.
    assert before <= app.started <= time.monotonic()
    assert 0 <= uptime <= time.monotonic() - before + 0.01


def wal_sizes(db: Path, stop: threading.Event, into: list[int]) -> None:
    wal = Path(f"{db}-wal")
    while not stop.wait(0.02):
        try:
            into.append(wal.stat().st_size)
        except FileNotFoundError:
            into.append(0)


def push_for(port: int, seconds: float) -> int:
    n = 0
    deadline = time.monotonic() + seconds
    with leek.Client(port=port, secret=SECRET) as c:
        while time.monotonic() < deadline:
            c.push(tasks.noop)
            n += 1
    return n


def test_the_wal_stays_near_its_limit_under_steady_pushes(leekd_proc):
    # Given leekd with a 1 MiB log limit (default 64 MiB),
    limit = 1024 * 1024
    p = leekd_proc(LEEK_WAL_LIMIT=str(limit))
    sizes: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=wal_sizes, args=(p.db, stop, sizes))
    watcher.start()
    try:
        # when one client pushes without a pause for 4 s (about 40 MiB of log unchecked),
        pushed = push_for(p.port, 4.0)
    finally:
        stop.set()
        watcher.join()
    # then the log was truncated again and again (unchecked it only grows, about 20 KiB a
    # push), and never grew far past its limit: a tick of 0.1 s is several MiB of log at this
    # rate, more on a loaded machine.
    truncated = sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b < a)
    assert pushed > 2000
    assert truncated >= 3, f"WAL truncated {truncated} times in {pushed} pushes"
    assert max(sizes) < 32 * limit, f"WAL reached {max(sizes)} bytes after {pushed} pushes"
    assert rows(p.db, "SELECT count(*) FROM leekd_queuedtask")[0][0] == pushed


PUSHER = """
import sys, time, leek, tests.tasks as t
c = leek.Client(port=int(sys.argv[1]))
end = time.monotonic() + float(sys.argv[2]); n = 0; worst = 0.0; lat = []
while time.monotonic() < end:
    t0 = time.perf_counter(); c.push(t.noop); d = time.perf_counter() - t0
    lat.append(d); n += 1
lat.sort()
print(n, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000, lat[-1] * 1000)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wal_stays_bounded_under_90s_of_four_clients(leekd_proc):
    p = leekd_proc()  # the default limit, 64 MiB
    sizes: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=wal_sizes, args=(p.db, stop, sizes))
    watcher.start()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PUSHER, str(p.port), "90"],
                stdout=subprocess.PIPE,
                text=True,
                env=subprocess_env(),
            )
            for _ in range(4)
        ]
        results = [proc.communicate(timeout=150)[0].split() for proc in procs]
    finally:
        stop.set()
        watcher.join()
    total = sum(int(r[0]) for r in results)
    final = Path(f"{p.db}-wal").stat().st_size
    print(
        f"\n{total} pushes by 4 clients in 90 s; WAL max {max(sizes) / 2**20:.1f} MiB, "
        f"at the end {final / 2**20:.1f} MiB; per client p50/p99/max ms: "
        + "; ".join(f"{float(r[1]):.2f}/{float(r[2]):.2f}/{float(r[3]):.1f}" for r in results)
    )
    assert max(sizes) < 2 * 64 * 2**20
    assert rows(p.db, "SELECT count(*) FROM leekd_queuedtask")[0][0] == total
