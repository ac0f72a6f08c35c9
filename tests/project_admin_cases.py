"""The admin through Django's test client, in a project with admin, auth and sessions.

Not collected by the main suite (its name does not start with test_): tests/django/test_admin.py
runs it in a process of its own, as Django is configured once per process. By hand:

    LEEK_SECRET=x LEEK_TEST_DB=/tmp/p.sqlite3 DJANGO_SETTINGS_MODULE=tests.project_settings \
        python -m pytest --noconftest tests/project_admin_cases.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

if os.environ.get("DJANGO_SETTINGS_MODULE") != "tests.project_settings":
    pytest.skip("run through tests/django/test_admin.py", allow_module_level=True)

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from leekd.models import FailedTask, Job, Node, QueuedTask, Schedule  # noqa: E402

from . import tasks  # noqa: E402
from .helpers import SECRET, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def leekd(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """leekd in this process, on the project's database, found by the admin via LEEK_PORT.

    Its schedule's last tick is made a day old, as if leekd had been down since: it catches
    up with one run at start, whose task the dashboard links.
    """
    from django.conf import settings
    from django.utils import timezone

    from leekd.app import Leekd
    from leekd.conf import Config
    from leekd.runner import ServerThread

    call_command("migrate", verbosity=0, interactive=False)
    day_ago = timezone.now() - timedelta(days=1)
    Schedule.objects.create(name="nightly-report", last_tick=day_ago, claimed_at=day_ago)
    running = tmp_path_factory.mktemp("run") / "leekd.running"
    config = Config(
        port=0,
        workers=2,
        retry_delay=0.01,
        grace=5.0,
        running_file=str(running),
        jobs={"three": ["tests.jobs.first", "tests.jobs.second", "tests.jobs.third"]},
        schedule=settings.LEEK["schedule"],
    )
    thread = ServerThread(Leekd(config.validate(), os.environ["LEEK_SECRET"].encode()))
    app = thread.start()
    os.environ["LEEK_PORT"] = str(app.port)
    caught_up = Schedule.objects.filter(pk="nightly-report", last_task__isnull=False)
    wait_for(
        lambda: QueuedTask.objects.filter(
            pk__in=caught_up.values("last_task"), state="succeeded"
        ).exists()
    )
    yield app
    thread.stop()


@pytest.fixture(scope="module")
def client(leekd) -> Iterator:
    import leek

    with leek.Client(port=leekd.port, secret=SECRET) as c:
        yield c


@pytest.fixture
def browser(leekd) -> Client:
    user, _ = User.objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    web = Client()
    web.force_login(user)
    return web


def failed(client, fn, *args) -> int:
    task_id = client.push(fn, args, max_retries=1)
    wait_for(lambda: client.status(task_id)["state"] == "failed")
    return task_id


def test_changelists_filter_and_search(client, browser):
    ok = client.push(tasks.add, (20, 22), queue="numbers")
    wait_for(lambda: client.status(ok)["state"] == "succeeded")
    bad = failed(client, tasks.fail, "admin boom")

    page = browser.get("/admin/leekd/queuedtask/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "tests.tasks.add" in text and "tests.tasks.fail" in text
    assert "20, 22" in text  # the readable arguments preview
    assert "payload" not in text.lower()

    numbers = browser.get("/admin/leekd/queuedtask/", {"queue": "numbers"}).content.decode()
    assert f"/admin/leekd/queuedtask/{ok}/change/" in numbers
    assert f"/admin/leekd/queuedtask/{bad}/change/" not in numbers
    failed_only = browser.get("/admin/leekd/queuedtask/", {"state": "failed"}).content.decode()
    assert f"/admin/leekd/queuedtask/{bad}/change/" in failed_only
    assert f"/admin/leekd/queuedtask/{ok}/change/" not in failed_only
    found = browser.get("/admin/leekd/queuedtask/", {"q": "tasks.add"}).content.decode()
    assert f"/admin/leekd/queuedtask/{ok}/change/" in found
    assert f"/admin/leekd/queuedtask/{bad}/change/" not in found
    listing = browser.get("/admin/leekd/failedtask/").content.decode()
    past_week = re.search(r'href="(\?failed_at__gte=[^"]+)"[^>]*>Past 7 days', listing)
    assert past_week is not None
    dated = browser.get("/admin/leekd/failedtask/" + past_week.group(1).replace("&amp;", "&"))
    assert (
        dated.status_code == 200
        and f"/admin/leekd/queuedtask/{bad}/change/" in dated.content.decode()
    )

    for model in ("successtask", "failedtask"):
        assert browser.get(f"/admin/leekd/{model}/").status_code == 200
    by_queue = browser.get("/admin/leekd/successtask/", {"queue": "numbers"}).content.decode()
    assert f"/admin/leekd/queuedtask/{ok}/change/" in by_queue
    by_queue = browser.get("/admin/leekd/failedtask/", {"queue": "numbers"}).content.decode()
    assert f"/admin/leekd/queuedtask/{bad}/change/" not in by_queue
    assert "tests.tasks.add" in browser.get("/admin/leekd/successtask/").content.decode()
    assert browser.get("/admin/leekd/queuedtask/add/").status_code == 403


def test_failure_page_shows_the_traceback_formatted(client, browser):
    task_id = failed(client, tasks.fail, "<b>not bold</b>")
    failure = FailedTask.objects.get(task_id=task_id)
    text = browser.get(f"/admin/leekd/failedtask/{failure.pk}/change/").content.decode()
    pre = re.search(r"<pre[^>]*>(.*?)</pre>", text, re.S)
    assert pre is not None
    assert "Traceback (most recent call last)" in pre.group(1)
    assert "raise ValueError(message)" in pre.group(1)
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text and "<b>not bold</b>" not in text
    task_page = browser.get(f"/admin/leekd/queuedtask/{task_id}/change/").content.decode()
    assert "<pre" in task_page and "builtins.ValueError" in task_page


def test_retry_selected_requeues_through_leekd(client, browser, tmp_path: Path):
    # Given a task that failed its only attempt (it would succeed on a second run),
    task_id = failed(client, tasks.fail_until, str(tmp_path), "flaky", 1)
    failure = FailedTask.objects.get(task_id=task_id)
    # when an admin retries it from the failed tasks' list,
    page = browser.post(
        "/admin/leekd/failedtask/",
        {"action": "retry_selected", "_selected_action": [failure.pk]},
        follow=True,
    )
    # then leekd queues it again, linked to the failure, and it succeeds;
    assert page.status_code == 200
    retry = QueuedTask.objects.get(retry_of=failure)
    assert re.search(
        rf"Queued 1 failed task\(s\) again as <a [^>]*>#{retry.pk}</a>", page.content.decode()
    )
    wait_for(lambda: client.status(retry.pk)["state"] == "succeeded")
    assert FailedTask.objects.filter(pk=failure.pk).exists()
    assert (tmp_path / "flaky").read_text() == "xx"
    # the list shows it as retried, and a second click skips it and says why.
    assert "retried=yes" in browser.get("/admin/leekd/failedtask/").content.decode()
    again = browser.get("/admin/leekd/failedtask/", {"retried": "yes"}).content.decode()
    assert f"/admin/leekd/queuedtask/{task_id}/change/" in again
    page = browser.post(
        "/admin/leekd/failedtask/",
        {"action": "retry_selected", "_selected_action": [failure.pk]},
        follow=True,
    )
    assert "had been retried already and were skipped" in page.content.decode()
    assert QueuedTask.objects.filter(retry_of=failure).count() == 1


def test_retry_reports_an_unreachable_leekd(client, browser, monkeypatch):
    import leek

    task_id = failed(client, tasks.fail, "x")
    failure = FailedTask.objects.get(task_id=task_id)
    monkeypatch.setattr(leek.client, "_default", leek.Client(port=1, secret=SECRET))
    page = browser.post(
        "/admin/leekd/failedtask/",
        {"action": "retry_selected", "_selected_action": [failure.pk]},
        follow=True,
    )
    assert "Could not retry through leekd" in page.content.decode()
    assert not QueuedTask.objects.filter(retry_of=failure).exists()


def test_unfinished_tasks_are_not_deleted(client, browser, leekd):
    # A row leekd has not finished (inserted here, so no worker holds it) and a finished one.
    done = client.push(tasks.add, (1, 1))
    wait_for(lambda: client.status(done)["state"] == "succeeded")
    when = QueuedTask.objects.get(pk=done).enqueued_at
    waiting = QueuedTask.objects.create(name="tests.tasks.noop", payload=b"", enqueued_at=when)
    both = {"action": "delete_selected", "_selected_action": [done, waiting.pk]}
    confirm = browser.post("/admin/leekd/queuedtask/", both)
    assert "permission to delete" in confirm.content.decode()
    assert browser.post("/admin/leekd/queuedtask/", {**both, "post": "yes"}).status_code == 403
    assert browser.get(f"/admin/leekd/queuedtask/{waiting.pk}/delete/").status_code == 403
    assert QueuedTask.objects.filter(pk__in=[done, waiting.pk]).count() == 2
    # Finished ones can go (with their outcome).
    one = {"action": "delete_selected", "_selected_action": [done], "post": "yes"}
    assert browser.post("/admin/leekd/queuedtask/", one, follow=True).status_code == 200
    assert not QueuedTask.objects.filter(pk=done).exists()
    # Deleting a failure record deletes its task's record too.
    bad = failed(client, tasks.fail, "gone")
    failure = FailedTask.objects.get(task_id=bad)
    gone = browser.post(f"/admin/leekd/failedtask/{failure.pk}/delete/", {"post": "yes"})
    assert gone.status_code == 302
    assert not QueuedTask.objects.filter(pk=bad).exists()
    waiting.delete()


def count(html: str, queue: str, column: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', html, re.S)
    assert row is not None, f"no row for queue {queue}"
    cell = re.search(rf'data-count="{column}">([^<]*)<', row.group(1))
    assert cell is not None
    return cell.group(1)


def test_dashboard_counts_charts_slowest_and_failures(client, browser):
    # Given two tasks that succeeded on "dash" and one that failed there,
    ok = [client.push(tasks.add, (i, 1), queue="dash") for i in range(2)]
    for task_id in ok:
        wait_for(lambda t=task_id: client.status(t)["state"] == "succeeded")
    bad = client.push(tasks.fail, ("dash boom",), queue="dash", max_retries=1)
    wait_for(lambda: client.status(bad)["state"] == "failed")
    # the admin index links the dashboard in leekd's section,
    index = browser.get("/admin/").content.decode()
    assert 'href="/admin/leekd/dashboard/"' in index
    # and the dashboard shows the queue's counts, both charts, the slowest and the failure.
    page = browser.get("/admin/leekd/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert count(html, "dash", "succeeded") == "2" and count(html, "dash", "failed") == "1"
    assert count(html, "dash", "waiting") == "0" and count(html, "dash", "running") == "0"
    assert html.count('<svg class="leek-chart"') == 2 and 'class="leek-failed"' in html
    assert "tests.tasks.add" in html.split('id="leek-slowest"')[1]
    failure = FailedTask.objects.get(task_id=bad)
    row = re.search(rf'<tr data-failure="{failure.pk}">(.*?)</tr>', html, re.S)
    assert row is not None and "dash boom" in row.group(1) and ">Retry</button>" in row.group(1)
    assert "leekd/dashboard.js" in html and 'data-url="/admin/leekd/dashboard/data/' in html
    # The fragment the page refreshes from has the same figures, without the admin around it.
    data = browser.get("/admin/leekd/dashboard/data/").content.decode()
    assert count(data, "dash", "succeeded") == "2" and "<html" not in data


def test_dashboard_retry_button_queues_the_failure_again(client, browser, tmp_path: Path):
    task_id = failed(client, tasks.fail_until, str(tmp_path), "dash-flaky", 1)
    failure = FailedTask.objects.get(task_id=task_id)
    page = browser.post("/admin/leekd/dashboard/retry/", {"failure": failure.pk}, follow=True)
    assert page.redirect_chain[-1][0] == "/admin/leekd/dashboard/"
    retry = QueuedTask.objects.get(retry_of=failure)
    html = page.content.decode()
    assert re.search(rf"Queued 1 failed task\(s\) again as <a [^>]*>#{retry.pk}</a>", html)
    row = re.search(rf'<tr data-failure="{failure.pk}">(.*?)</tr>', html, re.S)
    assert row is not None and "retried as <a" in row.group(1)
    wait_for(lambda: client.status(retry.pk)["state"] == "succeeded")
    assert browser.get("/admin/leekd/dashboard/retry/").status_code == 405
    missing = browser.post("/admin/leekd/dashboard/retry/", {"failure": 10**9}, follow=True)
    assert "There is no failure #1000000000." in missing.content.decode()


def test_dashboard_is_for_staff_only(leekd):
    anonymous = Client()
    assert anonymous.get("/admin/leekd/dashboard/").status_code == 302
    assert anonymous.get("/admin/leekd/dashboard/data/").status_code == 302
    assert anonymous.post("/admin/leekd/dashboard/retry/", {"failure": 1}).status_code == 302
    staff, _ = User.objects.get_or_create(username="staff-no-perms", defaults={"is_staff": True})
    web = Client()
    web.force_login(staff)
    assert web.get("/admin/leekd/dashboard/").status_code == 403
    assert web.post("/admin/leekd/dashboard/retry/", {"failure": 1}).status_code == 403


def test_dashboard_without_leekd_draws_from_the_database(client, browser, monkeypatch):
    import leek

    monkeypatch.setattr(leek.client, "_default", leek.Client(port=1, secret=SECRET))
    html = browser.get("/admin/leekd/dashboard/").content.decode()
    assert 'id="leek-live-problem"' in html and "leekd did not answer" in html
    assert html.count('<svg class="leek-chart"') == 2


def field(html: str, kind: str, name: str, column: str) -> str:
    row = re.search(rf'<tr data-{kind}="{re.escape(name)}">(.*?)</tr>', html, re.S)
    assert row is not None, f"no row for {kind} {name}"
    cell = re.search(rf'data-field="{column}">(.*?)</td>', row.group(1), re.S)
    assert cell is not None
    return cell.group(1)


def test_dashboard_shows_the_schedules_last_and_next_run(client, browser):
    # Given the project's schedule, which caught up with one run when leekd started,
    last = Schedule.objects.get(pk="nightly-report").last_task
    assert last is not None
    # the dashboard (and its refreshing fragment) shows it with its last and next run,
    for url in ("/admin/leekd/dashboard/", "/admin/leekd/dashboard/data/"):
        html = browser.get(url).content.decode()
        section = html.split('id="leek-schedules"')[1].split("</section>")[0]
        assert "tests.tasks.noop" in section and "every 21600s" in section
        assert "reports" in section
        assert " ago)" in field(html, "schedule", "nightly-report", "last-run")
        assert "(in " in field(html, "schedule", "nightly-report", "next-run")
        # and its last task, linked to the task's page, with that task's state.
        task = field(html, "schedule", "nightly-report", "last-task")
        assert f'href="/admin/leekd/queuedtask/{last}/change/">#{last}</a> succeeded' in task
    assert browser.get(f"/admin/leekd/queuedtask/{last}/change/").status_code == 200
    assert 'id="leek-nodes"' not in html  # one leekd on SQLite: no nodes, no section


def test_dashboard_schedules_without_leekd_come_from_their_rows(client, browser, monkeypatch):
    import leek

    monkeypatch.setattr(leek.client, "_default", leek.Client(port=1, secret=SECRET))
    row = Schedule.objects.get(pk="nightly-report")
    html = browser.get("/admin/leekd/dashboard/").content.decode()
    assert "the schedules' next runs are unknown" in html
    assert field(html, "schedule", "nightly-report", "next-run") == "?"
    task = field(html, "schedule", "nightly-report", "last-task")
    assert f'href="/admin/leekd/queuedtask/{row.last_task}/change/"' in task
    # With no schedule at all, the section is left out rather than drawn empty.
    row.delete()
    try:
        html = browser.get("/admin/leekd/dashboard/").content.decode()
        assert 'id="leek-schedules"' not in html and 'id="leek-queues"' in html
    finally:
        row.save()


def test_dashboard_shows_each_nodes_health(client, browser):
    from django.utils import timezone

    now = timezone.now()
    nodes = [
        Node(name="web-1:8002", address="10.0.0.1:8002", heartbeat=now, waiting=3, running=2),
        Node(name="web-2:8002", address="10.0.0.2:8002", heartbeat=now - timedelta(minutes=5)),
        Node(name="web-3:8002", address="10.0.0.3:8002", heartbeat=now, stopped=True),
    ]
    for node in nodes:
        node.started_at = now - timedelta(hours=1)
        node.save()
    try:
        html = browser.get("/admin/leekd/dashboard/data/").content.decode()
        assert "10.0.0.1:8002" in html.split('id="leek-nodes"')[1]
        assert field(html, "node", "web-1:8002", "lease") == "alive"
        assert field(html, "node", "web-1:8002", "waiting") == "3"
        assert field(html, "node", "web-1:8002", "running") == "2"
        assert field(html, "node", "web-1:8002", "heartbeat").endswith(" ago")
        # silent longer than the 30 s lease: dead; left cleanly: stopped.
        assert "dead" in field(html, "node", "web-2:8002", "lease")
        assert field(html, "node", "web-2:8002", "heartbeat").startswith("5m0")
        assert "stopped" in field(html, "node", "web-3:8002", "lease")
    finally:
        Node.objects.filter(pk__in=[n.pk for n in nodes]).delete()


def test_jobs_list_detail_and_resume_action(client, browser, tmp_path: Path):
    import leek

    # Given a three-step job that failed at its second step,
    (tmp_path / "fail-second").touch()
    job_id = leek.create_job("three", {"dir": str(tmp_path)}, client=client)
    wait_for(lambda: client.request("job", id=job_id)["state"] == "failed")
    # the admin lists it and shows its step, error, workspace and step tasks, read-only;
    listing = browser.get("/admin/leekd/job/").content.decode()
    assert f"/admin/leekd/job/{job_id}/change/" in listing and "failed" in listing
    detail = browser.get(f"/admin/leekd/job/{job_id}/change/").content.decode()
    assert "step two cannot go on" in detail and "&quot;fetched&quot;" in detail
    assert "/admin/leekd/queuedtask/" in detail and 'name="workspace"' not in detail
    # and "resume" queues the failed step again through leekd, which completes the job.
    (tmp_path / "fail-second").unlink()
    page = browser.post(
        "/admin/leekd/job/",
        {"action": "resume_selected", "_selected_action": [job_id]},
        follow=True,
    )
    assert f"Resumed 1 job(s): {job_id}." in page.content.decode()
    wait_for(lambda: client.request("job", id=job_id)["state"] == "completed")
    assert Job.objects.get(pk=job_id).workspace["stored"] == 60
    assert browser.get("/admin/leekd/schedule/").status_code == 200
