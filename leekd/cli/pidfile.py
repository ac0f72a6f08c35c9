"""leekd's pidfile: python-daemon's own cannot tell a stale pid from a live one.

The daemon holds an ``flock`` on its ``PidFile`` for its whole life, so "locked" means
"running"; ``probe`` reads one without disturbing it.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from leek.errors import LeekConfigError, LeekError


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
        if alive(self.pid):
            return f"pid {self.pid} now belongs to another process"
        return f"pid {self.pid} is gone"


def alive(pid: int) -> bool:
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
