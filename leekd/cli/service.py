"""leekd as a classic service: ``start`` (daemonize), ``stop``, ``status``, ``restart``.

The daemon's side lives in daemon.py, the pidfile in pidfile.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from leek.errors import LeekConfigError, LeekError

from .daemon import spawn
from .options import (
    EX_ALREADY_RUNNING,
    EX_CONFIG,
    EX_FAILURE,
    EX_NOT_RUNNING,
    EX_OK,
    EX_STOP_TIMEOUT,
    EX_UNAVAILABLE,
    add_server_options,
    load_client_settings,
    seconds,
)
from .pidfile import PidInfo, alive, probe, remove_stale
from .ping import ping

DEFAULT_PIDFILE = "leekd.pid"
DEFAULT_LOGFILE = "leekd.log"
DEFAULT_START_WAIT = 60.0
DEFAULT_STOP_TIMEOUT = 60.0  # above the default grace (30 s) plus the final database writes


# ---- start


def cmd_start(args: argparse.Namespace) -> int:
    pidfile = Path(args.pidfile).absolute()
    logfile = Path(args.logfile).absolute()
    info = probe(pidfile)
    if info is not None and info.running:
        where = f", listening on {info.address}" if info.address else ""
        print(
            f"leekd: already running (pid {info.pid}{where}; pidfile {pidfile}). "
            "Use `leekd restart` to restart it.",
            file=sys.stderr,
        )
        return EX_ALREADY_RUNNING
    if info is not None:
        print(f"leekd: replacing stale pidfile {pidfile} ({info.stale_reason})", file=sys.stderr)
    try:
        logf = open(logfile, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept by the daemon
    except OSError as exc:
        print(f"leekd: cannot open the log file {logfile}: {exc.strerror}", file=sys.stderr)
        return EX_CONFIG
    return spawn(args, pidfile, logf, logfile)


# ---- stop, status, restart


def _not_running(info: PidInfo | None, pidfile: Path) -> str:
    if info is None:
        return f"leekd is not running (no pidfile {pidfile})"
    return f"leekd is not running (stale pidfile {pidfile}: {info.stale_reason})"


def stop(pidfile: Path, timeout: float) -> int:
    info = probe(pidfile)
    if info is None or not info.running:
        print(_not_running(info, pidfile), file=sys.stderr)
        if info is not None:
            remove_stale(pidfile)
        return EX_NOT_RUNNING
    pid = info.pid
    if pid is None:  # the daemon has locked the file but not written its pid yet
        pid = _wait_for_pid(pidfile)
    if pid is None:
        print(f"leekd: {pidfile} is locked but holds no pid; try again", file=sys.stderr)
        return EX_FAILURE
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:
        print(f"leekd: not allowed to signal pid {pid} (another user's?)", file=sys.stderr)
        return EX_FAILURE
    print(f"leekd: stopping pid {pid} (running tasks may take up to the grace period)")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _gone(pidfile, pid):
            print(f"leekd stopped (pid {pid}, {time.monotonic() - t0:.1f}s)")
            return EX_OK
        time.sleep(0.05)
    print(
        f"leekd: pid {pid} did not stop within {timeout:g}s; it may still be finishing tasks. "
        "Run `leekd stop` again to stop it now (its running tasks stay queued and run after "
        "the next start).",
        file=sys.stderr,
    )
    return EX_STOP_TIMEOUT


def _wait_for_pid(pidfile: Path, timeout: float = 2.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = probe(pidfile)
        if info is None or info.pid is not None:
            return info.pid if info else None
        time.sleep(0.02)
    return None


def _gone(pidfile: Path, pid: int) -> bool:
    try:
        info = probe(pidfile)
    except LeekConfigError:
        info = None
    return not (info is not None and info.running and info.pid == pid) and not alive(pid)


def cmd_stop(args: argparse.Namespace) -> int:
    return stop(Path(args.pidfile).absolute(), args.stop_timeout)


def cmd_restart(args: argparse.Namespace) -> int:
    code = stop(Path(args.pidfile).absolute(), args.stop_timeout)
    if code not in (EX_OK, EX_NOT_RUNNING):
        return code
    return cmd_start(args)


def cmd_status(args: argparse.Namespace) -> int:
    pidfile = Path(args.pidfile).absolute()
    info = probe(pidfile)
    if info is None or not info.running:
        print(_not_running(info, pidfile))
        return EX_NOT_RUNNING
    if not info.address:
        print(f"leekd is starting: pid {info.pid}, not listening yet (pidfile {pidfile})")
        return EX_UNAVAILABLE
    print(f"leekd is running: pid {info.pid}, listening on {info.address} (pidfile {pidfile})")
    _load_settings(args.settings)
    try:
        p = ping(info.address)
    except LeekError as exc:
        print(f"ping: no answer: {exc}")
        return EX_UNAVAILABLE
    other = f", answered by pid {p.get('pid')}" if p.get("pid") != info.pid else ""
    print(
        f"ping: {p.get('status')}, {p.get('workers')} workers ({p.get('busy')} busy), "
        f"{p.get('waiting')} waiting, up {_uptime(p.get('uptime') or 0)}, "
        f"database {p.get('database')}, leek {p.get('version')}{other}"
    )
    return EX_OK


def _load_settings(module: str | None) -> None:
    """Load the project's settings, so the secret derived from its SECRET_KEY is found."""
    load_client_settings(module)


def _uptime(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


# ---- the parser


def _pidfile_option(p: Any) -> None:
    p.add_argument(
        "--pidfile",
        default=os.environ.get("LEEK_PIDFILE") or DEFAULT_PIDFILE,
        help="pidfile, locked while leekd runs (env LEEK_PIDFILE; default ./%(default)s)",
    )


def _start_options(p: argparse.ArgumentParser) -> None:
    add_server_options(p)
    g = p.add_argument_group("service")
    _pidfile_option(g)
    g.add_argument(
        "--logfile",
        default=os.environ.get("LEEK_LOGFILE") or DEFAULT_LOGFILE,
        help="where the daemon logs (env LEEK_LOGFILE; default ./%(default)s)",
    )
    g.add_argument(
        "--wait",
        metavar="S",
        type=seconds,
        default=DEFAULT_START_WAIT,
        help="seconds to wait until leekd answers ping (default %(default)g)",
    )


def _timeout_option(p: argparse.ArgumentParser, flag: str = "--timeout") -> None:
    p.add_argument(
        flag,
        dest="stop_timeout",
        metavar="S",
        type=seconds,
        default=DEFAULT_STOP_TIMEOUT,
        help="seconds to wait for the process to exit; keep it above --grace (default %(default)g)",
    )


EXIT_CODES = """\
exit status:
  0   done: started (answers ping), stopped, or running (status)
  1   failed: see the message (and the log file for start)
  2   usage error
  3   not running (stop, status)
  4   already running (start)
  5   did not stop within --timeout (stop; run it again to stop now)
  69  cannot listen (start), or running but not answering ping (status)
  78  configuration error (settings, pidfile, log file)
"""


def _verb(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_commands(sub: Any) -> None:
    """The service verbs, next to ``run`` in ``leekd``'s parser."""
    start = _verb(
        sub,
        "start",
        "start in the background (daemon, pidfile, log file)",
        "Start leekd as a daemon. Returns once it answers ping (exit 0), or with the\n"
        "reason it could not start. Same options as `run`, plus the service ones.",
    )
    _start_options(start)
    start.set_defaults(func=cmd_start)

    stop_p = _verb(
        sub,
        "stop",
        "stop the daemon: running tasks finish, waiting ones stay queued",
        "Send SIGTERM and wait until leekd has exited. Running tasks get the grace period\n"
        "to finish; tasks not started stay queued in the database for the next start.",
    )
    _pidfile_option(stop_p)
    _timeout_option(stop_p)
    stop_p.set_defaults(func=cmd_stop)

    status = _verb(
        sub,
        "status",
        "show the daemon's pid, address and ping (exit 0 only when it answers)",
        "Show the pid and address from the pidfile, and ping leekd there.",
    )
    _pidfile_option(status)
    status.add_argument(
        "--settings", help="Django settings module, when the secret comes from its SECRET_KEY"
    )
    status.set_defaults(func=cmd_status)

    restart = _verb(
        sub,
        "restart",
        "stop (if running), then start with the given options",
        "Stop leekd if it runs (as `stop`), then start it (as `start`).",
    )
    _start_options(restart)
    _timeout_option(restart, "--stop-timeout")  # --timeout is the per-task time limit here
    restart.set_defaults(func=cmd_restart)
