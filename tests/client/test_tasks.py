"""Turning calls into task records: by reference when possible, by value when needed."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

import leek
from leek.records import _dumps, make_record, preview

from .. import tasks


def loads(record):
    return cloudpickle.loads(record.payload)


def test_importable_calls_take_the_standard_pickler_and_load_the_same():
    record = make_record(tasks.add, (1, 2), None)
    assert _dumps(tasks.add, (1, 2), {}) is not None
    fn, args, kwargs = loads(record)
    assert fn is tasks.add and args == (1, 2) and kwargs == {}
    assert record.name == "tests.tasks.add" and record.preview == "1, 2"


@pytest.mark.parametrize(
    "make",
    [
        lambda: (lambda x: x + 1, (1,)),  # a lambda
        lambda: (tasks.add, (lambda: 1,)),  # a lambda among the arguments
    ],
)
def test_anything_by_value_falls_back_to_cloudpickle(make):
    fn, args = make()
    assert _dumps(fn, args, {}) is None
    loaded_fn, loaded_args, _ = loads(make_record(fn, args))
    assert callable(loaded_fn)


def test_local_function_travels_by_value():
    def local(x):
        return x * 3

    assert _dumps(local, (2,), {}) is None
    fn, args, _ = loads(make_record(local, (2,)))
    assert fn(*args) == 6


def test_modules_registered_by_value_are_honoured():
    cloudpickle.register_pickle_by_value(tasks)
    try:
        assert _dumps(tasks.add, (1, 2), {}) is None
        record = make_record(tasks.add, (1, 2))
        assert b"tests.tasks" not in record.payload or b"_make_function" in record.payload
    finally:
        cloudpickle.unregister_pickle_by_value(tasks)


def test_unpicklable_arguments_are_a_clear_error():
    import threading

    with pytest.raises(leek.LeekError, match="cannot pickle the task tests.tasks.add"):
        make_record(tasks.add, (threading.Lock(), 1))


def test_preview_is_short_and_survives_hostile_reprs():
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no")

    assert preview((Hostile(),), {}).startswith("<Hostile instance at")
    assert len(preview(("x" * 10_000,) * 50, {"k": list(range(1000))})) <= 300


def test_standard_and_cloudpickle_payloads_load_alike():
    fast = _dumps(tasks.add, (1, {"a": [1, 2]}), {"x": 1.5})
    slow = cloudpickle.dumps((tasks.add, (1, {"a": [1, 2]}), {"x": 1.5}), protocol=5)
    assert pickle.loads(fast) == pickle.loads(slow)
