"""Task functions the tests push; importable by in-process and subprocess leekd alike."""

from __future__ import annotations

import os
import time
from pathlib import Path

_calls: dict[str, int] = {}


def add(a, b):
    return a + b


def noop():
    return None


def touch(directory, name, delay=0.0):
    """Leave a trace that this task ran (one line per run, so repeats are visible)."""
    if delay:
        time.sleep(delay)
    with open(Path(directory) / name, "a") as f:
        f.write(f"{os.getpid()}\n")
    return name


def fail(message="boom"):
    raise ValueError(message)


def fail_until(directory, name, failures):
    """Fail the first ``failures`` runs, then succeed; counts runs in a file."""
    path = Path(directory) / name
    with open(path, "a") as f:
        f.write("x")
    if path.stat().st_size <= failures:
        raise RuntimeError(f"failing run {path.stat().st_size} of {failures}")
    return "ok"


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def raise_system_exit():
    raise SystemExit(3)


def return_unpicklable():
    return lambda: None


def uses_orm():
    from leekd.models import QueuedTask

    return QueuedTask.objects.count()


def busy_loop(seconds):
    """Pure Python for ``seconds``: a time limit can interrupt it."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def exit_process(code=1, delay=0.0):
    """Take the whole leekd process down, as a crash in a C extension would."""
    time.sleep(delay)  # lets leekd answer the push first, when a test needs the answer
    os._exit(code)


def print_megabytes(mb):
    chunk = "x" * 1023 + "\n"
    for _ in range(mb * 1024):
        print(chunk, end="")
    return mb


def hold_files(count, seconds):
    """Keep ``count`` descriptors open for ``seconds``, as a task leaking files would."""
    files = []
    try:
        for _ in range(count):
            try:
                files.append(open(os.devnull, "rb"))  # noqa: SIM115 - held on purpose
            except OSError:
                break
        time.sleep(seconds)
        return len(files)
    finally:
        for f in files:
            f.close()


def wait_for_file(path, timeout=60.0):
    """Run until ``path`` exists (a test's signal to finish), bounded by ``timeout``."""
    end = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return "released"


async def async_add(a, b, delay=0.0):
    import asyncio

    await asyncio.sleep(delay)
    return a + b


async def async_fail(message="async boom"):
    raise KeyError(message)


def stamp(directory, name):
    """Append ``name`` and the time it ran to one file: the order and time tasks ran in."""
    with open(Path(directory) / "stamps", "a") as f:
        f.write(f"{name} {time.time():.6f}\n")
    return name


def count_notes(label):
    """How many ``leek_notes`` rows carry ``label``: what this task can see when it runs."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM leek_notes WHERE label = %s", [label])
        return cur.fetchone()[0]


def fail_stamped(directory, name, failures):
    """``stamp``, then fail the first ``failures`` runs: when each attempt ran."""
    stamp(directory, name)
    return fail_until(directory, name + ".runs", failures)


def size_of(data):
    return len(data)


def scheduling_policy():
    """The policy of the thread running this task (None where the system has none)."""
    getter = getattr(os, "sched_getscheduler", None)
    return None if getter is None else getter(0)
