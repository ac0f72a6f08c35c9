"""Retrying failed tasks: back through the queue to success, history kept and linked."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import leek
from leekd.cli import retry

from .. import tasks
from ..conftest import rows
from ..helpers import ROOT, SECRET, wait_for
from .test_shell import free_port


@pytest.fixture
def clean(django_db):
    from leekd.models import QueuedTask

    QueuedTask.objects.all().delete()


@pytest.fixture
def run(capsys):
    """leek-retry-failed in this process; returns (exit status, stdout, stderr)."""

    def run(*argv: object) -> tuple[int, str, str]:
        code = retry.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def failed(client, *calls, **options) -> list[int]:
    """Push calls with max_retries=1 and wait until each has failed."""
    ids = [client.push(fn, args, max_retries=1, **options) for fn, args in calls]
    wait_for(lambda: all(client.status(i)["state"] == "failed" for i in ids))
    return ids


def test_a_failed_task_goes_back_through_the_queue_to_success(leekd_proc, tmp_path):
    # Given a task that fails its first run only, pushed with a single attempt,
    p = leekd_proc("--workers", "1")
    with leek.Client(port=p.port, secret=SECRET) as c:
        task_id = c.push(tasks.fail_until, (str(tmp_path), "flaky", 1), max_retries=1)
        wait_for(lambda: c.status(task_id)["state"] == "failed")
    ((failure_id,),) = rows(p.db, "SELECT id FROM leekd_failedtask WHERE task_id = ?", task_id)
    cmd = [sys.executable, "-m", "leekd.cli.retry", "--port", str(p.port)]

    def retry_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cmd, *argv], capture_output=True, text=True, timeout=30, env=p.env, cwd=ROOT
        )

    # when leek-retry-failed hands it back,
    done = retry_run("--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("1 failed task(s) queued again\n")
    ((new_id, retry_of),) = rows(
        p.db, "SELECT id, retry_of_id FROM leekd_queuedtask WHERE id != ?", task_id
    )
    assert f"task {task_id} tests.tasks.fail_until" in done.stdout
    assert f"-> task {new_id}" in done.stdout
    # then it runs again and succeeds, and the failure stays, linked to its retry.
    wait_for(
        lambda: (
            rows(p.db, "SELECT state FROM leekd_queuedtask WHERE id = ?", new_id)
            == [("succeeded",)]
        )
    )
    assert (tmp_path / "flaky").read_text() == "xx"
    assert retry_of == failure_id
    assert rows(p.db, "SELECT state FROM leekd_queuedtask WHERE id = ?", task_id) == [("failed",)]
    assert rows(p.db, "SELECT task_id FROM leekd_failedtask") == [(task_id,)]

    # Once retried, it is not retried again by accident: nothing to do, exit 0.
    done = retry_run("--all")
    assert done.returncode == 0
    assert (
        done.stdout
        == "nothing to retry: no failed task matches (1 already retried: add --again to include them)\n"
    )

    # scripts/retry-failed is the same tool; --again --dry-run lists it, changing nothing.
    done = subprocess.run(
        [
            str(ROOT / "scripts" / "retry-failed"),
            "--port",
            str(p.port),
            "--again",
            "--dry-run",
            "--all",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**p.env, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr
    assert f"task {task_id} tests.tasks.fail_until" in done.stdout
    assert f"failure #{failure_id}" in done.stdout
    assert done.stdout.endswith("1 failed task(s) would be retried\n")
    assert len(rows(p.db, "SELECT id FROM leekd_queuedtask")) == 2


def test_dry_run_and_filters(server, client, clean, run, tmp_path):
    from leekd.models import FailedTask, QueuedTask

    a, b = failed(client, (tasks.fail, ("a",)), (tasks.fail, ("b",)))
    (c,) = failed(client, (tasks.fail_until, (str(tmp_path), "c", 1)))
    port = ("--port", server.port)

    code, out, _ = run(*port, "--dry-run", "--name", "tests.tasks.fail")
    assert code == 0
    assert out.splitlines()[-1] == "2 failed task(s) would be retried"
    assert (
        f"task {a} tests.tasks.fail('a')" in out and f"task {b} " in out and f"task {c} " not in out
    )

    code, out, _ = run(*port, "--dry-run", "--name", "tests.tasks.fail*")
    assert out.splitlines()[-1] == "3 failed task(s) would be retried"

    code, out, _ = run(*port, "--dry-run", "--id", c, "--id", a)
    assert {line.split()[1] for line in out.splitlines()[:-1]} == {str(a), str(c)}

    failure_b = FailedTask.objects.get(task_id=b).pk
    code, out, _ = run(*port, "--dry-run", "--failure-id", failure_b)
    assert out.splitlines()[0].startswith(f"task {b} ")

    code, out, _ = run(*port, "--dry-run", "--since", "1h")
    assert out.splitlines()[-1] == "3 failed task(s) would be retried"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, out, _ = run(*port, "--dry-run", "--since", later)
    assert (code, out) == (0, "nothing to retry: no failed task matches\n")
    assert QueuedTask.objects.count() == 3  # dry runs change nothing

    # Filters combine: only c matches both.
    code, out, _ = run(*port, "--name", "tests.tasks.fail_until", "--since", "1h")
    assert code == 0 and out.splitlines()[-1] == "1 failed task(s) queued again"
    new = QueuedTask.objects.get(retry_of__task_id=c)
    wait_for(lambda: client.status(new.pk)["state"] == "succeeded")


def test_paging_shows_a_progress_bar(server, client, clean, run):
    from leekd.models import QueuedTask

    ids = failed(client, *[(tasks.fail, (str(i),)) for i in range(5)])
    code, out, err = run("--port", server.port, "--all", "--batch-size", "2")
    assert code == 0
    # Exactly the five: retries that fail again meanwhile are not picked up by later pages.
    assert out.splitlines()[-1] == "5 failed task(s) queued again"
    # Not a terminal here: one line per step, ending full.
    assert err.splitlines()[-1] == f"[{'#' * 30}] 5/5 retried"
    assert "2/5 retried" in err
    retried = QueuedTask.objects.filter(retry_of__task_id__in=ids)
    assert sorted(retried.values_list("retry_of__task_id", flat=True)) == ids
    # --no-progress keeps stderr quiet.
    code, out, err = run(
        "--port", server.port, "--all", "--again", "--dry-run", "--batch-size", "2", "--no-progress"
    )
    assert code == 0 and err == ""


def test_nothing_to_do_exits_0(server, clean, run):
    assert run("--port", server.port, "--all") == (
        0,
        "nothing to retry: no failed task matches\n",
        "",
    )


def test_dead_server_exits_1(django_db, run):
    code, out, err = run("--port", free_port(), "--all")
    assert code == 1 and out == ""
    assert err.startswith("leek-retry-failed: unreachable:")


@pytest.mark.parametrize(
    "argv", [[], ["--all", "--name", "x"], ["--id", "0"], ["--all", "--batch-size", "5000"]]
)
def test_bad_usage_exits_2(argv, run):
    with pytest.raises(SystemExit) as exc:
        run(*argv)
    assert exc.value.code == 2


def test_server_rejects_bad_requests(client):
    for args in (
        {},
        {"ids": ["x"]},
        {"ids": [1], "limit": 0},
        {"since": "yesterday"},
        {"all": True, "frobnicate": 1},
        {"all": "yes"},
    ):
        with pytest.raises(leek.LeekRejected):
            client.request("retry_failed", **args)


def test_management_command(server, client, clean):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    (task_id,) = failed(client, (tasks.fail, ("m",)))
    out = io.StringIO()
    call_command("leek_retry_failed", "--all", "--dry-run", "--port", str(server.port), stdout=out)
    assert out.getvalue().splitlines()[-1] == "1 failed task(s) would be retried"
    with pytest.raises(CommandError) as exc:
        call_command("leek_retry_failed", "--port", str(server.port), stdout=out)
    assert exc.value.returncode == 2
    with pytest.raises(CommandError) as exc:
        call_command("leek_retry_failed", "--all", "--port", str(free_port()), stdout=out)
    assert exc.value.returncode == 1 and "unreachable" in str(exc.value)


def test_retry_refused_while_draining(server, client, clean):
    (task_id,) = failed(client, (tasks.fail, ("d",)))
    server.draining = True
    try:
        assert client.request("retry_failed", all=True, dry_run=True)["total"] == 1
        with pytest.raises(leek.LeekUnavailable):
            client.request("retry_failed", all=True)
    finally:
        server.draining = False
    assert os.environ["LEEK_SECRET"] == SECRET
