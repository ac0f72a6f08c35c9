"""Raising an exception inside another thread (CPython's ``PyThreadState_SetAsyncExc``)."""

from __future__ import annotations

import ctypes
import threading

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> bool:
    """Schedule ``exc_type`` in ``thread``; it fires when the thread next runs Python code."""
    ident = thread.ident
    if ident is None or not thread.is_alive():
        return False
    return _set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(exc_type)) == 1


def cancel_pending(thread: threading.Thread) -> None:
    """Withdraw an exception scheduled by ``raise_in_thread`` that has not fired yet."""
    if thread.ident is not None:
        _set_async_exc(ctypes.c_ulong(thread.ident), None)
