"""``leek-retry-failed``: hand failed tasks back to the running leekd.

leekd copies each chosen failure's task into a new queued task linked to the failure
record (``retry_of``), which stays: history is kept. Failures already retried are skipped
unless ``--again``. Work goes in pages (``--batch-size``), with a progress bar on stderr
when there is more than one page.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import leek
from leek.errors import LeekConfigError, LeekError

from ..conf import parse_duration
from .options import positive_int
from .shell import EX_FAILURE, EX_OK, add_connection_options, connect, describe, say

MAX_BATCH = 1000  # leekd's limit per request


def since(text: str) -> str:
    """An ISO time (naive means local time) or an age like 2h / 7d; returned as aware ISO."""
    try:
        ago = parse_duration(text)
    except ValueError:
        pass
    else:
        return (datetime.now(UTC) - timedelta(seconds=ago)).isoformat()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2026-01-31T12:00) nor an age (12h, 7d)"
        ) from None
    return (when if when.tzinfo else when.astimezone()).isoformat()


def batch_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{value} is over the limit of {MAX_BATCH}")
    return value


def add_retry_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which failed tasks (given together, all must match)")
    g.add_argument("--all", action="store_true", help="every failed task")
    g.add_argument(
        "--id",
        dest="task_ids",
        type=positive_int,
        action="append",
        metavar="TASK_ID",
        help="a failed task's id (repeat for more)",
    )
    g.add_argument(
        "--failure-id",
        dest="failure_ids",
        type=positive_int,
        action="append",
        metavar="ID",
        help="a failure record's id, as the admin shows it (repeat for more)",
    )
    g.add_argument(
        "--job",
        dest="job_ids",
        type=positive_int,
        action="append",
        metavar="JOB_ID",
        help="a failed multi-step job: resume it at the step that failed, with the workspace "
        "its last good step saved (repeat for more)",
    )
    g.add_argument(
        "--name", help="the task's callable, e.g. myapp.tasks.send_mail (end with * for a prefix)"
    )
    g.add_argument(
        "--since",
        type=since,
        metavar="WHEN",
        help="failed at or after this time (2026-01-31T12:00, local time) or within this age (12h, 7d)",
    )
    h = p.add_argument_group("how")
    h.add_argument("--again", action="store_true", help="also failures that were retried before")
    h.add_argument(
        "--dry-run", action="store_true", help="list what would be retried, change nothing"
    )
    h.add_argument(
        "--batch-size",
        type=batch_size,
        default=100,
        help=f"failures per request, up to {MAX_BATCH} (default %(default)s)",
    )
    h.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def check_selection(args: argparse.Namespace) -> None:
    chosen = args.task_ids or args.failure_ids or args.name or args.since
    if not chosen and not args.all and not getattr(args, "job_ids", None):
        raise LeekConfigError(
            "say which failed tasks to retry: --all, --id, --failure-id, --name, --since or --job"
        )
    if chosen and args.all:
        raise LeekConfigError("--all cannot be combined with --id, --failure-id, --name or --since")


class ProgressBar:
    """One line on stderr: redrawn in place on a terminal, a line per tenth otherwise."""

    def __init__(self, total: int, stream: TextIO, label: str, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.label = label
        self.width = width
        self.tty = stream.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        done = min(done, self.total)
        tenth = done * 10 // self.total
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        filled = done * self.width // self.total
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {done}/{self.total} {self.label}"
        self.stream.write(f"\r{text}" if self.tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _line(item: dict[str, Any]) -> str:
    head = f"task {item['task_id']} {item['name']}({item['args']})"
    tail = f"failed {item['failed_at'][:19]}: {item['error']}"
    if "new_id" in item:
        return f"{head} -> task {item['new_id']}  [{tail}]"
    return f"{head}  [failure #{item['failure_id']}, {tail}]"


def run_retry(
    client: leek.Client, args: argparse.Namespace, out: TextIO, err: TextIO
) -> dict[str, int]:
    """Retry (or list) the chosen failures page by page; returns the counts."""
    check_selection(args)
    resumed = resume_jobs(client, args, out)
    if not (args.all or args.task_ids or args.failure_ids or args.name or args.since):
        return {"retried": 0, "listed": 0, "already_retried": 0, "jobs": resumed}
    query: dict[str, Any] = {"again": args.again, "dry_run": args.dry_run}
    if args.all:
        query["all"] = True
    if args.task_ids:
        query["task_ids"] = args.task_ids
    if args.failure_ids:
        query["ids"] = args.failure_ids
    if args.name:
        query["name"] = args.name
    if args.since:
        query["since"] = args.since
    cursor, done, total, already = 0, 0, 0, 0
    bar: ProgressBar | None = None
    try:
        while True:
            reply = client.request("retry_failed", **query, cursor=cursor, limit=args.batch_size)
            if cursor == 0:
                total, already = int(reply["total"] or 0), int(reply["already_retried"] or 0)
                if total > args.batch_size and not args.no_progress:
                    label = "listed" if args.dry_run else "retried"
                    bar = ProgressBar(total, err, label)
            for item in reply["tasks"]:
                say(out, _line(item))
            done += len(reply["tasks"])
            if bar is not None:
                bar.update(done)
            if not reply["more"]:
                break
            cursor = reply["cursor"]
            query["until"] = reply["until"]
    finally:
        if bar is not None:
            bar.close()
    skipped = f" ({already} already retried: add --again to include them)" if already else ""
    if not done:
        say(out, f"nothing to retry: no failed task matches{skipped}")
    elif args.dry_run:
        say(out, f"{done} failed task(s) would be retried{skipped}")
    else:
        say(out, f"{done} failed task(s) queued again{skipped}")
    return {"retried": 0 if args.dry_run else done, "listed": done, "already_retried": already}


def resume_jobs(client: leek.Client, args: argparse.Namespace, out: TextIO) -> int:
    """Resume each failed job of ``--job`` at its failed step; returns how many."""
    done = 0
    for job_id in getattr(args, "job_ids", None) or ():
        if args.dry_run:
            row = client.request("job", id=job_id)
            if row["state"] == "failed":
                say(out, f"job {job_id} {row['name']} would be resumed at step {row['step'] + 1}")
            else:
                say(out, f"job {job_id} {row['name']} is {row['state']}: nothing to resume")
            continue
        reply = client.request("resume_job", id=job_id)
        say(out, f"job {job_id} resumed at step {reply['step'] + 1} as task {reply['task_id']}")
        done += 1
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leek-retry-failed",
        description="Queue failed tasks again on the running leekd. The failure records stay, "
        "each linked to its retry.",
        epilog="Exit status: 0 done (also when nothing matched), 1 leekd unreachable or it "
        "refused, 2 bad usage.",
    )
    add_connection_options(parser)
    add_retry_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_selection(args)
    except LeekConfigError as exc:
        parser.error(str(exc))
    try:
        with connect(args) as client:
            run_retry(client, args, sys.stdout, sys.stderr)
    except LeekError as exc:
        print(f"leek-retry-failed: {describe(exc)}", file=sys.stderr)
        return EX_FAILURE
    except KeyboardInterrupt:
        print("leek-retry-failed: interrupted; what was queued stays queued", file=sys.stderr)
        return 130
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
