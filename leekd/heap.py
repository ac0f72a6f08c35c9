"""Handing memory freed at start-up back to the system."""

from __future__ import annotations

import gc


def trim_heap() -> None:
    """Return freed heap pages to the system (glibc only; elsewhere nothing to do)."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
