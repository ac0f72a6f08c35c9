"""Eager and capture modes: pushes run inline or are recorded, and no leekd is needed."""

from __future__ import annotations

import threading

import pytest

import leek
from leek.testing import capture, eager

from .. import tasks


@pytest.fixture(autouse=True)
def no_leekd(monkeypatch):
    # Nothing listens here: any push that leaves the process fails the test.
    monkeypatch.setenv("LEEK_PORT", "1")
    leek.client.reset_client()
    yield
    leek.client.reset_client()


def test_eager_runs_the_push_inline_and_result_returns_its_value():
    with eager() as mode:
        task_id = leek.push(tasks.add, (2, 3), queue="mail", priority=5)
        assert leek.result(task_id) == 5
        (done,) = mode.pushes
        assert done.name == "tests.tasks.add" and done.queue == "mail" and done.priority == 5


def test_eager_makes_the_pickling_round_trip():
    with eager(), pytest.raises(leek.LeekError, match="cannot pickle"):
        leek.push(tasks.add, (threading.Lock(), 1))


def test_eager_failure_is_kept_for_result_or_raised_with_propagate():
    with eager():
        task_id = leek.push(tasks.fail, ("nope",))
        with pytest.raises(leek.LeekTaskFailed, match="builtins.ValueError: nope") as info:
            leek.result(task_id)
        assert "raise ValueError(message)" in info.value.traceback
    with eager(propagate=True), pytest.raises(ValueError, match="nope"):
        leek.push(tasks.fail, ("nope",))


def test_eager_runs_async_tasks_and_decorated_ones():
    @leek.task(queue="q")
    def double(x):
        return 2 * x

    with eager():
        assert leek.result(leek.push(tasks.async_add, (1, 2))) == 3
        assert leek.result(double.delay(21)) == 42


def test_capture_records_and_runs_nothing(tmp_path):
    with capture() as mode:
        leek.push(tasks.touch, (str(tmp_path), "never"), delay=60)
        leek.push_many([(tasks.add, (1, 2)), (tasks.add, (3, 4))])
        with pytest.raises(leek.LeekError, match="captured"):
            leek.result(mode.pushes[0].id)
    assert [c.name for c in mode.pushes] == ["tests.tasks.touch"] + ["tests.tasks.add"] * 2
    assert [c.args for c in mode.named("add")] == [(1, 2), (3, 4)]
    assert mode.pushes[0].run_at > 0
    assert not (tmp_path / "never").exists()


def test_the_pytest_fixture(leek_eager):
    assert leek.result(leek.push_task_to_queue(tasks.add, 4, 4)) == 8
    assert len(leek_eager.pushes) == 1


def test_leek_eager_setting(django_db):
    from django.test import override_settings

    with override_settings(LEEK={"eager": True}):
        assert leek.result(leek.push(tasks.add, (1, 1))) == 2
    with override_settings(LEEK={"capture": True}):
        leek.push(tasks.add, (1, 1))
        inline = leek.get_client().inline
        assert inline is not None and len(inline.pushes) == 1
    assert leek.get_client().inline is None
