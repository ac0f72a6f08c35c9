"""``leekd start|stop|status|restart`` and ``manage.py leekd`` as real commands and daemons."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import leek
from leek.errors import LeekConfigError
from leekd.cli.pidfile import probe

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, subprocess_env, wait_for


class Service:
    """Runs ``leekd`` service commands in one directory; kills a daemon left behind."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pidfile = directory / "leekd.pid"
        self.logfile = directory / "leekd.log"
        self.db = directory / "leek.sqlite3"

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "leekd", *args],
            cwd=self.dir,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> tuple[int, int]:
        """Start on a free port; returns (pid, port)."""
        out = self("start", "--port", "0", "--workers", "2", *args)
        assert out.returncode == 0, out.stderr
        m = re.search(r"leekd started: pid (\d+), listening on 127\.0\.0\.1:(\d+)", out.stdout)
        assert m, out.stdout
        return int(m.group(1)), int(m.group(2))

    def cleanup(self) -> None:
        try:
            info = probe(self.pidfile)
        except LeekConfigError:  # not a pidfile: no daemon of ours behind it
            return
        if info is not None and info.running and info.pid:
            os.kill(info.pid, signal.SIGKILL)
            wait_for(lambda: not alive(info.pid), timeout=10, what="the daemon to die")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z")


def dead_pid() -> int:
    """The pid of a process that has exited (a stale pidfile's typical content)."""
    p = subprocess.Popen(["true"])
    p.wait(10)
    return p.pid


@pytest.fixture
def leekd(tmp_path: Path):
    service = Service(tmp_path)
    yield service
    service.cleanup()


def test_start_status_push_stop(leekd, tmp_path):
    # Given a daemon started in the background,
    pid, port = leekd.start()
    assert alive(pid)
    assert leekd.pidfile.read_text() == f"{pid}\n127.0.0.1:{port}\n"
    # status reports its pid, address and ping,
    out = leekd("status")
    assert out.returncode == 0, out
    assert f"leekd is running: pid {pid}, listening on 127.0.0.1:{port}" in out.stdout
    assert "ping: ok, 2 workers" in out.stdout
    # it runs what is pushed, and logs the task to its log file,
    with leek.Client(port=port, secret=SECRET) as c:
        task_id = c.push(tasks.touch, (str(tmp_path), "ran"))
        wait_for(lambda: c.status(task_id)["state"] == "succeeded")
    assert (tmp_path / "ran").exists()
    wait_for(lambda: f"task {task_id} tests.tasks.touch succeeded" in leekd.logfile.read_text())
    # and stop ends it cleanly: process gone, pidfile removed.
    out = leekd("stop")
    assert out.returncode == 0, out
    assert f"leekd stopped (pid {pid}" in out.stdout
    assert not alive(pid)
    assert not leekd.pidfile.exists()
    assert "leekd stopped: 1 handled (1 succeeded, 0 failed)" in leekd.logfile.read_text()
    out = leekd("status")
    assert out.returncode == 3
    assert "leekd is not running (no pidfile" in out.stdout


def test_second_start_is_refused_and_the_first_keeps_running(leekd):
    pid, port = leekd.start()
    out = leekd("start", "--port", "0")
    assert out.returncode == 4
    assert f"already running (pid {pid}, listening on 127.0.0.1:{port}" in out.stderr
    assert leekd("status").returncode == 0
    assert leekd.pidfile.read_text().startswith(f"{pid}\n")


@pytest.mark.parametrize("owner", ["dead", "reused"])
def test_stale_pidfile_is_detected_and_replaced(leekd, owner):
    # A pid that is gone, or one that now belongs to another process (this test's):
    # neither holds the lock, so neither is a running leekd.
    stale = dead_pid() if owner == "dead" else os.getpid()
    leekd.pidfile.write_text(f"{stale}\n")
    reason = "is gone" if owner == "dead" else "now belongs to another process"
    out = leekd("status")
    assert out.returncode == 3
    assert f"stale pidfile {leekd.pidfile}: pid {stale} {reason}" in out.stdout
    out = leekd("start", "--port", "0")
    assert out.returncode == 0, out.stderr
    assert f"replacing stale pidfile {leekd.pidfile} (pid {stale} {reason})" in out.stderr
    pid = int(leekd.pidfile.read_text().split()[0])
    assert pid != stale and alive(pid)
    assert leekd("stop").returncode == 0


def test_a_file_that_is_no_pidfile_is_refused_and_kept(leekd):
    leekd.pidfile.write_text("important notes\n")
    for command in ("start", "status", "stop"):
        out = leekd(command)
        assert out.returncode == 78, (command, out)
        assert "is not a leekd pidfile (it holds 'important notes'" in out.stderr
    assert leekd.pidfile.read_text() == "important notes\n"


def test_stop_when_not_running(leekd):
    out = leekd("stop")
    assert out.returncode == 3
    assert f"leekd is not running (no pidfile {leekd.pidfile})" in out.stderr
    # A stale pidfile is reported, and cleaned up.
    stale = dead_pid()
    leekd.pidfile.write_text(f"{stale}\n")
    out = leekd("stop")
    assert out.returncode == 3
    assert f"stale pidfile {leekd.pidfile}: pid {stale} is gone" in out.stderr
    assert not leekd.pidfile.exists()


def test_status_when_not_running(leekd):
    out = leekd("status", "--pidfile", "elsewhere.pid")
    assert out.returncode == 3
    assert f"leekd is not running (no pidfile {leekd.dir / 'elsewhere.pid'})" in out.stdout


def test_start_on_a_taken_port_fails_with_the_daemons_error(leekd):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = leekd("start", "--port", str(port))
    assert out.returncode == 69
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "address already in use" in out.stderr.lower()
    assert not leekd.pidfile.exists()
    assert f"cannot listen on 127.0.0.1:{port}" in leekd.logfile.read_text()


def test_start_with_bad_settings_fails_with_a_configuration_error(leekd):
    out = leekd("start", "--port", "0", "--settings", "no_such_project.settings")
    assert out.returncode == 78
    assert "cannot import the Django settings 'no_such_project.settings'" in out.stderr
    assert leekd("status").returncode == 3


def test_stop_that_times_out_then_a_second_stop_forces(leekd, tmp_path):
    # Given a daemon busy with a long task and a long grace period,
    pid, port = leekd.start("--grace", "60")
    with leek.Client(port=port, secret=SECRET) as c:
        task_id = c.push(tasks.sleep, (60,))
        wait_for(lambda: c.status(task_id)["state"] == "running")
    # stop gives up waiting after --timeout with its own exit status,
    out = leekd("stop", "--timeout", "0.5")
    assert out.returncode == 5
    assert f"pid {pid} did not stop within 0.5s" in out.stderr
    assert alive(pid)
    # and a second stop (a second SIGTERM) ends it; the task stays queued.
    t0 = time.monotonic()
    out = leekd("stop", "--timeout", "20")
    assert out.returncode == 0, out
    assert time.monotonic() - t0 < 15
    assert rows(leekd.db, "SELECT state FROM leekd_queuedtask WHERE id = ?", task_id) == [
        ("queued",)
    ]


def test_restart_replaces_the_daemon_and_log_level_applies(leekd):
    first, _ = leekd.start()
    out = leekd("restart", "--port", "0", "--log-level", "warning")
    assert out.returncode == 0, out.stderr
    second = int(re.search(r"leekd started: pid (\d+)", out.stdout).group(1))
    assert second != first and not alive(first)
    assert leekd("status").returncode == 0
    log = leekd.logfile.read_text()
    assert log.count("listening on") == 1, "the second daemon logs warnings only"
    assert leekd("stop").returncode == 0


def test_help_shows_defaults(leekd):
    out = leekd("start", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "default ./leekd.pid" in text and "default ./leekd.log" in text
    assert "3 not running (stop, status) 4 already running (start)" in text


def test_manage_py_leekd_uses_the_project_settings(tmp_path):
    # Given a Django project with leekd installed and migrated, and no LEEK_SECRET:
    # the secret derives from SECRET_KEY in the daemon and in `status` alike.
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "__init__.py").write_text("")
    (tmp_path / "mysite" / "settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "project-secret-key-for-the-service-test"
            INSTALLED_APPS = ["leekd"]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
            USE_TZ = True
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            """
        )
    )
    (tmp_path / "manage.py").write_text(
        textwrap.dedent(
            """
            import os, sys
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
            from django.core.management import execute_from_command_line
            execute_from_command_line(sys.argv)
            """
        )
    )
    env = subprocess_env(LEEK_SECRET="", XDG_CONFIG_HOME=str(tmp_path / "no-key-here"))

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = manage("leekd", "start", "--port", "0")
    assert out.returncode == 78 and "python manage.py migrate leekd" in out.stderr
    assert manage("migrate", "-v0").returncode == 0
    service = Service(tmp_path)
    try:
        out = manage("leekd", "start", "--port", "0")
        assert out.returncode == 0, out.stderr
        assert "(project); secret from SECRET_KEY" in service.logfile.read_text()
        out = manage("leekd", "status")
        assert out.returncode == 0, out
        assert "ping: ok" in out.stdout
        out = manage("leekd", "stop")
        assert out.returncode == 0, out
        assert manage("leekd", "status").returncode == 3
    finally:
        service.cleanup()
