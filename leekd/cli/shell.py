"""``leek-shell``: ask a running leekd how it is, look up or cancel a task, purge old records.

A plain client over ``leek.Client``: it never loads Django models, so it runs wherever the
secret is at hand (LEEK_SECRET, leekd's key file, or a Django project's settings through
``--settings`` / DJANGO_SETTINGS_MODULE). Exit status: 0 done, 1 leekd unreachable or it
refused, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import leek
from leek.errors import (
    LeekAuthError,
    LeekConfigError,
    LeekConnectionError,
    LeekError,
    LeekRejected,
)

from ..conf import format_duration
from .flow import cmd_job, cmd_schedule
from .nodes import cmd_nodes
from .options import (
    duration,
    load_client_settings,
    port_number,
    positive_int,
    positive_seconds,
    say,
    seconds,
)
from .stats import cmd_stats
from .top import cmd_top

EX_OK = 0
EX_FAILURE = 1  # unreachable, refused, or not configured
EX_USAGE = 2


def add_connection_options(p: argparse.ArgumentParser, *, settings: bool = True) -> None:
    g = p.add_argument_group("connection")
    g.add_argument(
        "--host", help="leekd's address (env LEEK_HOST, settings.LEEK; default 127.0.0.1)"
    )
    g.add_argument(
        "--port", type=port_number, help="leekd's port (env LEEK_PORT, settings.LEEK; default 8002)"
    )
    g.add_argument(
        "--unix", metavar="PATH", help="leekd's Unix socket instead of TCP (env LEEK_UNIX)"
    )
    g.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="connect with TLS, checking leekd's certificate (env LEEK_TLS)",
    )
    g.add_argument(
        "--tls-ca", metavar="FILE", help="CA file for leekd's certificate (env LEEK_TLS_CA)"
    )
    g.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        help="seconds to wait for each answer (default %(default)g)",
    )
    if settings:  # manage.py has its own --settings
        g.add_argument(
            "--settings",
            help="Django settings module to take the secret and address from "
            "(default: DJANGO_SETTINGS_MODULE if set)",
        )


def connect(args: argparse.Namespace) -> leek.Client:
    load_client_settings(getattr(args, "settings", None))
    return leek.Client(
        args.host,
        args.port,
        timeout=args.timeout,
        unix=getattr(args, "unix", None),
        tls=getattr(args, "tls", None),
        tls_ca=getattr(args, "tls_ca", None),
    )


def describe(exc: LeekError) -> str:
    """Says which: leekd could not be reached, or it answered and refused."""
    if isinstance(exc, LeekConnectionError):
        return f"unreachable: {exc}"
    if isinstance(exc, LeekAuthError):
        return f"refused (authentication): {exc}"
    if isinstance(exc, LeekRejected):
        return f"refused ({exc.code.replace('_', ' ')}): {exc}"
    if isinstance(exc, LeekConfigError):
        return f"not configured: {exc}"
    return f"failed: {exc}"


# ---------------------------------------------------------------- commands


def cmd_ping(client: leek.Client, args: argparse.Namespace, out: TextIO) -> int:
    """Exits 1 unless leekd can record pushes now (status "ok")."""
    info = client.ping()
    code = EX_OK if info.get("status") == "ok" else EX_FAILURE
    if args.json:
        say(out, json.dumps(info, indent=2))
        return code
    line = (
        f"{info['status']}: leekd {info.get('version', '?')} at {client.address} "
        f"(pid {info.get('pid', '?')}), up {format_duration(info.get('uptime', 0))}, "
        f"workers {info.get('busy', 0)}/{info.get('workers', 0)} busy, "
        f"{info.get('waiting', 0)} waiting"
    )
    if info.get("database", "ok") != "ok":
        line += f"; database: {info['database']}"
    say(out, line)
    return code


def cmd_waiting(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    say(out, str(client.waiting()))


def cmd_handled(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    say(out, str(client.handled()))


def cmd_status(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    row = client.status(args.id)
    if args.json:
        say(out, json.dumps(row, indent=2))
        return
    say(out, f"task {row['id']}: {row['name']}({row.get('args_preview', '')})")
    state = row.get("state")
    if state == "scheduled":
        state = f"scheduled for {row.get('run_at')}"
    fields: list[tuple[str, Any]] = [
        ("state", state),
        ("queue", row.get("queue")),
        ("priority", row.get("priority") or None),
        ("attempts", row.get("attempts")),
        ("enqueued", row.get("enqueued_at")),
        ("finished", row.get("finished_at")),
    ]
    if row.get("duration") is not None:
        fields.append(("duration", f"{row['duration'] * 1000:.1f} ms"))
    if row.get("retry_of_id"):
        fields.append(("retry of", f"failure #{row['retry_of_id']}"))
    if row.get("failure_id"):
        fields.append(("failure", f"#{row['failure_id']} (leek-retry-failed --id {row['id']})"))
    if row.get("error"):
        fields.append(("error", row["error"]))
    for label, value in fields:
        if value is not None:
            say(out, f"  {label:<9} {value}")
    if row.get("traceback"):
        say(out, "  traceback:")
        for line in row["traceback"].rstrip().splitlines():
            say(out, f"    {line}")


def cmd_cancel(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    reply = client.cancel(args.id)
    if args.json:
        say(out, json.dumps(reply))
    else:
        say(out, f"task {args.id} cancelled: it will not run")


def add_purge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--succeeded", action="store_true", help="purge tasks that succeeded")
    p.add_argument("--failed", action="store_true", help="purge tasks that failed")
    p.add_argument(
        "--cancelled", action="store_true", help="purge cancelled tasks (aged from their push)"
    )
    p.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="only tasks that finished longer ago than this: 45s, 30m, 12h, 7d, 1w",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")


def run_purge(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    """Ask leekd to purge, again and again while it says more is left; prints counts."""
    states = [s for s in ("succeeded", "failed", "cancelled") if getattr(args, s, False)]
    if not states:
        raise LeekConfigError("say what to purge: --succeeded, --failed and/or --cancelled")
    counts = dict.fromkeys(states, 0)
    jobs = 0
    while True:
        reply = client.request(
            "purge", states=states, older_than=args.older_than, dry_run=args.dry_run
        )
        for s in states:
            counts[s] += int(reply.get(s, 0))
        jobs += int(reply.get("jobs", 0))
        if not reply.get("more"):
            break
    if getattr(args, "json", False):
        say(
            out,
            json.dumps(
                {**counts, "jobs": jobs, "dry_run": args.dry_run, "older_than": args.older_than}
            ),
        )
        return
    age = format_duration(args.older_than)
    what = " and ".join(f"{counts[s]} {s}" for s in states)
    what += f" task record(s) and {jobs} job(s)" if jobs else " task record(s)"
    if not any(counts.values()) and not jobs:
        say(out, f"nothing to purge: no {' or '.join(states)} tasks finished more than {age} ago")
    elif args.dry_run:
        say(out, f"would delete {what} finished more than {age} ago")
    else:
        say(out, f"deleted {what} finished more than {age} ago")


def cmd_purge(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    run_purge(client, args, out)


def cmd_drain(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    reply = client.request("drain")
    if args.json:
        say(out, json.dumps(reply))
    elif reply.get("already"):
        say(out, f"leekd (pid {reply.get('pid')}) is already stopping")
    else:
        say(
            out,
            f"leekd (pid {reply.get('pid')}) is stopping: no new tasks, running ones finish "
            "within its grace period, waiting ones stay queued",
        )


# ---------------------------------------------------------------- entry point


def failure_count(text: str) -> int:
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{value} is more than 100")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leek-shell",
        description="Ask a running leekd how it is, watch it live, look up a task, purge old "
        "records.",
        epilog="Exit status: 0 done, 1 leekd unreachable or it refused, 2 bad usage.",
    )
    add_connection_options(parser)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help: str, parents: Sequence[Any] = ()) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=list(parents))
        p.set_defaults(func=func)
        return p

    command(
        "ping", cmd_ping, "one line on leekd's health: status, version, uptime, workers", [as_json]
    )
    command("waiting", cmd_waiting, "the number of tasks queued and not yet started")
    command("handled", cmd_handled, "the number of tasks finished since leekd started")
    command("stats", cmd_stats, "counters per queue, workers and database", [as_json])
    command(
        "nodes",
        cmd_nodes,
        "every leekd on this PostgreSQL: address, heartbeat age, lease, waiting and running",
        [as_json],
    )
    status = command("status", cmd_status, "one task's state, error and traceback", [as_json])
    status.add_argument("id", type=positive_int, help="the task id")
    cancel = command(
        "cancel",
        cmd_cancel,
        "cancel a task that has not started (refused for a running or finished one)",
        [as_json],
    )
    cancel.add_argument("id", type=positive_int, help="the task id")
    command(
        "schedule",
        cmd_schedule,
        "every periodic schedule with its last and next run and its last task",
        [as_json],
    )
    job = command("job", cmd_job, "a multi-step job's state, step, workspace and error", [as_json])
    job.add_argument("id", type=positive_int, help="the job id")
    purge = command(
        "purge", cmd_purge, "delete records of tasks that finished long enough ago", [as_json]
    )
    add_purge_arguments(purge)
    top = command(
        "top", cmd_top, "a live view: queues, rates, busy workers, latest failures (q quits)"
    )
    top.add_argument(
        "--interval",
        type=positive_seconds,
        default=1.0,
        help="seconds between refreshes (default %(default)g)",
    )
    top.add_argument(
        "--failures",
        type=failure_count,
        default=5,
        help="latest failures shown, 1 to 100 (default %(default)d)",
    )
    command(
        "drain",
        cmd_drain,
        "stop leekd gracefully, as SIGTERM does (running tasks finish, waiting ones stay queued)",
        [as_json],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with connect(args) as client:
            code = args.func(client, args, sys.stdout)
    except LeekError as exc:
        print(f"leek-shell: {describe(exc)}", file=sys.stderr)
        return EX_FAILURE
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else EX_OK


if __name__ == "__main__":
    sys.exit(main())
