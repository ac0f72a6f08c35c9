"""Multi-step jobs in a leekd subprocess: kill -9 during a step resumes at that step, and
``manage.py leek_create_job`` starts a job."""

from __future__ import annotations

import json
import subprocess
import sys

import leek

from ..helpers import ROOT, SECRET, LeekdProcess, lines, wait_for


def test_kill_9_during_step_two_resumes_at_step_two(flow_env, tmp_path):
    db = tmp_path / "flow.sqlite3"
    p = LeekdProcess(db, "--settings", "tests.flow_settings", env=flow_env).start()
    c = leek.Client(port=p.port, secret=SECRET)
    # Given a three-step job whose second step hangs on its first run,
    job_id = leek.create_job("three", {"dir": str(tmp_path), "hang": True}, client=c)
    wait_for(lambda: len(lines(tmp_path / "second-runs")) == 1, timeout=30)
    assert c.request("job", id=job_id)["state"] == "processing"
    c.close()
    # when leekd is killed during it and started again,
    p.kill()
    p = LeekdProcess(db, "--settings", "tests.flow_settings", env=flow_env).start()
    with leek.Client(port=p.port, secret=SECRET) as c:
        row = wait_for(
            lambda: (r := c.request("job", id=job_id))["state"] == "completed" and r, timeout=30
        )
    assert p.stop() == 0
    # then step 2 ran again from the workspace step 1 saved, and step 1 did not run again.
    assert lines(tmp_path / "first-runs") == [f"{job_id} 0 dir,hang"]
    assert lines(tmp_path / "second-runs") == [f"{job_id} 1 dir,fetched,hang"] * 2
    assert lines(tmp_path / "third-runs") == [f"{job_id} 2 dir,fetched,half-done,hang,parsed"]
    assert row["workspace"]["stored"] == 60


def test_manage_py_leek_create_job(flow_env, tmp_path):
    p = LeekdProcess(tmp_path / "flow.sqlite3", "--settings", "tests.flow_settings", env=flow_env)
    p.start()
    done = subprocess.run(
        [
            sys.executable, "-m", "django", "leek_create_job", "three",
            "--workspace", json.dumps({"dir": str(tmp_path)}), "--settings", "tests.flow_settings",
        ],
        env={**flow_env, "LEEK_PORT": str(p.port)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.split()[1])
    assert done.stdout.strip() == f"job {job_id} three created"
    with leek.Client(port=p.port, secret=SECRET) as c:
        wait_for(lambda: c.request("job", id=job_id)["state"] == "completed", timeout=30)
    shell = subprocess.run(
        [sys.executable, "-m", "leekd.cli.shell", "--port", str(p.port), "job", str(job_id)],
        env=flow_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.stop() == 0
    assert shell.returncode == 0, shell.stderr
    assert f"job {job_id}: three (3 steps)" in shell.stdout
    assert "state     completed" in shell.stdout and '"stored": 60' in shell.stdout
