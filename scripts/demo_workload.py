"""The demo's tasks and the steps scripts/demo runs with them.

Tasks live in this importable module so leekd loads them by reference, as a project's
``tasks.py`` would be.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import leek


def make_thumbnail(source: str, out_dir: str, size: int = 128) -> str:
    """Stand-in for real work: read a file, write a derived one."""
    data = Path(source).read_bytes()  # FileNotFoundError when the upload is missing
    digest = hashlib.sha256(data + str(size).encode()).hexdigest()
    target = Path(out_dir) / f"{Path(source).stem}-{size}.txt"
    target.write_text(digest)
    return str(target)


def bar(done: int, total: int, label: str, width: int = 32) -> None:
    if done < total and done % max(total // 50, 1):
        return  # redraw about fifty times in all
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def push(base: Path, count: int) -> int:
    """Push ``count`` thumbnail tasks (one of them for a missing upload); returns its id."""
    import demo_workload  # by reference, as leekd will import it, not this script's __main__

    task = demo_workload.make_thumbnail
    uploads, thumbs = base / "uploads", base / "thumbs"
    uploads.mkdir(exist_ok=True)
    thumbs.mkdir(exist_ok=True)
    missing = count // 2
    bad_id = 0
    for i in range(count):
        source = uploads / f"photo{i}.jpg"
        if i != missing:
            source.write_bytes(f"pixels of photo {i}".encode())
        else:
            source.unlink(missing_ok=True)
        task_id = leek.push(task, args=(str(source), str(thumbs)), max_retries=2)
        if i == missing:
            bad_id = task_id
        bar(i + 1, count, "pushing")
    return bad_id


def wait_handled(count: int, timeout: float = 120.0) -> None:
    client = leek.get_client()
    deadline = time.monotonic() + timeout
    while (done := client.handled()) < count:
        bar(done, count, "running")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {count} tasks finished in {timeout:.0f}s")
        time.sleep(0.1)
    bar(count, count, "running")


def fix(base: Path, task_id: int) -> None:
    """Put back the upload the failed task was missing."""
    st = leek.get_client().status(task_id)
    number = st["args_preview"].split("photo")[1].split(".")[0]
    (base / "uploads" / f"photo{number}.jpg").write_bytes(b"pixels, uploaded again")


if __name__ == "__main__":
    step, base = sys.argv[1], Path(sys.argv[2])
    if step == "push":
        print(push(base, int(sys.argv[3])))
    elif step == "wait":
        wait_handled(int(sys.argv[3]))
    elif step == "fix":
        fix(base, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown step {step!r}")
