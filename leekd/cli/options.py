"""What the command-line faces share: exit codes, option types and groups, logging, setup.

Everything here sits below ``run``, ``service``, ``shell`` and ``retry``, so imports within
``leekd.cli`` go one way.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from leek.conf import resolve_secret
from leek.errors import LeekConfigError

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_NOT_RUNNING = 3  # as LSB init scripts: "program is not running" (stop, status)
EX_ALREADY_RUNNING = 4  # start: a live leekd holds the pidfile
EX_STOP_TIMEOUT = 5  # stop: still running after --timeout
EX_UNAVAILABLE = 69  # sysexits: could not bind / server not running
EX_CONFIG = 78  # sysexits: configuration error

log = logging.getLogger("leekd.cli")


def say(out: Any, text: str = "") -> None:
    out.write(text + "\n")  # not print(): Django's OutputWrapper adds its own newline


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def queue_spec(text: str) -> tuple[str, int]:
    """``NAME=N``: a named queue and the size of its worker pool."""
    name, sep, size = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=N (say, mail=1)")
    if len(name) > 100:
        raise argparse.ArgumentTypeError(f"queue name {name[:20]!r}… is over 100 characters")
    return name, positive_int(size.strip())


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..65535 (0 picks a free port)")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 1e8:
        raise argparse.ArgumentTypeError(f"{value} must be a non-negative number of seconds")
    return value


def duration(text: str) -> float:
    """A span like 45s, 30m, 12h, 7d or 1w (a bare number counts seconds)."""
    from ..conf import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--host", help="address to listen on (env LEEK_HOST; default 127.0.0.1)")
    g.add_argument(
        "--port",
        type=port_number,
        help="TCP port, 0 for any free one (env LEEK_PORT; default 8002)",
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        help="worker threads of the default queue (env LEEK_WORKERS; default 4)",
    )
    g.add_argument(
        "--queue",
        dest="queues",
        metavar="NAME=N",
        action="append",
        type=queue_spec,
        help="serve this queue with its own pool of N workers; repeat for each queue "
        "(settings.LEEK['queues']). Pushes to other queues are then refused. Default: none, "
        "every queue shares the default pool",
    )
    g.add_argument(
        "--db",
        help="SQLite file when no Django project is used (env LEEK_DB; default ./leek.sqlite3)",
    )
    g.add_argument(
        "--settings", help="Django settings module of your project (or DJANGO_SETTINGS_MODULE)"
    )
    g.add_argument(
        "--grace", type=seconds, help="seconds running tasks get to finish on stop (default 30)"
    )
    g.add_argument(
        "--max-retries", type=positive_int, help="attempts per task before it is failed (default 3)"
    )
    g.add_argument(
        "--retry-delay", type=seconds, help="first retry backoff in seconds, doubling (default 1)"
    )
    g.add_argument(
        "--time-limit",
        dest="task_timeout",
        metavar="SECONDS",
        type=seconds,
        help="default time limit per task attempt in seconds, 0 for none (default 0)",
    )
    g.add_argument(
        "--max-deaths",
        type=positive_int,
        help="times leekd may die while running one task before it is failed (default 2)",
    )
    g.add_argument(
        "--retention",
        type=duration,
        help="delete finished task records older than this, e.g. 30d, checked hourly "
        "(default 0: keep forever)",
    )
    g.add_argument(
        "--node",
        help="this node's name among several on one PostgreSQL (env LEEK_NODE; default "
        "host name:port)",
    )
    g.add_argument(
        "--lease",
        type=duration,
        help="a node whose heartbeat is older than this is dead and its tasks are taken "
        "over, e.g. 30s (env LEEK_LEASE; default 30s; PostgreSQL only)",
    )
    g.add_argument(
        "--secret",
        help="shared secret; prefer env LEEK_SECRET, as arguments are visible in `ps`",
    )
    g.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics on this port, 0 for any free one; needs "
        "leekd[metrics] (env LEEK_METRICS_PORT; default: off)",
    )
    g.add_argument(
        "--metrics-host",
        metavar="ADDRESS",
        help="address the metrics listen on (env LEEK_METRICS_HOST; default 127.0.0.1)",
    )
    add_listen_options(p)
    g.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default info: one line per task start and end)",
    )


LISTEN_FLAGS = (
    "unix",
    "local_socket",
    "tls_cert",
    "tls_key",
    "max_connections",
    "idle_timeout",
    "handshake_timeout",
)


def add_listen_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transport and limits")
    g.add_argument(
        "--unix",
        metavar="PATH",
        help="listen on this Unix-domain socket (mode 0600) instead of TCP (env LEEK_UNIX)",
    )
    g.add_argument(
        "--no-local-socket",
        dest="local_socket",
        action="store_false",
        default=None,
        help="TCP only: no local socket for clients on this host (on Linux, plain TCP "
        "also listens on an abstract Unix-domain socket that clients in the same network "
        "namespace move to, skipping TCP's loopback path)",
    )
    g.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate chain: serve TLS 1.2+ (env LEEK_TLS_CERT)",
    )
    g.add_argument(
        "--tls-key", metavar="FILE", help="PEM private key of --tls-cert (env LEEK_TLS_KEY)"
    )
    g.add_argument(
        "--max-connections",
        type=positive_int,
        help="connections served at once; more are refused with a clear error (default 1024)",
    )
    g.add_argument(
        "--idle-timeout",
        type=positive_seconds,
        help="close an authenticated connection silent, or stuck inside a frame, this long "
        "(default 600)",
    )
    g.add_argument(
        "--handshake-timeout",
        type=positive_seconds,
        help="close a connection not authenticated this long after it opened (default 10)",
    )


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0 seconds")
    return value


def listen_flags_of(args: argparse.Namespace) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in LISTEN_FLAGS}


def configure_logging(level: str, stream: Any = None, filename: str | None = None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(filename) if filename else logging.StreamHandler(stream or sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("leekd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "host",
        "port",
        "workers",
        "db",
        "grace",
        "max_retries",
        "retry_delay",
        "secret",
        "max_deaths",
        "retention",
        "queues",
        "node",
        "lease",
        "metrics_port",
        "metrics_host",
    )
    flags = {n: getattr(args, n, None) for n in names}
    flags["timeout"] = getattr(args, "task_timeout", None)
    return flags


def prepare(args: argparse.Namespace) -> Any:
    """Set up Django, resolve config and secret, refuse unsafe setups; returns a Leekd."""
    from ..net.accept import raise_open_file_limit

    raise_open_file_limit()  # before anything opens a file: connections need room
    from .. import bootstrap

    mode = bootstrap.setup(args.settings, args.db or os.environ.get("LEEK_DB"))
    from .. import conf
    from ..app import Leekd

    config = conf.resolve({**flags_of(args), **listen_flags_of(args)})
    if config.autodiscover:
        from ..discover import autodiscover

        autodiscover()
    secret = resolve_secret(config.secret, create=True)
    if not config.unix and not config.loopback and not secret.explicit:
        raise LeekConfigError(
            f"refusing to listen on {config.host} without an explicit secret: anyone who can reach "
            f"the port could run code here. Set LEEK_SECRET (or settings.LEEK['secret']) to a long "
            f"random string on leekd and its clients, or listen on 127.0.0.1."
        )
    if not config.unix and not config.loopback and not config.tls_cert:
        log.warning(
            "listening on %s without TLS: frames are authenticated but not encrypted, so task "
            "arguments cross the network in clear; add --tls-cert/--tls-key",
            config.host,
        )
    log.info("database: %s; secret from %s", _db_description(mode), secret.source)
    return Leekd(config, secret.key)


def _db_description(mode: str) -> str:
    from django.db import connection

    name = connection.settings_dict.get("NAME")
    return f"{connection.vendor} {name} ({mode})"


_MANAGE_DEFAULT = re.compile(
    r"""environ\.setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']"""
)


def project_settings(module: str | None) -> str | None:
    """The settings module to use: ``--settings``, DJANGO_SETTINGS_MODULE, or the one
    ``./manage.py`` names, so a command run from the project directory finds it."""
    module = module or os.environ.get("DJANGO_SETTINGS_MODULE")
    if module:
        return module
    try:
        found = _MANAGE_DEFAULT.search(Path("manage.py").read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def load_client_settings(module: str | None) -> None:
    """Load the project's settings (no app setup), so clients find its secret and address.

    As manage.py does: the current directory is importable.
    """
    module = project_settings(module)
    if not module:
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    from django.conf import settings

    try:
        settings.SECRET_KEY  # noqa: B018 - loads the settings module
    except Exception as exc:
        raise LeekConfigError(f"cannot load Django settings {module!r}: {exc}") from None
