"""Multi-step jobs on a real leekd: the workspace passes from step to step, a failed job is
resumed at its failed step, finished jobs are purged."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

import leek
from leekd.cli import retry, shell

from ..helpers import SECRET, lines, wait_for

JOBS = {"three": ["tests.jobs.first", "tests.jobs.second", "tests.jobs.third"]}


def runs(directory: Path, name: str) -> list[str]:
    return lines(directory / name)


@pytest.fixture
def jobs_client(make_server):
    app = make_server(jobs=JOBS, max_retries=2)
    with leek.Client(port=app.port, secret=SECRET) as c:
        yield app, c


def test_three_steps_share_their_workspace(jobs_client, tmp_path):
    app, c = jobs_client
    job_id = leek.create_job("three", {"dir": str(tmp_path)}, client=c)
    row = wait_for(lambda: (r := c.request("job", id=job_id))["state"] == "completed" and r)
    assert row["workspace"] == {
        "dir": str(tmp_path),
        "fetched": [1, 2, 3],
        "half-done": True,
        "parsed": 6,
        "stored": 60,
    }
    assert row["step"] == 2 and row["error"] == ""
    assert [t["step"] for t in row["tasks"]] == [0, 1, 2]
    assert {t["state"] for t in row["tasks"]} == {"succeeded"}
    # Each step saw what the steps before it saved.
    assert runs(tmp_path, "second-runs") == [f"{job_id} 1 dir,fetched"]
    assert runs(tmp_path, "third-runs") == [f"{job_id} 2 dir,fetched,half-done,parsed"]


def test_a_failed_step_is_retried_then_fails_the_job_which_resumes_there(jobs_client, tmp_path):
    app, c = jobs_client
    # Given a job whose second step fails on every attempt,
    (tmp_path / "fail-second").touch()
    job_id = leek.create_job("three", {"dir": str(tmp_path)}, client=c)
    row = wait_for(lambda: (r := c.request("job", id=job_id))["state"] == "failed" and r)
    # then the step was tried max_retries times and the job failed at step 2, keeping the
    # workspace step 1 saved (not what the failed attempts wrote),
    assert len(runs(tmp_path, "second-runs")) == 2
    assert row["step"] == 1 and "step two cannot go on" in row["error"]
    assert row["workspace"] == {"dir": str(tmp_path), "fetched": [1, 2, 3]}
    out = io.StringIO()
    shell.cmd_job(c, shell.build_parser().parse_args(["job", str(job_id)]), out)
    assert "state     failed" in out.getvalue() and "leek-retry-failed --job" in out.getvalue()
    # A plain retry of all failed tasks leaves the job's step out: it runs with its job;
    reply = c.request("retry_failed", all=True, dry_run=True)
    assert all(t["name"] != "tests.jobs.second" for t in reply["tasks"])
    # and once the cause is gone, leek-retry-failed --job resumes it at step 2.
    (tmp_path / "fail-second").unlink()
    out = io.StringIO()
    args = retry.build_parser().parse_args(["--job", str(job_id)])
    retry.run_retry(c, args, out, io.StringIO())
    assert f"job {job_id} resumed at step 2" in out.getvalue()
    row = wait_for(lambda: (r := c.request("job", id=job_id))["state"] == "completed" and r)
    assert row["workspace"]["stored"] == 60
    assert runs(tmp_path, "first-runs") == [f"{job_id} 0 dir"]  # step 1 did not run again
    assert runs(tmp_path, "second-runs")[-1] == f"{job_id} 1 dir,fetched"
    # A job that has not failed is not resumed.
    with pytest.raises(leek.LeekRejected, match="completed: only a failed job"):
        c.request("resume_job", id=job_id)


def test_create_job_refusals(jobs_client):
    app, c = jobs_client
    with pytest.raises(leek.LeekRejected, match="no job named 'four'; known jobs: three"):
        leek.create_job("four", client=c)
    with pytest.raises(leek.LeekError, match="JSON-serializable"):
        leek.create_job("three", {"when": object()}, client=c)
    with pytest.raises(leek.LeekRejected, match="no job with id 999999"):
        c.request("job", id=999999)


def test_purge_deletes_finished_jobs_with_their_steps(jobs_client, tmp_path):
    from leekd.models import Job, QueuedTask

    app, c = jobs_client
    done = leek.create_job("three", {"dir": str(tmp_path)}, client=c)
    wait_for(lambda: c.request("job", id=done)["state"] == "completed")
    steps = list(QueuedTask.objects.filter(job_id=done).values_list("id", flat=True))
    Job.objects.filter(pk=done).update(
        updated_at=Job.objects.get(pk=done).updated_at - timedelta(days=10)
    )
    reply = c.request("purge", states=["succeeded"], older_than=7 * 86400, dry_run=True)
    assert reply["jobs"] >= 1
    c.request("purge", states=["succeeded"], older_than=7 * 86400)
    assert not Job.objects.filter(pk=done).exists()
    assert not QueuedTask.objects.filter(pk__in=steps).exists()


def test_bad_jobs_setting_stops_leekd_naming_the_job(make_server):
    with pytest.raises(leek.LeekConfigError, match=r"\['jobs'\]\['broken'\].*cannot import"):
        make_server(jobs={"broken": ["tests.jobs.nope"]})


def test_workspace_round_trips_as_json(jobs_client, tmp_path):
    app, c = jobs_client
    job_id = leek.create_job("three", {"dir": str(tmp_path), "note": "ünïcode"}, client=c)
    row = wait_for(lambda: (r := c.request("job", id=job_id))["state"] == "completed" and r)
    assert json.loads(json.dumps(row["workspace"]))["note"] == "ünïcode"
