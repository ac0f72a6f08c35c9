"""Steps of the three-step job the tests run: each leaves a trace and adds to the workspace.

``job.workspace["dir"]`` is where traces go. Step 2 fails while a file ``fail-second``
exists there, and hangs on its first run when the workspace says ``hang`` (for kill -9).
"""

from __future__ import annotations

import time
from pathlib import Path


def _trace(job, name):
    with open(Path(job.workspace["dir"]) / name, "a") as f:
        f.write(f"{job.id} {job.step} {','.join(sorted(job.workspace))}\n")
    return len((Path(job.workspace["dir"]) / name).read_text().splitlines())


def first(job):
    _trace(job, "first-runs")
    job.workspace["fetched"] = [1, 2, 3]


def second(job):
    runs = _trace(job, "second-runs")
    job.workspace["half-done"] = True  # not saved when this step fails
    if (Path(job.workspace["dir"]) / "fail-second").exists():
        raise RuntimeError("step two cannot go on")
    if job.workspace.get("hang") and runs == 1:
        time.sleep(60)
    job.workspace["parsed"] = sum(job.workspace["fetched"])


def third(job):
    _trace(job, "third-runs")
    job.workspace["stored"] = job.workspace["parsed"] * 10
