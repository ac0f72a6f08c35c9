"""``python manage.py leek_shell [OPTIONS] ping|waiting|handled|stats|status|purge|drain``.

leek-shell with this project's settings (its secret and address). Every argument goes to
leek-shell's own parser, so its options and ``--help`` are the same here.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Ask the running leekd how it is, look up a task, purge old records: leek-shell with "
        "this project's settings. See `manage.py leek_shell --help`."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        from leekd.cli.shell import main

        code = main(argv[2:])
        if code:
            raise SystemExit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        from leekd.cli.shell import main  # call_command("leek_shell", "ping")

        code = main(list(args))
        if code:
            raise SystemExit(code)
