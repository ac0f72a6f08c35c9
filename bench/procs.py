"""Child processes: started in their own session, measured through /proc, always killed.

Servers run in a new session so that Ctrl-C reaches only the benchmark, which then stops
them (and whatever they forked, such as django-leek's worker) by their process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class BenchError(Exception):
    """Raised when a system under test does not start, answer or finish in time."""


_children: list[subprocess.Popen[bytes]] = []


def spawn(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    pipes: bool = False,
    stderr_to_terminal: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its output appended to ``log``.

    ``pipes``: stdin and stdout are pipes to us; ``stderr_to_terminal``: its stderr (progress,
    tracebacks) is ours.
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=str(cwd),
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else out,
            stderr=None if stderr_to_terminal else out,
            start_new_session=True,
        )
    _children.append(proc)
    return proc


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Ask the process to stop, then kill its whole group; every wait is bounded."""
    if proc.poll() is None:
        _signal_group(proc, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Leftovers (forked workers) and a leader that ignored the signal.
    _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if proc in _children:
        _children.remove(proc)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """``kill -9`` the process group at once (a crash, not a stop)."""
    stop(proc, timeout=0, sig=signal.SIGKILL)


def kill_all() -> None:
    for proc in list(_children):
        kill(proc)


# ---- /proc


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
    found, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used, their reaped children's included.

    Takes the pids (``descendants`` of the server, listed once before the window: scanning
    /proc takes milliseconds, reading a few stat files microseconds). A pid that has gone
    counts zero; a child reaped meanwhile is in its parent's ``cutime``/``cstime``.
    """
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14-17 of proc(5): utime, stime, cutime, cstime (state is field 3).
        ticks += sum(int(f) for f in fields[11:15])
    return ticks / TICKS


def thread_schedules(pids: list[int]) -> dict[int, tuple[int, int]]:
    """Each thread's time on a CPU and time runnable but waiting for one, in nanoseconds
    (``/proc/PID/task/TID/schedstat``); empty where the kernel keeps no such counts."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                run, wait, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            out[int(tid)] = (int(run), int(wait))
    return out


def busiest_thread(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], seconds: float
) -> tuple[float, float] | None:
    """Of the threads in both samples, the one that ran the most between them: the share of
    the ``seconds`` it ran and the share it waited for a CPU, in per cent."""
    spans = [(after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in after if t in before]
    if not spans or seconds <= 0:
        return None
    run, wait = max(spans)
    return run / seconds / 1e7, wait / seconds / 1e7


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of the process tree now (sum of VmRSS)."""
    return sum(_status_kib(p, "VmRSS") for p in descendants(pid)) / 1024


def peak_mib(pid: int) -> float:
    """Peak resident memory of the process tree (sum of each process's VmHWM)."""
    return sum(_status_kib(p, "VmHWM") for p in descendants(pid)) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """True once some process listens on ``port`` (read from /proc, so nothing connects)."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(want) and fields[3] == "0A":
                return True
    return False


def listening_unix(path: Path | str) -> bool:
    """True once some process listens on the Unix-domain socket ``path`` (from /proc; an
    abstract name is written there, and here, as ``@name``)."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return False
    want = str(path)
    for line in lines:
        fields = line.split()
        # Flags 00010000 (__SO_ACCEPTCON): the socket listens.
        if len(fields) >= 8 and fields[7] == want and int(fields[3], 16) & 0x10000:
            return True
    return False


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    interval: float = 0.01,
) -> Any:
    """Poll ``predicate`` until truthy; raise BenchError on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: the process exited with {proc.returncode}{tail(log)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:g}s{tail(log)}")
        time.sleep(interval)


def tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log}:\n" + "\n".join(text)
