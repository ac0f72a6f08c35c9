"""``leekd start``'s two halves: the parent waits on a pipe, the daemon serves.

``start`` forks before anything else exists (threads, event loop, database connections),
and the daemon sets Django up only afterwards. The parent waits on a pipe until the daemon
answers ping or reports why it could not start, so its exit status means something.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import Any

from leek.errors import LeekConfigError

from .options import (
    EX_ALREADY_RUNNING,
    EX_CONFIG,
    EX_FAILURE,
    EX_OK,
    EX_UNAVAILABLE,
    configure_logging,
    prepare,
)
from .pidfile import AlreadyRunning, PidFile
from .ping import TLS_SUFFIX, ping

log = logging.getLogger("leekd.service")


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


def spawn(args: argparse.Namespace, pidfile: Path, logf: Any, logfile: Path) -> int:
    """Fork the daemon, logging to ``logf``; wait until it is ready or says why not."""
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
    from ..runner import run

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
