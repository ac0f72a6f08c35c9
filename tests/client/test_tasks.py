"""Turning calls into task records: by reference when possible, by value when needed."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

import leek
from leek.records import _dumps, _repr, make_record, make_records, preview

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


def test_a_batch_makes_the_records_each_call_would():
    local = lambda x: x  # noqa: E731 - travels by value, beside calls by reference
    marked = leek.task(queue="mail", priority=5)(tasks.add)
    calls = [tasks.noop, (tasks.add, (1, 2)), (local, (3,)), (marked, (4, 5), {"b": 6}), tasks.noop]
    batch = make_records(calls, max_retries=3)
    one_by_one = [
        make_record(tasks.noop, max_retries=3),
        make_record(tasks.add, (1, 2), max_retries=3),
        make_record(local, (3,), max_retries=3),
        make_record(marked, (4, 5), {"b": 6}, max_retries=3),
        make_record(tasks.noop, max_retries=3),
    ]
    for got, want in zip(batch, one_by_one, strict=True):
        assert got.key != want.key and len({r.key for r in batch}) == len(batch)
        got.key = want.key
        if want.name.endswith("<lambda>"):  # by value: the same call, not the same bytes
            assert loads(got)[0](*loads(got)[1]) == 3
            got.payload = want.payload
        assert got == want
    assert batch[3].queue == "mail" and batch[3].priority == 5 and batch[3].preview == "4, 5, b=6"
    with pytest.raises(leek.LeekError, match="must be callable"):
        make_records([tasks.noop, (42, ())])
    with pytest.raises(leek.LeekError, match="max_retries"):
        make_records([tasks.noop], max_retries=0)


@pytest.mark.parametrize(
    "value",
    [1, -2.5, True, None, "abc", "x" * 38, "x" * 39, "x" * 61, 10**39, 10**41, float("nan"),
     "é" * 30, "quote's", "\n" * 20, 1e300],
)  # fmt: skip
def test_plain_arguments_preview_as_reprlib_shows_them(value):
    assert preview((value,), {"k": value}) == f"{_repr.repr(value)}, k={_repr.repr(value)}"
