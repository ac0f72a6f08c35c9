"""The exceptions leek raises; every one is a ``LeekError``."""

from __future__ import annotations

from typing import Any


class LeekError(Exception):
    """Raised for anything leek cannot do; the base of every leek exception."""


class LeekConfigError(LeekError):
    """Raised when leek's settings are missing or invalid (bad port, unreadable key file)."""


class LeekConnectionError(LeekError):
    """Raised when leekd cannot be reached, or the connection broke mid-request."""


class LeekTimeout(LeekConnectionError):
    """Raised when leekd did not answer within the client's ``timeout``, or a wait for a
    result ran out of time (the task may still finish).

    A push may have been recorded anyway (its answer is what did not come): ``keys`` holds
    the key of each of its records; ``Client.status_of_key(key)`` tells whether it was.
    Pushing the same records again (``push_records``) records each of them at most once.
    """

    def __init__(self, message: str, keys: list[str] | None = None) -> None:
        super().__init__(message)
        self.keys = keys or []

    @property
    def key(self) -> str | None:
        return self.keys[0] if self.keys else None

    @classmethod
    def of_push(cls, exc: LeekTimeout, keys: list[str]) -> LeekTimeout:
        """The timeout of a push with these record keys, saying how to find out what became."""
        shown = ", ".join(repr(k) for k in keys[:3]) + (", …" if len(keys) > 3 else "")
        return cls(
            f"{exc}; the push may have been recorded all the same: look it up with "
            f"Client.status_of_key({shown}), or push the same records again with "
            "push_records(), which records each key at most once",
            keys,
        )


class LeekAuthError(LeekError):
    """Raised when client and server do not share the same secret."""


class LeekProtocolError(LeekError):
    """Raised when the peer does not speak leek's protocol (or another version of it)."""


class LeekRejected(LeekError):
    """Raised when leekd understood a request and refused it; ``code`` and ``reason`` say why."""

    def __init__(self, reason: str, code: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class LeekUnavailable(LeekRejected):
    """Raised when leekd cannot take the request now (database unavailable, draining)."""


class LeekVersionError(LeekRejected):
    """Raised when leekd refuses a by-value task pickled by a different Python/cloudpickle."""


class LeekTaskFailed(LeekError):
    """Raised by ``result()`` when the task failed: ``exc_type``, ``message`` and
    ``traceback`` are the remote exception's (its class path, text and formatted trace)."""

    def __init__(self, task_id: int, exc_type: str, message: str, traceback: str) -> None:
        super().__init__(
            f"task {task_id} failed: {exc_type}: {message} "
            "(the remote traceback is in .traceback, and in the admin)"
        )
        self.task_id = task_id
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback


class LeekCancelled(LeekError):
    """Raised by ``result()`` when the task was cancelled before it ran."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} was cancelled; it will not run")
        self.task_id = task_id


def raise_error(event: Any, where: str) -> None:
    """Raise the exception for leekd's error frame ``event`` (an ``events.Error``)."""
    from .events import ErrorCode

    code = event.code
    if code == ErrorCode.AUTH:
        raise LeekAuthError(f"leekd at {where} refused our credentials: {event.message}")
    if code == ErrorCode.VERSION:
        raise LeekVersionError(event.message, "version")
    if code == ErrorCode.UNAVAILABLE:
        raise LeekUnavailable(event.message, "unavailable")
    raise LeekRejected(event.message, code.name.lower())
