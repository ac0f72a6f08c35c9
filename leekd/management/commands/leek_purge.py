"""``manage.py leek_purge``: delete old finished task records, through the running leekd."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leek.errors import LeekError
from leekd.cli.shell import (
    add_connection_options,
    add_purge_arguments,
    connect,
    describe,
    run_purge,
)


class Command(BaseCommand):
    help = (
        "Delete the records of tasks that finished (succeeded, failed and/or cancelled) longer ago than "
        "--older-than; unfinished tasks are never touched. leekd does the deleting, in batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_purge_arguments(parser)
        add_connection_options(parser, settings=False)

    def handle(self, *args: Any, **options: Any) -> None:
        ns = argparse.Namespace(**options)
        try:
            with connect(ns) as client:
                run_purge(client, ns, self.stdout)
        except LeekError as exc:
            raise CommandError(describe(exc), returncode=1) from None
