"""leekd as a classic service: ``start`` (daemonize), ``stop``, ``status``, ``restart``.

``start`` forks before anything else exists (threads, event loop, database connections),
and the daemon sets Django up only afterwards. The parent waits on a pipe until the daemon
answers ping or reports why it could not start, so its exit status means something.
python-daemon's own pidfile cannot tell a stale pid from a live one, hence ``PidFile``: the
daemon holds an ``flock`` on it for its whole life, so "locked" means "running".
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leek.errors import LeekConfigError, LeekError

from .cli import (
    EX_CONFIG,
    EX_FAILURE,
    EX_OK,
    EX_UNAVAILABLE,
    add_server_options,
    configure_logging,
    prepare,
    seconds,
)

EX_NOT_RUNNING = 3  # as LSB init scripts: "program is not running" (stop, status)
EX_ALREADY_RUNNING = 4  # start: a live leekd holds the pidfile
EX_STOP_TIMEOUT = 5  # stop: still running after --timeout

DEFAULT_PIDFILE = "leekd.pid"
DEFAULT_LOGFILE = "leekd.log"
DEFAULT_START_WAIT = 60.0
DEFAULT_STOP_TIMEOUT = 60.0  # above the default grace (30 s) plus the final database writes

log = logging.getLogger("leekd.service")


# ---- the pidfile


@dataclass(frozen=True)
class PidInfo:
    """What a pidfile says, and whether a live process still holds its lock."""

    path: Path
    pid: int | None
    address: str | None
    running: bool

    @property
    def stale_reason(self) -> str:
        if self.pid is None:
            return "it is empty"
        if _alive(self.pid):
            return f"pid {self.pid} now belongs to another process"
        return f"pid {self.pid} is gone"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet (containers without a real init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _parse(path: Path, text: str) -> tuple[int | None, str | None]:
    """The pid, and the address once leekd listens (a second line, as leekd logs it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None, None
    if not lines[0].isdigit() or int(lines[0]) < 1 or len(lines) > 2:
        shown = text[:60].strip()
        raise LeekConfigError(
            f"{path} is not a leekd pidfile (it holds {shown!r}, not a process id); "
            f"check the --pidfile path, and delete the file if it is a leftover"
        )
    return int(lines[0]), (lines[1] if len(lines) > 1 else None)


def probe(path: Path) -> PidInfo | None:
    """Read a pidfile; None when there is none. Refuses files that hold anything but a pid."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LeekConfigError(f"cannot read the pidfile {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            running = True
        else:
            running = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError as exc:  # a directory, say
        raise LeekConfigError(f"cannot read the pidfile {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    pid, address = _parse(path, text)
    return PidInfo(path, pid, address, running)


class AlreadyRunning(LeekError):
    """Raised when another live leekd holds the pidfile."""


class PidFile:
    """The daemon's pidfile: created, locked and written by the daemon itself, removed on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, patience: float = 0.5) -> None:
        deadline = time.monotonic() + patience
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                # A reader probing the lock holds it for an instant: retry briefly.
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                info = probe(self.path)
                pid = info.pid if info else "?"
                raise AlreadyRunning(
                    f"leekd is already running (pid {pid}, pidfile {self.path})"
                ) from None
            # The previous owner may have unlinked the file between our open and lock.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        self.write()

    def write(self, address: str | None = None) -> None:
        assert self.fd is not None
        data = f"{os.getpid()}\n{address}\n" if address else f"{os.getpid()}\n"
        os.pwrite(self.fd, data.encode(), 0)
        os.ftruncate(self.fd, len(data))

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def remove_stale(path: Path) -> bool:
    """Delete a pidfile no live process holds; False if one took it meanwhile."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
        return True
    except (BlockingIOError, FileNotFoundError):
        return False
    finally:
        os.close(fd)


# ---- start


class Reporter:
    """The daemon's side of the pipe to ``leekd start``: JSON lines, then closed."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self.lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self.fd is None

    def send(self, final: bool = False, **message: Any) -> None:
        with self.lock:
            if self.fd is None:
                return
            try:
                os.write(self.fd, (json.dumps(message) + "\n").encode())
            except OSError:
                pass  # the parent gave up waiting; the log has the story
            if final:
                os.close(self.fd)
                self.fd = None

    def error(self, message: str, code: int) -> None:
        self.send(final=True, error=message, code=code)


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
    _close_db_connections()
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os._exit(_daemonize(args, pidfile, logf, Reporter(write_end)))
    os.close(write_end)
    logf.close()
    try:
        return _await_ready(read_end, pidfile, logfile, args.wait)
    finally:
        os.close(read_end)
        _reap(child)


def _close_db_connections() -> None:
    """A connection must not be shared by two processes: drop any before forking."""
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect the first child, which exits as soon as it has forked the daemon."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)


def _await_ready(fd: int, pidfile: Path, logfile: Path, wait: float) -> int:
    deadline = time.monotonic() + wait
    buffer = b""
    pid: int | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            who = f"leekd (pid {pid})" if pid else "leekd"
            print(
                f"leekd: {who} is not ready after {wait:g}s; it may still be starting "
                f"(check `leekd status`, and the log {logfile})",
                file=sys.stderr,
            )
            return EX_FAILURE
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            print(
                f"leekd: the daemon exited while starting, without saying why; "
                f"see the log {logfile}:\n{_tail(logfile)}",
                file=sys.stderr,
            )
            return EX_FAILURE
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = json.loads(line)
            if "pid" in message:
                pid = message["pid"]
            if "error" in message:
                print(f"leekd: {message['error']}", file=sys.stderr)
                print(f"leekd: not started (log: {logfile})", file=sys.stderr)
                return int(message.get("code") or EX_FAILURE)
            if message.get("ready"):
                print(
                    f"leekd started: pid {message['pid']}, listening on {message['address']}\n"
                    f"  pidfile {pidfile}\n  log     {logfile}"
                )
                return EX_OK


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _daemonize(args: argparse.Namespace, pidfile: Path, logf: Any, report: Reporter) -> int:
    """In the first child: detach (python-daemon forks twice), then serve in the grandchild."""
    try:
        import daemon

        context = daemon.DaemonContext(
            working_directory=os.getcwd(),  # relative --db, key and settings paths keep working
            umask=0o022,
            detach_process=True,  # also when started by init, or `start` would never return
            files_preserve=[logf, report.fd],
            stdout=logf,
            stderr=logf,
        )
        context.open()
    except BaseException as exc:
        report.error(f"cannot daemonize: {exc}", EX_FAILURE)
        return EX_FAILURE
    try:
        return _serve(args, pidfile, logf, report)
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr, logf):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def _serve(args: argparse.Namespace, pidfile: Path, logf: Any, report: Reporter) -> int:
    """In the daemon: take the pidfile, set Django up, serve until SIGTERM."""
    configure_logging(args.log_level, stream=logf)
    lock = PidFile(pidfile)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        report.error(str(exc), EX_ALREADY_RUNNING)
        return EX_ALREADY_RUNNING
    except OSError as exc:
        report.error(f"cannot write the pidfile {pidfile}: {exc.strerror}", EX_CONFIG)
        return EX_CONFIG
    try:
        report.send(pid=os.getpid())
        log.info("daemon started: pid %d, pidfile %s", os.getpid(), pidfile)
        return _prepare_and_run(args, lock, report)
    finally:
        lock.release()


def _prepare_and_run(args: argparse.Namespace, lock: PidFile, report: Reporter) -> int:
    from .runner import run

    try:
        app = prepare(args)
    except LeekConfigError as exc:
        log.error("%s", exc)
        report.error(str(exc), EX_CONFIG)
        return EX_CONFIG
    except BaseException as exc:
        log.exception("leekd could not start")
        report.error(f"leekd could not start: {type(exc).__name__}: {exc}", EX_FAILURE)
        return EX_FAILURE
    try:
        run(app, ready=lambda app: _on_listening(app, lock, report))
    except OSError as exc:
        if report.done:
            log.exception("leekd failed")
            return EX_FAILURE
        message = f"cannot listen on {app.config.host}:{app.config.port}: {exc.strerror or exc}"
        log.error("%s", message)
        report.error(message, EX_UNAVAILABLE)
        return EX_UNAVAILABLE
    except BaseException as exc:
        log.exception("leekd failed")
        report.error(f"leekd failed: {type(exc).__name__}: {exc}", EX_FAILURE)
        return EX_FAILURE
    if not report.done:
        report.error("leekd stopped before it was ready", EX_FAILURE)
        return EX_FAILURE
    return EX_OK


def _on_listening(app: Any, lock: PidFile, report: Reporter) -> None:
    """Called on the event loop: ping ourselves from a thread, then tell the parent."""
    listener = getattr(app, "listener", None)
    address = listener.where if listener is not None else f"{app.config.host}:{app.port}"

    def check() -> None:
        if not address.endswith(TLS_SUFFIX):  # our own address need not match the certificate
            try:
                ping(address, app.secret, timeout=10)
            except Exception as exc:
                log.error("listening on %s but ping failed: %s", address, exc)
                report.error(
                    f"leekd listens on {address} but does not answer ping: {exc}", EX_FAILURE
                )
                app.request_stop()
                return
        lock.write(address)
        report.send(final=True, ready=True, pid=os.getpid(), address=address)

    threading.Thread(target=check, name="leekd-ready", daemon=True).start()


TLS_SUFFIX = " with TLS"


def ping(address: str, secret: str | bytes | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Ping leekd at an address as it logs them: ``HOST:PORT``, ``unix:PATH``, ``… with TLS``."""
    from leek import Client

    options: dict[str, Any] = {"connect_timeout": min(2.0, timeout), "timeout": timeout}
    if address.startswith("unix:"):
        client = Client(secret=secret, unix=address[len("unix:") :], **options)
    else:
        tls = address.endswith(TLS_SUFFIX)
        host, _, port = address.removesuffix(TLS_SUFFIX).rpartition(":")
        if tls:
            options["tls"] = True
        client = Client(_connect_host(host.strip("[]")), int(port), secret, **options)
    with client:
        return client.ping()


def _connect_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


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
    return not (info is not None and info.running and info.pid == pid) and not _alive(pid)


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
    if module:
        os.environ["DJANGO_SETTINGS_MODULE"] = module
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the project directory, as with manage.py
    from django.conf import settings

    try:
        settings.SECRET_KEY  # noqa: B018 - loads the settings module
    except Exception as exc:
        raise LeekConfigError(f"cannot load the Django settings: {exc}") from None


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
