"""leek-shell against a live and a dead leekd: what it prints and how it exits."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from leekd.cli import shell

from .. import tasks
from ..helpers import ROOT, subprocess_env, wait_for


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def run(capsys):
    """Run leek-shell in this process; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = shell.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def finished(client, task_id: int) -> bool:
    return client.status(task_id)["state"] in ("succeeded", "failed")


def test_ping_waiting_handled(server, client, run):
    code, out, err = run("--port", server.port, "ping")
    assert code == 0 and err == ""
    assert out.startswith("ok: leekd ") and out.count("\n") == 1
    assert f"127.0.0.1:{server.port}" in out and "workers 0/2 busy, 0 waiting" in out

    assert run("--port", server.port, "waiting") == (0, "0\n", "")
    ids = [client.push(tasks.add, (i, i)) for i in range(3)]
    wait_for(lambda: all(finished(client, i) for i in ids))
    code, out, _ = run("--port", server.port, "handled")
    assert code == 0 and out == "3\n"

    code, out, _ = run("--port", server.port, "ping", "--json")
    info = json.loads(out)
    assert code == 0 and info["status"] == "ok" and info["workers"] == 2


def test_stats_table_and_json(server, client, run):
    ids = [client.push(tasks.add, (1, 2)), client.push(tasks.add, (3, 4), queue="mail")]
    ids.append(client.push(tasks.fail, max_retries=1))
    wait_for(lambda: all(finished(client, i) for i in ids))

    code, out, _ = run("--port", server.port, "stats")
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("queue"))
    assert lines[header].split() == [
        "queue",
        "waiting",
        "scheduled",
        "running",
        "succeeded",
        "failed",
        "retried",
    ]
    table = {line.split()[0]: line.split()[1:] for line in lines[header + 1 :]}
    assert table["default"] == ["0", "0", "0", "1", "1", "0"]
    assert table["mail"] == ["0", "0", "0", "1", "0", "0"]
    assert table["(all)"] == ["0", "0", "0", "2", "1", "0"]
    assert "3 handled since start" in out and "on the event loop)" in out

    code, out, _ = run("--port", server.port, "stats", "--json")
    data = json.loads(out)
    assert code == 0 and data["handled"] == 3 and data["queues"]["mail"]["succeeded"] == 1


def test_status_readable_json_and_unknown_id(server, client, run):
    task_id = client.push(tasks.fail, ("kaput",), max_retries=1)
    wait_for(lambda: finished(client, task_id))

    code, out, _ = run("--port", server.port, "status", task_id)
    assert code == 0
    assert out.splitlines()[0] == f"task {task_id}: tests.tasks.fail('kaput')"
    assert "  state     failed" in out and "builtins.ValueError: kaput" in out
    assert "  traceback:" in out and "raise ValueError(message)" in out

    code, out, _ = run("--port", server.port, "status", task_id, "--json")
    assert code == 0 and json.loads(out)["state"] == "failed"

    code, out, err = run("--port", server.port, "status", 10**9)
    assert code == 1 and out == ""
    assert err.startswith("leek-shell: refused (not found): no task with id")


def test_dead_server_exits_1_and_says_unreachable(django_db, run):
    port = free_port()
    for command in ("ping", "waiting", "handled", "stats"):
        code, out, err = run("--port", port, command)
        assert code == 1 and out == ""
        assert err.startswith("leek-shell: unreachable: leekd is not reachable at")


def test_wrong_secret_exits_1_and_says_refused(server, run, monkeypatch):
    monkeypatch.setenv("LEEK_SECRET", "not-the-secret-at-all")
    code, out, err = run("--port", server.port, "ping")
    assert code == 1 and out == ""
    assert err.startswith("leek-shell: refused (authentication):")


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "abc"],
        ["status", "0"],
        ["--port", "70000", "ping"],
        ["purge", "--failed", "--older-than", "7x"],
        ["purge", "--failed"],
        ["bogus"],
    ],
)
def test_bad_usage_exits_2(argv, run):
    with pytest.raises(SystemExit) as exc:
        run(*argv)
    assert exc.value.code == 2


def test_purge_needs_a_state(server, run):
    code, _, err = run("--port", server.port, "purge", "--older-than", "7d")
    assert code == 1 and "--succeeded, --failed and/or --cancelled" in err


def test_console_script_against_a_real_leekd_then_a_dead_one(leekd_proc):
    # Given leekd running as its own process,
    p = leekd_proc("--workers", "1")
    cmd = [sys.executable, "-m", "leekd.cli.shell", "--port", str(p.port)]

    def shell_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cmd, *argv], capture_output=True, text=True, timeout=30, env=p.env, cwd=ROOT
        )

    # leek-shell answers from it,
    done = shell_run("waiting")
    assert (done.returncode, done.stdout) == (0, "0\n")
    done = shell_run("ping")
    assert done.returncode == 0 and done.stdout.startswith("ok: leekd")
    # and once it is stopped, says so with exit status 1.
    assert p.stop() == 0
    done = shell_run("ping")
    assert done.returncode == 1 and "unreachable" in done.stderr


def test_settings_option_takes_the_secret_from_a_django_project(server):
    # Without LEEK_SECRET, --settings makes the client derive the secret from SECRET_KEY (a
    # different secret from this server's, so it is refused, and the message says where from).
    env = subprocess_env()
    del env["LEEK_SECRET"]
    done = subprocess.run(
        [sys.executable, "-m", "leekd.cli.shell", "--settings", "tests.project_settings"]
        + ["--port", str(server.port), "ping"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "refused (authentication)" in done.stderr and "comes from SECRET_KEY" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "leekd.cli.shell", "--settings", "no.such.settings", "ping"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("leek-shell: not configured: cannot load Django settings")


def test_unix_socket_option(make_server, run):
    import shutil
    import tempfile
    from pathlib import Path

    short = Path(tempfile.mkdtemp(prefix="leek-", dir="/tmp"))  # socket paths are short
    try:
        app = make_server(unix=str(short / "leekd.sock"))
        code, out, err = run("--unix", short / "leekd.sock", "ping")
        assert code == 0, err
        assert out.startswith("ok: leekd") and f"unix:{short}" in out
        app.request_stop()
        wait_for(lambda: not (short / "leekd.sock").exists())
        code, out, err = run("--unix", short / "leekd.sock", "waiting")
        assert code == 1 and "unreachable" in err
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_status_shows_scheduled_priority_and_cancelled_and_cancel_cancels(server, client, run):
    task_id = client.push(tasks.noop, delay=3600, priority=7)
    code, out, _ = run("--port", server.port, "status", task_id)
    assert code == 0
    assert "state     scheduled for 20" in out and "priority  7" in out
    code, out, _ = run("--port", server.port, "cancel", task_id)
    assert code == 0 and out == f"task {task_id} cancelled: it will not run\n"
    code, out, _ = run("--port", server.port, "status", task_id)
    assert code == 0 and "state     cancelled" in out
    code, _, err = run("--port", server.port, "cancel", task_id)
    assert code == 1 and f"refused (rejected): task {task_id} was already cancelled" in err
    code, _, err = run("--port", server.port, "cancel", "999999999")
    assert code == 1 and "refused (not found)" in err
