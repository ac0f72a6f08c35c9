"""``python manage.py leekd run|start|stop|status|restart``: leekd with this project's settings."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

SERVING = ("run", "start", "restart")


class Command(BaseCommand):
    help = (
        "Run or control leekd with this project's settings: run (foreground), start, stop, "
        "status, restart. Options follow the verb; see `manage.py leekd start --help`."
    )
    requires_system_checks: list[str] = []  # `status` and `stop` must work on a broken project

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "args",
            nargs=argparse.REMAINDER,
            metavar="COMMAND [OPTIONS]",
            help="run | start | stop | status | restart, then its options",
        )

    def handle(self, *args: str, **options: Any) -> None:
        from leek.errors import LeekConfigError
        from leekd.cli.options import EX_CONFIG
        from leekd.cli.run import main

        if args and args[0] in SERVING and "-h" not in args and "--help" not in args:
            try:
                _check_migrated()
            except LeekConfigError as exc:
                print(f"leekd: {exc}", file=sys.stderr)
                raise SystemExit(EX_CONFIG) from None
        code = main(list(args), prog=f"{os.path.basename(sys.argv[0])} leekd")
        if code:
            raise SystemExit(code)


def _check_migrated() -> None:
    """Fail before starting when leekd's tables are missing, and leave no connection open."""
    from django.db import connections

    from leekd.bootstrap import check_migrated

    try:
        check_migrated()
    finally:
        connections.close_all()
