"""Which task each worker is running, kept in a small file that outlives a crash of leekd.

A task that kills leekd itself (``os._exit``, a segfault in a C extension) would otherwise be
recovered and run again forever. Each worker writes the id of the task it starts into its own
8-byte slot and zeroes it when done; these are plain ``pwrite`` calls, no fsync, because a
process crash leaves the page cache intact. At the next start, non-zero slots name the tasks
that were running when leekd died. (A power loss may lose the slots; such a crash is rarely
the task's fault.)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_SLOT = struct.Struct("<Q")
MAX_SLOTS = 65536


class RunningSlots:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def read_dead(self) -> list[int]:
        """Task ids left in the slots by the previous process (read before any worker starts)."""
        size = min(os.fstat(self._fd).st_size, MAX_SLOTS * _SLOT.size)
        data = os.pread(self._fd, size, 0)
        ids = [i for (i,) in _SLOT.iter_unpack(data[: len(data) - len(data) % _SLOT.size]) if i]
        return sorted(set(ids))

    def clear(self) -> None:
        os.ftruncate(self._fd, 0)

    def set(self, slot: int, task_id: int) -> None:
        if 0 <= slot < MAX_SLOTS:
            os.pwrite(self._fd, _SLOT.pack(task_id), slot * _SLOT.size)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def default_path(db_name: str | None, embedded: bool) -> Path:
    """Beside the SQLite file when embedded; else systemd's StateDirectory or the cwd."""
    if embedded and db_name:
        return Path(f"{db_name}.running")
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state or ".") / "leekd.running"
