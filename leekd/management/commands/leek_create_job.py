"""``manage.py leek_create_job NAME``: start a multi-step job on the running leekd."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import leek
from leek.errors import LeekError
from leekd.cli.shell import add_connection_options, connect, describe


def workspace(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--workspace is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('--workspace must be a JSON object, e.g. {"url": "…"}')
    return value


class Command(BaseCommand):
    help = (
        "Create a multi-step job (a key of settings.LEEK['jobs']) with an optional JSON "
        "workspace; prints its id once leekd has recorded it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the job's name in settings.LEEK['jobs']")
        parser.add_argument(
            "--workspace", type=workspace, default={}, help="the job's workspace, a JSON object"
        )
        parser.add_argument("--queue", default="default", help="queue its steps run on")
        add_connection_options(parser, settings=False)

    def handle(self, *args: Any, **options: Any) -> None:
        ns = argparse.Namespace(**options)
        try:
            with connect(ns) as client:
                job_id = leek.create_job(ns.name, ns.workspace, queue=ns.queue, client=client)
        except LeekError as exc:
            raise CommandError(describe(exc), returncode=1) from None
        self.stdout.write(f"job {job_id} {ns.name} created")
