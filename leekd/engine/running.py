"""Which task each worker is running, kept in a small file that outlives a crash of leekd.

A task that kills leekd itself (``os._exit``, a segfault in a C extension) would otherwise be
recovered and run again forever. Each worker writes the id of the task it starts into its own
8-byte slot and zeroes it when done; these are plain ``pwrite`` calls, no fsync, because a
process crash leaves the page cache intact. At the next start, non-zero slots name the tasks
that were running when leekd died. (A power loss may lose the slots; such a crash is rarely
the task's fault.) The file is memory-mapped: a slot update is a store to shared memory,
with no system call and no inode lock for the workers to contend on.

When several tasks were running at a crash, the ledger cannot tell which one did it. Their
ids go to a second region, the suspects, which outlives further crashes: the engine runs
suspects one at a time with nothing beside them, so each either finishes or dies alone,
and only a task that died alone is blamed.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path

_SLOT = struct.Struct("<Q")
MAX_SLOTS = 4096  # workers, including replacements for retired ones, over one run
MAX_SUSPECTS = 4096  # tasks running at a crash, not yet cleared
_SUSPECTS = MAX_SLOTS * _SLOT.size  # where the suspects' region starts
_SIZE = _SUSPECTS + MAX_SUSPECTS * _SLOT.size


class RunningSlots:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != _SIZE:
                os.ftruncate(fd, _SIZE)  # sparse: costs a page per 512 workers touched
            self._map = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def read_dead(self) -> list[int]:
        """Task ids left in the slots by the previous process (read before any worker starts)."""
        return sorted({i for (i,) in _SLOT.iter_unpack(self._map[:_SUSPECTS]) if i})

    def read_suspects(self) -> list[int]:
        """Tasks that were running beside others at an earlier crash, not yet cleared."""
        return sorted({i for (i,) in _SLOT.iter_unpack(self._map[_SUSPECTS:]) if i})

    def set_suspects(self, ids: list[int]) -> None:
        region = b"".join(_SLOT.pack(i) for i in ids[:MAX_SUSPECTS])
        self._map[_SUSPECTS:] = region + bytes(_SIZE - _SUSPECTS - len(region))

    def settle(self, judge: Callable[[list[int], list[int]], list[int]]) -> list[int]:
        """At start: hand the last crash to ``judge`` (dead, suspects -> suspects left), keep
        what it returns as the suspects, and clear the slots for this run."""
        dead, suspects = self.read_dead(), self.read_suspects()
        if dead or suspects:
            suspects = judge(dead, suspects)
        self.clear()
        self.set_suspects(suspects)
        return suspects

    def clear(self) -> None:
        """Zero the running slots (the suspects stay until recovery rewrites them)."""
        self._map[:_SUSPECTS] = bytes(_SUSPECTS)

    def set(self, slot: int, task_id: int) -> None:
        if 0 <= slot < MAX_SLOTS:
            try:
                _SLOT.pack_into(self._map, slot * _SLOT.size, task_id)
            except (ValueError, TypeError):  # TypeError: a closed map, on some Pythons
                pass  # closed at exit while a straggler still ran: nothing left to record

    def close(self) -> None:
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass


def default_path(db_name: str | None, embedded: bool) -> Path:
    """Beside the SQLite file when embedded; else systemd's StateDirectory or the cwd."""
    if embedded and db_name:
        return Path(f"{db_name}.running")
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state or ".") / "leekd.running"
