"""Handing freed memory back to the system: after start-up, before a long idle, and for
every large buffer."""

from __future__ import annotations

import ctypes
import gc
import os


def trim_heap() -> None:
    """Return freed heap pages to the system (glibc only; elsewhere nothing to do)."""

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


LARGE = 1024 * 1024  # bytes: allocations at least this big get pages of their own
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def large_buffers_off_heap() -> None:
    """Give large allocations (payloads of a MiB or more, their frames) pages of their own,
    handed back to the system when freed (glibc only; a ``MALLOC_MMAP_THRESHOLD_`` the
    environment sets wins).

    glibc raises its threshold each time such a block is freed, so later payloads land on
    the heap, whose freed top it keeps: with a backlog of large payloads on disk, each read
    back and freed, leekd's RSS then wandered by tens of MiB from run to run. A fixed
    threshold keeps it at what is held. Allocations below it, every small object of the
    hot path, are not affected.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, LARGE)
    except (OSError, AttributeError):
        pass
