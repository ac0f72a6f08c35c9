"""The ``leekd`` command: ``run`` in the foreground, and the service verbs of service.py."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from leek.errors import LeekConfigError, LeekError

from . import reload, service
from .options import (
    EX_CONFIG,
    EX_FAILURE,
    EX_OK,
    EX_UNAVAILABLE,
    add_server_options,
    configure_logging,
    prepare,
)

log = logging.getLogger("leekd.cli")


def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    if args.reload and not reload.in_child():
        return reload.run_parent()
    app = prepare(args)
    from ..runner import run

    watcher = reload.Watcher(lambda path: app.request_stop()) if args.reload else None
    if watcher is not None:
        watcher.start()
    try:
        run(app)
    except OSError as exc:
        where = app.config.unix or f"{app.config.host}:{app.config.port}"
        log.error("cannot listen on %s: %s", where, exc.strerror or exc)
        return EX_UNAVAILABLE
    finally:
        if watcher is not None:
            watcher.stop_event.set()
    return reload.RESTART if watcher is not None and watcher.fired else EX_OK


def build_parser(prog: str = "leekd") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="leekd: the leek task queue server. Durable, authenticated, no broker needed.",
        epilog="Without --settings (or DJANGO_SETTINGS_MODULE) leekd keeps its records in an SQLite file.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run in the foreground (for systemd, containers, development)",
        description="Run leekd in the foreground until SIGTERM or SIGINT (a second one stops "
        "at once). Logs go to stderr. Without --settings leekd keeps its records in an "
        "SQLite file and creates its tables itself.",
    )
    add_server_options(run)
    run.add_argument(
        "--reload",
        action="store_true",
        help="development: restart (gracefully) when a Python file leekd loaded changes",
    )
    run.set_defaults(func=cmd_run)
    service.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "leekd") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LeekConfigError as exc:
        print(f"leekd: {exc}", file=sys.stderr)
        return EX_CONFIG
    except LeekError as exc:
        print(f"leekd: {exc}", file=sys.stderr)
        return EX_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
