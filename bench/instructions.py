"""``scripts/bench --instructions``: machine instructions per task of the hot path's code,
counted by valgrind, for this checkout and for ``--baseline``.

On a shared VM a timed rate moves by tens of per cent from one round to the next, more than
most changes to the hot path are worth; the number of instructions a piece of code executes
does not. The workload runs in one process without a server: ``make_record`` and the push
frame's encoding (the client), decoding it and inserting the rows in commits of ``BATCH``
(the server's push), and writing each task's success (its outcome), on leekd's own tables in
a SQLite file. Each part is the difference between two runs under ``valgrind --tool=
cachegrind`` that stop before and after it, divided by the tasks. Not counted: sockets, the
frame's HMAC, the event loop, threads, and running the task.

As a module, ``python -m bench.instructions STAGE N DB`` is that workload, up to STAGE.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import procs

STAGES = ("setup", "client", "push", "outcome")
BATCH = 1000  # tasks per push frame and per commit
TIMEOUT = 900.0  # seconds for one run under valgrind

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def workload(stage: str, n: int, db: str) -> None:
    """Everything up to and including ``stage``, for ``n`` no-op tasks, on the file ``db``."""
    from datetime import UTC, datetime

    from leekd.bootstrap import configure_embedded

    configure_embedded(db, migrate=False)
    from django.db import connection

    from bench.tasks import noop
    from leek.frames import decode_tasks, encode_tasks
    from leek.records import make_record
    from leekd.job import Job, Outcome
    from leekd.store.rows import insert_tasks

    try:
        from leekd.store.outcomes import write_outcomes
    except ImportError:  # a --baseline commit from before outcomes.py
        from leekd.store.rows import write_outcomes  # type: ignore[attr-defined,no-redef]

    connection.ensure_connection()
    raw = connection.connection
    now = datetime.now(UTC)

    def adapt(value: datetime) -> Any:  # a datetime as SQLite text, alike in every version
        return value.isoformat(" ")[:-6]

    if stage == "setup":
        return
    frames = []
    for _ in range(0, n, BATCH):
        records = [make_record(noop, (), None) for _ in range(BATCH)]
        frames.append(encode_tasks(records))
    if stage == "client":
        return
    for data in frames:
        records = list(decode_tasks(data))
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        ids = insert_tasks(cur, "?", records, now, adapt, None)
        cur.execute("COMMIT")
        if stage == "push":
            continue
        outcomes = []
        for i, r in zip(ids, records, strict=True):
            job = Job(i, r.name, r.queue, r.payload, r.max_retries, r.timeout, r.priority, 0.0)
            job.attempts = 1
            outcomes.append(Outcome(job, True, now, 0.001, result=None, worker="w0"))
        cur.execute("BEGIN IMMEDIATE")
        write_outcomes(cur, "?", outcomes, adapt)
        cur.execute("COMMIT")


def prepare(db: Path, env: dict[str, str]) -> None:
    """leekd's tables in a new SQLite file, made natively (the migration is not counted)."""
    code = "import sys; from leekd.bootstrap import configure_embedded; configure_embedded(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(db)],
        env=env,
        cwd=db.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise procs.BenchError(f"could not create leekd's tables:\n{done.stderr[-2000:]}")


def count(stage: str, n: int, db: Path, env: dict[str, str]) -> int:
    """Instructions of one run of the workload up to ``stage`` (valgrind's ``I refs``)."""
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        stage,
        str(n),
        str(db),
    ]
    try:
        # Not from this checkout's directory: there ``leekd`` would be this checkout's.
        done = subprocess.run(
            cmd, env=env, cwd=db.parent, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise procs.BenchError(f"valgrind took over {TIMEOUT:g}s for {stage}") from None
    found = _REFS.search(done.stderr)
    if done.returncode or found is None:
        raise procs.BenchError(
            f"the {stage} workload failed under valgrind:\n{done.stderr[-2000:]}"
        )
    return int(found.group(1).replace(",", ""))


def measure(paths: tuple[Path, ...], n: int) -> dict[str, float]:
    """Instructions per task of each part, for the leek whose packages ``paths`` hold
    (none: this checkout's)."""
    if shutil.which("valgrind") is None:
        raise procs.BenchError(
            "--instructions needs valgrind (on Debian: apt-get install valgrind)"
        )
    from bench.peers import base_env

    env = base_env(*paths, PYTHONHASHSEED="0")  # the same dict layouts in every run
    with tempfile.TemporaryDirectory(prefix="leek-bench-ir-") as tmp:
        template = Path(tmp) / "template.sqlite3"
        prepare(template, env)
        dbs = {stage: Path(tmp) / f"{stage}.sqlite3" for stage in STAGES}
        for db in dbs.values():
            shutil.copyfile(template, db)
        # A count does not depend on what else runs, so the stages run side by side.
        with ThreadPoolExecutor(max_workers=min(len(STAGES), os.cpu_count() or 1)) as pool:
            runs = {stage: pool.submit(count, stage, n, db, env) for stage, db in dbs.items()}
            totals = {stage: run.result() for stage, run in runs.items()}
    parts = {}
    for before, stage in zip(STAGES, STAGES[1:], strict=False):
        parts[stage] = (totals[stage] - totals[before]) / n
    parts["total"] = (totals["outcome"] - totals["setup"]) / n
    return parts


if __name__ == "__main__":
    stage, tasks, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if stage not in STAGES:
        raise SystemExit(f"stage is one of {', '.join(STAGES)}, not {stage!r}")
    workload(stage, tasks, path)
