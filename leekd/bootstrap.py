"""Getting Django ready for leekd: the project's settings, or built-in ones on SQLite.

With no Django project, leekd configures itself with an SQLite file in WAL mode
(``synchronous=NORMAL``: a commit survives a crash of leekd; a power loss may undo the last
commits, see the README) and applies its own migrations.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from leek.errors import LeekConfigError


def embedded_settings(
    db_path: str | os.PathLike[str], *, synchronous: str = "NORMAL"
) -> dict[str, Any]:
    if synchronous not in ("NORMAL", "FULL"):
        raise LeekConfigError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    return {
        "DEBUG": False,
        "SECRET_KEY": secrets.token_urlsafe(40),
        "LEEK_EMBEDDED": True,  # tells leek.conf not to derive the secret from this key
        "INSTALLED_APPS": ["leekd"],
        "DATABASES": {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(Path(db_path).resolve()),
                "OPTIONS": {
                    "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous};",
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 5,
                },
            }
        },
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "LOGGING_CONFIG": None,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
    }


def configure_embedded(
    db_path: str | os.PathLike[str],
    *,
    migrate: bool = True,
    synchronous: str = "NORMAL",
    migrate_in_child: bool = False,
) -> None:
    """Built-in settings on an SQLite file; ``migrate_in_child`` keeps a daemon lean.

    Django's migration machinery stays in memory once imported (about 2 MiB), so the
    daemon runs a first-time migration in a short-lived child process instead.
    """
    from django.conf import settings

    check_writable(Path(db_path).resolve())
    settings.configure(**embedded_settings(db_path, synchronous=synchronous))
    _load_apps()
    if not migrate or _migrations_recorded():
        return
    if migrate_in_child:
        _migrate_in_child(db_path, synchronous)
    else:
        apply_migrations()


def _load_apps() -> None:
    """``django.setup()`` for the built-in settings, without what they leave unused.

    Besides loading the apps, ``setup()`` imports ``django.urls`` to set the main thread's
    script prefix, which only URL reversing reads (these settings have no URLs, and "/" is
    its default anyway), and ``django.utils.log`` to apply ``LOGGING_CONFIG``, which these
    settings leave unset. With what those two import in turn (``django.http``, the mail
    machinery), that was 2 MiB of the daemon's resident memory for its whole life.
    """
    from django.apps import apps
    from django.conf import settings

    apps.populate(settings.INSTALLED_APPS)


def check_writable(path: Path) -> None:
    """SQLite in WAL mode writes beside its file: refuse a directory leekd cannot write to."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeekConfigError(
            f"cannot create {path.parent}: {exc.strerror or exc}; pass --db PATH (or LEEK_DB)"
        ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only_fs(path.parent) else "permission denied"
        raise LeekConfigError(
            f"cannot create {path.name} in {path.parent}: {why}; pass --db PATH (or LEEK_DB) "
            "in a directory leekd may write to"
        )


def _read_only_fs(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _migrate_in_child(db_path: str | os.PathLike[str], synchronous: str) -> None:
    code = (
        "import sys; from leekd.bootstrap import configure_embedded; "
        "configure_embedded(sys.argv[1], synchronous=sys.argv[2])"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(db_path), synchronous],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LeekConfigError(f"could not create leekd's tables in {db_path}: {exc}") from None
    if out.returncode:
        raise LeekConfigError(
            f"could not create leekd's tables in {db_path}:\n{out.stderr.strip()[-2000:]}"
        )


def apply_migrations() -> None:
    """Migrate leekd's tables, unless every shipped migration is already recorded.

    The check is one query; loading Django's migration machinery only to find nothing to do
    would cost the daemon several MiB of memory for its whole life.
    """
    if _migrations_recorded():
        return
    from django.core.management import call_command

    call_command("migrate", "leekd", verbosity=0, interactive=False)


def _migrations_recorded() -> bool:
    from django.db import DatabaseError, connection

    shipped = {p.stem for p in (Path(__file__).parent / "migrations").glob("[0-9]*.py")}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT name FROM django_migrations WHERE app = %s", ["leekd"])
            recorded = {row[0] for row in cur.fetchall()}
    except DatabaseError as exc:
        if _no_such_table(exc, connection):
            return False  # a new database: no django_migrations table yet
        # The tables may well exist: say what stopped us reading them (full disk, I/O error).
        raise LeekConfigError(
            f"cannot open leekd's database {connection.settings_dict.get('NAME')}: {exc}"
        ) from None
    finally:
        connection.close()
    return shipped <= recorded


def _no_such_table(exc: Exception, connection: Any) -> bool:
    """True if ``exc`` says the table is missing (and nothing else went wrong)."""
    text = str(exc).lower()
    if connection.vendor == "sqlite":
        return "no such table" in text
    return "does not exist" in text or "doesn't exist" in text


def configure_project(settings_module: str) -> None:
    """Use the project's settings; its database must already have leekd's tables."""
    import django
    from django.conf import settings

    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    cwd_on_path()  # as manage.py: the project directory (where leekd starts) is importable
    try:
        django.setup()
    except ImportError as exc:
        raise LeekConfigError(
            f"cannot import the Django settings {settings_module!r}: {exc}"
        ) from None
    if "leekd" not in settings.INSTALLED_APPS and not any(
        a.startswith("leekd.") for a in settings.INSTALLED_APPS
    ):
        raise LeekConfigError(
            f"add 'leekd' to INSTALLED_APPS in {settings_module}, then run `python manage.py migrate`"
        )
    check_migrated()


def check_migrated() -> None:
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    targets = [key for key in executor.loader.graph.leaf_nodes() if key[0] == "leekd"]
    plan = executor.migration_plan(targets)
    if plan:
        raise LeekConfigError(
            f"leekd's tables are not up to date ({len(plan)} migration(s) not applied); "
            "run `python manage.py migrate leekd`"
        )


def cwd_on_path() -> None:
    """As ``python -m`` and manage.py do: modules in the current directory are importable."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def setup(settings_module: str | None, db_path: str | None) -> str:
    """Configure Django for leekd; returns "project" or "embedded"."""
    from django.conf import settings

    cwd_on_path()  # tasks in the directory leekd runs in, standalone too

    if settings.configured:
        return "embedded" if getattr(settings, "LEEK_EMBEDDED", False) else "project"
    module = settings_module or os.environ.get("DJANGO_SETTINGS_MODULE")
    if module:
        configure_project(module)
        return "project"
    sync = os.environ.get("LEEK_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    configure_embedded(
        db_path or os.environ.get("LEEK_DB") or "leek.sqlite3",
        synchronous=sync,
        migrate_in_child=True,
    )
    return "embedded"
