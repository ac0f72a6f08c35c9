"""A management command a periodic schedule runs in the tests: it leaves a line in a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Append a line to DIR/NAME (tests only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--word", default="ran")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(os.environ["LEEK_TEST_DIR"])
        with open(directory / options["name"], "a") as f:
            f.write(f"{options['word']} {os.getpid()}\n")
