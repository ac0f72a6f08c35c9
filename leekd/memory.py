"""Handing freed memory back to the system after start-up, before a long idle."""

from __future__ import annotations

import ctypes
import gc


def trim_heap() -> None:
    """Return freed heap pages to the system (glibc only; elsewhere nothing to do)."""

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
