"""Named queues, each with its own worker pool: isolation, refusal, priorities, settings."""

from __future__ import annotations

import time

import pytest

import leek
from leek.errors import LeekConfigError

from .. import tasks
from ..conftest import rows
from ..helpers import SECRET, wait_for
from .test_task_options import stamps


def test_a_busy_queue_does_not_delay_another(make_server, tmp_path):
    # Given reports' only worker busy with slow tasks, and more of them waiting
    app = make_server(queues={"default": 1, "mail": 1, "reports": 1})
    with leek.Client(port=app.port, secret=SECRET) as c:
        reports = [c.push(tasks.sleep, (2.0,), queue="reports") for _ in range(3)]
        wait_for(lambda: c.stats()["pools"]["reports"]["busy"] == 1, what="reports busy")
        # When mail gets a push
        pushed = time.time()
        c.push(tasks.stamp, (str(tmp_path), "mail"), queue="mail")
        # Then it runs at once, on mail's own worker
        wait_for(lambda: stamps(tmp_path), timeout=5, what="the mail task ran")
        assert stamps(tmp_path)[0][1] - pushed < 1.0
        stats = c.stats()
        for task_id in reports[1:]:  # left waiting: later servers on this database would run them
            c.cancel(task_id)
    assert stats["serves"] == ["default", "mail", "reports"]
    assert stats["queues"]["reports"]["waiting"] == 2
    assert stats["pools"]["reports"] == {"total": 1, "busy": 1, "idle": 0}
    assert stats["workers"]["total"] == 3
    names = {w.name for w in app.workers}
    assert {"leekd-worker-mail-1", "leekd-worker-reports-2"} <= names


def test_a_push_to_an_unserved_queue_is_refused_and_not_stored(make_server, django_db):
    app = make_server(queues={"default": 1, "mail": 1})
    count = "SELECT count(*) FROM leekd_queuedtask"
    with leek.Client(port=app.port, secret=SECRET) as c:
        before = rows(django_db, count)
        with pytest.raises(
            leek.LeekRejected, match="serves the queues default, mail, not 'reports'"
        ):
            c.push(tasks.noop, queue="reports")
        # a batch with one record for an unserved queue is refused whole
        with pytest.raises(leek.LeekRejected, match="'reports'"):
            c.push_records(
                [
                    leek.records.make_record(tasks.noop, queue="mail"),
                    leek.records.make_record(tasks.noop, queue="reports"),
                ]
            )
        assert rows(django_db, count) == before
        # and the connection goes on serving
        assert c.push(tasks.noop, queue="mail") > 0


def test_without_named_queues_every_queue_shares_the_default_pool(make_server):
    app = make_server(workers=2)
    with leek.Client(port=app.port, secret=SECRET) as c:
        task_id = c.push(tasks.add, (1, 2), queue="anything")
        wait_for(lambda: c.status(task_id)["state"] == "succeeded")
        stats = c.stats()
    assert stats["serves"] is None
    assert stats["pools"] == {"default": {"total": 2, "busy": 0, "idle": 2}}


def test_priority_holds_within_each_queue(make_server, tmp_path):
    app = make_server(queues={"default": 1, "mail": 1})
    with leek.Client(port=app.port, secret=SECRET) as c:
        for queue in ("default", "mail"):  # hold each queue's only worker
            c.push(tasks.sleep, (0.7,), queue=queue)
        wait_for(lambda: app.busy() == 2, what="both blockers started")
        for name, priority in [("low", -5), ("mid", 0), ("high", 10)]:
            for queue in ("default", "mail"):
                c.push(
                    tasks.stamp, (str(tmp_path), f"{queue}-{name}"), queue=queue, priority=priority
                )
        wait_for(lambda: len(stamps(tmp_path)) == 6, timeout=10, what="all ran")
    order = [n for n, _ in stamps(tmp_path)]
    for queue in ("default", "mail"):
        mine = [n.split("-")[1] for n in order if n.startswith(queue)]
        assert mine == ["high", "mid", "low"]


def test_queues_from_flags_settings_and_their_checks():
    from leekd.cli.run import build_parser
    from leekd.conf import Config, resolve

    args = build_parser().parse_args(["run", "--queue", "default=4", "--queue", "mail=1"])
    assert args.queues == [("default", 4), ("mail", 1)]
    for bad in ("mail", "mail=0", "=3", "mail=x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "--queue", bad])
    config = resolve({"queues": [("mail", 1)], "workers": 3}, use_django=False)
    assert config.pools == {"default": 3, "mail": 1}  # the default queue is always served
    config = resolve({"queues": [("default", 2)]}, use_django=False)
    assert config.workers == 2 and config.pools == {"default": 2}
    with pytest.raises(LeekConfigError, match="given twice"):
        resolve({"queues": [("default", 2)], "workers": 3}, use_django=False)
    assert Config().pools == {"default": 4} and Config().queues is None
    for bad in ({}, {"mail": 0}, {"": 1}, {"mail": True}, ["mail"]):
        with pytest.raises(LeekConfigError):
            Config(queues=bad).validate()  # type: ignore[arg-type]


def test_manage_py_check_validates_the_queues_setting(django_db):
    from django.test.utils import override_settings

    from leekd.checks import check_leek_settings

    with override_settings(LEEK={"queues": {"default": 4, "mail": 1}}):
        assert check_leek_settings() == []
    with override_settings(LEEK={"queues": {"mail": 0}}):
        (error,) = check_leek_settings()
    assert error.id == "leekd.E006" and "'mail' needs 1..1000 workers" in error.msg


def test_leekd_run_serves_the_queues_of_its_flags(leekd_proc, capsys):
    from leekd.cli import shell

    p = leekd_proc("--queue", "mail=2", "--workers", "2")
    assert "queues default=2, mail=2" in p.output()
    with leek.Client(port=p.port, secret=SECRET) as c:
        assert c.stats()["pools"]["mail"]["total"] == 2
        with pytest.raises(leek.LeekRejected, match="serves the queues"):
            c.push(tasks.noop, queue="reports")
    assert shell.main(["--port", str(p.port), "stats"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("queue"))
    assert lines[header].split()[-1] == "workers"
    table = {line.split()[0]: line.split()[1:] for line in lines[header + 1 :]}
    assert table["mail"][-1] == "0/2" and table["default"][-1] == "0/2"
