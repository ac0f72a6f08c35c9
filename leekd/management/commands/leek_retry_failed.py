"""``manage.py leek_retry_failed``: queue failed tasks again on the running leekd."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leek.errors import LeekError
from leekd.cli.retry import add_retry_arguments, check_selection, run_retry
from leekd.cli.shell import add_connection_options, connect, describe


class Command(BaseCommand):
    help = (
        "Queue failed tasks again: --all, or by --id, --failure-id, --name, --since. The "
        "failure records stay, linked to their retries; --dry-run only lists them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_retry_arguments(parser)
        add_connection_options(parser, settings=False)

    def handle(self, *args: Any, **options: Any) -> None:
        ns = argparse.Namespace(**options)
        try:
            check_selection(ns)
        except LeekError as exc:
            raise CommandError(str(exc), returncode=2) from None
        try:
            with connect(ns) as client:
                run_retry(client, ns, self.stdout, self.stderr)
        except LeekError as exc:
            raise CommandError(describe(exc), returncode=1) from None
