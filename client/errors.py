"""The exceptions leek raises; every one is a ``LeekError``."""

from __future__ import annotations


class LeekError(Exception):
    """Raised for anything leek cannot do; the base of every leek exception."""


class LeekConfigError(LeekError):
    """Raised when leek's settings are missing or invalid (bad port, unreadable key file)."""


class LeekConnectionError(LeekError):
    """Raised when leekd cannot be reached, or the connection broke mid-request."""


class LeekTimeout(LeekConnectionError):
    """Raised when leekd did not answer within the client's ``timeout``.

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
