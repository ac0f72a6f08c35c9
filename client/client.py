"""The blocking client: pushes, requests and results over one connection (link.py) per process.

A ``Client`` is thread-safe (one request at a time on its connection), reconnects when leekd
restarted under it, and after ``fork()`` the child opens its own connection instead of
sharing its parent's socket.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from . import link, oncommit
from .errors import LeekError, LeekProtocolError, LeekTimeout
from .link import Link, too_large
from .protocol import Push, Pushed, Reply, Request, TaskRecord
from .records import OPTIONS, Task, batches, make_record, make_records
from .results import SHORT_STEP, STEP, task_id_of, wait_result

_FRAME_BUDGET = 4 * 1024 * 1024  # split push_many into frames of about this size


class Client(Link):
    """A connection to leekd. Arguments override ``LEEK_*`` env vars and ``settings.LEEK``.

    ``unix`` connects to a Unix-domain socket instead of TCP; ``tls=True`` wraps TCP in TLS,
    checking leekd's certificate against ``tls_ca`` (or the system's CAs) and the host name.
    """

    # ---- public API

    def push(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        on_commit: bool | None = None,
        **options: Any,
    ) -> int | None:
        """Queue ``fn(*args, **kwargs)``; returns its id once leekd has committed it.

        Inside ``atomic()`` (with ``on_commit`` true, the default) the push is sent when the
        transaction commits and this returns None: there is no id before the commit.
        """
        if options:
            unknown = set(options) - OPTIONS
            if unknown:
                raise TypeError(
                    f"unknown push options: {', '.join(sorted(unknown))} (a push takes "
                    f"{', '.join(sorted(OPTIONS | {'on_commit'}))}; pass the task's own "
                    "arguments in kwargs)"
                )
        if on_commit is None and isinstance(fn, Task):
            on_commit = fn.options.get("on_commit")
        record = make_record(fn, tuple(args), kwargs, **options)
        if self.deferred(on_commit):
            oncommit.defer(lambda: self.push_records([record]))
            return None
        return self.push_records([record])[0]

    def deferred(self, on_commit: bool | None) -> bool:
        if on_commit is False or (on_commit is None and not self.on_commit):
            return False
        return oncommit.in_atomic_block()

    def push_many(
        self, calls: Iterable[Any], *, on_commit: bool | None = None, **options: Any
    ) -> list[int] | None:
        """Queue many calls in as few round trips as possible.

        Each call is ``fn``, ``(fn, args)`` or ``(fn, args, kwargs)``; ``options`` apply to all.
        Inside ``atomic()`` they are sent at the commit, as ``push`` does, and this returns None.
        """
        records = make_records(calls, **options)
        if self.deferred(on_commit):
            oncommit.defer(lambda: self.push_records(records))
            return None
        return self.push_records(records)

    def push_records(self, records: list[TaskRecord]) -> list[int]:
        if not records:
            return []
        if self.inline is not None:
            return self.inline.push(records)
        for r in records:
            need = len(r.payload) + len(r.name) + len(r.preview) + 64
            if need > self.max_frame - 256:
                raise LeekError(too_large(r.name, need, self.max_frame))
        frames = [Push(b) for b in batches(records, min(_FRAME_BUDGET, self.max_frame // 2))]
        ids: list[int] = []
        try:
            replies = self._roundtrip(frames)
        except LeekTimeout as exc:
            raise LeekTimeout.of_push(exc, [r.key for r in records if r.key]) from None
        for reply in replies:
            if not isinstance(reply, Pushed):
                raise LeekProtocolError(f"expected task ids, got {type(reply).__name__}")
            ids.extend(reply.ids)
        if len(ids) != len(records):
            raise LeekProtocolError(f"pushed {len(records)} tasks but got {len(ids)} ids")
        return ids

    def request(self, op: str, _wait: float = 0.0, **args: Any) -> Any:
        """One request; ``_wait``: seconds leekd may take beyond ``timeout`` to answer."""
        (reply,) = self._roundtrip([Request(op, args)], _wait)
        if not isinstance(reply, Reply):
            raise LeekProtocolError(f"expected a reply, got {type(reply).__name__}")
        return reply.data

    def ping(self) -> dict[str, Any]:
        """leekd's health: status ("ok" or "draining"), version, uptime, workers."""
        return self.request("ping")

    def waiting(self) -> int:
        """Tasks queued and not yet started."""
        return int(self.request("waiting"))

    def handled(self) -> int:
        """Tasks finished (succeeded or failed) since leekd started."""
        return int(self.request("handled"))

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def status(self, task_id: int) -> dict[str, Any]:
        """One task's state: queued, running, succeeded or failed, with attempts and error."""
        return self.request("status", id=task_id_of(task_id))

    def result(self, task_id: int, timeout: float | None = None) -> Any:
        """Wait for the task to finish and return its return value.

        Raises ``LeekTaskFailed`` (the remote exception's type, message and traceback),
        ``LeekCancelled``, or ``LeekTimeout`` once ``timeout`` seconds pass (None: no limit).
        leekd answers as soon as the outcome is committed. The wait holds this client's
        connection; ``leek.result`` waits on a connection of its own.
        """
        tid = task_id_of(task_id)
        if self.inline is not None:
            return self.inline.result(tid, timeout)
        # With several nodes only the one that ran the task wakes the wait: ask in short steps.
        step = SHORT_STEP if self.hosts and len(self.hosts.addresses) > 1 else STEP
        return wait_result(
            lambda wait: self.request("result", wait, id=tid, wait=wait), tid, timeout, step
        )

    def waiter(self) -> Client:
        """A client of the same leekd for waits, so they do not hold this one's connection."""
        if self.inline is not None:
            return self
        local = self._waiters
        found: Client | None = getattr(local, "client", None)
        if found is None:
            found = Client(
                self.host,
                self.port,
                self._secret_arg,
                connect_timeout=self.connect_timeout,
                timeout=self.timeout,
                max_frame=self.max_frame,
                unix=self.transport.unix,
                tls=self.transport.tls,
                tls_ca=self.transport.tls_ca,
                hosts=[f"{h}:{p}" for h, p in self.hosts.addresses] if self.hosts else None,
            )
            local.client = found
            with self._lock:
                self._waiter_clients.append(found)
        return found

    def status_of_key(self, key: str) -> dict[str, Any]:
        """The task recorded for a push with this key (``LeekTimeout.keys``); LeekRejected
        with code "not_found" if that push was never recorded."""
        return self.request("status_of_key", key=str(key))

    def cancel(self, task_id: int) -> dict[str, Any]:
        """Cancel a task that has not started (due or scheduled): it never runs, and its
        record says "cancelled". Raises ``LeekRejected`` (with the reason) for a task that
        is running or finished, and for an unknown id."""
        return self.request("cancel", id=task_id_of(task_id))

    def close(self) -> None:
        """Close the connection, and those ``waiter()`` opened for other threads."""
        with self._lock:
            waiters, self._waiter_clients = self._waiter_clients, []
            self._waiters = threading.local()
        for c in waiters:
            c.close()
        super().close()


_default: Client | None = None
_default_lock = threading.Lock()


def get_client() -> Client:
    """The process's shared client, created on first use from the environment/settings."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
            _follow_settings()
        return _default


def reset_client() -> None:
    """Forget the shared client (closing it); the next ``get_client()`` makes a new one."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.close()


def _follow_settings() -> None:
    """With Django here, a change of ``settings.LEEK`` (``override_settings`` in tests)
    makes the next ``get_client()`` read it again."""
    if "django.conf" not in sys.modules:
        return
    from django.core.signals import setting_changed

    def changed(setting: str = "", **kwargs: Any) -> None:
        if setting in ("LEEK", "SECRET_KEY"):
            reset_client()

    setting_changed.connect(changed, weak=False, dispatch_uid="leek.client.settings")


def _reset_after_fork() -> None:
    global _default, _default_lock
    link.forked()
    _default_lock = threading.Lock()
    if _default is not None:
        _default._sock, _default._wire, _default._conn = None, None, None
        _default._forks = link.forks()
        _default._lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_after_fork)
