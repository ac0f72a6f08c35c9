"""leekd as a real subprocess: run, crash, recover, stop."""

from __future__ import annotations

import signal
import time

import pytest

import leek

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, wait_for


def states(db, ids):
    marks = ",".join("?" * len(ids))
    return dict(rows(db, f"SELECT id, state FROM leekd_queuedtask WHERE id IN ({marks})", *ids))


def test_run_push_success_and_sigterm_exit_0(leekd_proc, tmp_path):
    p = leekd_proc("--workers", "2")
    with leek.Client(port=p.port, secret=SECRET) as c:
        task_id = c.push(tasks.touch, (str(tmp_path), "ran"))
        wait_for(lambda: states(p.db, [task_id]).get(task_id) == "succeeded")
    assert (tmp_path / "ran").exists()
    assert p.stop() == 0
    out = p.output()
    assert f"task {task_id} tests.tasks.touch succeeded" in out
    assert "leekd stopped: 1 handled (1 succeeded, 0 failed)" in out


def test_kill_9_then_restart_runs_every_answered_task(leekd_proc, tmp_path):
    # Given a server with one worker, busy on a slow task, and 20 answered pushes behind it,
    p = leekd_proc("--workers", "1")
    with leek.Client(port=p.port, secret=SECRET) as c:
        c.push(tasks.sleep, (30,))
        ids = [c.push(tasks.touch, (str(tmp_path), f"t{i}")) for i in range(20)]
    # when it is killed without warning,
    p.kill()
    assert set(states(p.db, ids).values()) == {"queued"}
    # then a restart runs every one of them.
    p2 = leekd_proc("--workers", "4", "--grace", "0")
    wait_for(lambda: set(states(p.db, ids).values()) == {"succeeded"}, timeout=30)
    for i in range(20):
        assert (tmp_path / f"t{i}").read_text().count("\n") == 1
    assert "recovered 21 unfinished tasks" in p2.output()
    p2.kill()


def test_sigterm_lets_the_running_task_finish_and_keeps_the_rest_queued(leekd_proc, tmp_path):
    p = leekd_proc("--workers", "1", "--grace", "20")
    with leek.Client(port=p.port, secret=SECRET) as c:
        first = c.push(tasks.touch, (str(tmp_path), "slow", 1.0))
        rest = [c.push(tasks.touch, (str(tmp_path), f"r{i}", 1.0)) for i in range(3)]
        wait_for(lambda: c.status(first)["state"] == "running")
    t0 = time.monotonic()
    assert p.stop() == 0
    assert time.monotonic() - t0 < 15
    assert states(p.db, [first])[first] == "succeeded"
    left = [s for s in states(p.db, rest).values() if s == "queued"]
    assert len(left) >= 2, "tasks not started must stay queued"
    assert "left queued" in p.output()


def test_second_signal_forces_the_stop(leekd_proc, tmp_path):
    p = leekd_proc("--workers", "1", "--grace", "60")
    with leek.Client(port=p.port, secret=SECRET) as c:
        task_id = c.push(tasks.sleep, (60,))
        wait_for(lambda: c.status(task_id)["state"] == "running")
    p.signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in p.output())
    p.signal(signal.SIGTERM)
    assert p.wait(15) == 0
    assert states(p.db, [task_id])[task_id] == "queued"


def test_refuses_a_public_address_without_an_explicit_secret(tmp_path):
    import subprocess
    import sys

    from ..helpers import subprocess_env

    env = subprocess_env(LEEK_SECRET="", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "leekd",
            "run",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--db",
            str(tmp_path / "x.db"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 78
    assert "refusing to listen on 0.0.0.0 without an explicit secret" in out.stderr


def test_standalone_key_file_is_created_private_and_used_by_local_clients(leekd_proc, tmp_path):
    import stat

    cfg = tmp_path / "cfg"
    p = leekd_proc(LEEK_SECRET="", XDG_CONFIG_HOME=str(cfg))
    key = cfg / "leek" / "secret"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    import os

    old = {k: os.environ.get(k) for k in ("LEEK_SECRET", "XDG_CONFIG_HOME")}
    os.environ.pop("LEEK_SECRET")
    os.environ["XDG_CONFIG_HOME"] = str(cfg)
    try:
        with leek.Client(port=p.port) as c:
            assert c.ping()["status"] == "ok"
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("bad", ["--workers=0", "--port=70000", "--grace=-1"])
def test_bad_flags_are_usage_errors(bad, tmp_path):
    import subprocess
    import sys

    from ..helpers import subprocess_env

    out = subprocess.run(
        [sys.executable, "-m", "leekd", "run", bad],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "error" in out.stderr


def test_drain_over_the_socket_stops_gracefully(leekd_proc, tmp_path):
    import subprocess
    import sys

    from ..helpers import subprocess_env

    # Given a leekd with one running task and one waiting behind it,
    p = leekd_proc("--workers", "1", "--grace", "20")
    with leek.Client(port=p.port, secret=SECRET) as c:
        running = c.push(tasks.touch, (str(tmp_path), "running", 1.0))
        waiting = c.push(tasks.touch, (str(tmp_path), "waiting", 1.0))
        wait_for(lambda: c.status(running)["state"] == "running")
    # when an authenticated client asks it to drain,
    out = subprocess.run(
        [sys.executable, "-m", "leekd.cli.shell", "--port", str(p.port), "drain"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "is stopping" in out.stdout
    # then it finishes the running task, keeps the waiting one queued and exits 0.
    assert p.wait(30) == 0
    assert states(p.db, [running, waiting]) == {running: "succeeded", waiting: "queued"}
    assert "drain requested by" in p.output()


def test_a_function_defined_in_a_main_script_runs(leekd_proc, tmp_path):
    import subprocess
    import sys

    from ..helpers import subprocess_env

    p = leekd_proc("--workers", "1")
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "import leek\n"
        "def greet(path, name):\n"
        "    Path(path).write_text(f'hello {name}')\n"
        "    return name\n"
        "if __name__ == '__main__':\n"
        "    print(leek.push_task_to_queue(greet, sys.argv[1], name='leek'))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "greeting")],
        env=subprocess_env(LEEK_PORT=str(p.port)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    task_id = int(out.stdout)
    wait_for(lambda: states(p.db, [task_id]).get(task_id) == "succeeded")
    assert (tmp_path / "greeting").read_text() == "hello leek"
    assert f"task {task_id} __main__.greet succeeded" in p.output()
