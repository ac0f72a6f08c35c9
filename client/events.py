"""The protocol's vocabulary: events, task records, states, error codes and limits.

Everything here is plain data; the bytes these become live in ``frames``, and the rules for
when each may be sent or received in ``protocol.Connection``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 2
MAGIC = b"LEEK"
NONCE_SIZE = 16
TAG_SIZE = 32
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_HANDSHAKE_FRAME = 64 * 1024  # hellos, welcomes and errors are a few hundred bytes
MAX_TASKS_PER_PUSH = 10_000


class FrameType(enum.IntEnum):
    SERVER_HELLO = 1
    CLIENT_HELLO = 2
    WELCOME = 3
    ERROR = 4
    PUSH = 10
    PUSHED = 11
    REQUEST = 20
    REPLY = 21


class ErrorCode(enum.IntEnum):
    """Codes carried by error frames; the client maps them to exception types."""

    PROTOCOL = 1  # malformed frame, wrong order, unknown type
    AUTH = 2  # a tag did not verify
    TOO_LARGE = 3  # frame or batch over the limit
    REJECTED = 4  # the server understood the request and refused it
    UNAVAILABLE = 5  # the server cannot do it now (database down, draining)
    VERSION = 6  # the payload cannot be loaded safely by the server's Python
    NOT_FOUND = 7
    INTERNAL = 8


# Requests carried in REQUEST frames (JSON: {"op": ..., ...}). Anything else is refused.
REQUEST_OPS = frozenset(
    {"ping", "waiting", "handled", "stats", "status", "result", "drain", "purge", "retry_failed"}
    | {"failures", "nodes", "cancel", "status_of_key"}
    | {"schedules", "create_job", "job", "resume_job"}
)


class ProtocolError(Exception):
    """Raised when the peer broke the protocol; ``code`` says how."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(Exception):
    """Raised when this side misuses the API (wrong state, oversized event)."""


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ServerHello:
    nonce: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class ClientHello:
    nonce: bytes
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Welcome:
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str


@dataclass(slots=True)
class TaskRecord:
    """One task as it travels: options in the clear, the call as opaque pickle bytes.

    Not frozen, unlike the events: one is made per task on both sides, and a frozen
    dataclass's ``__init__`` costs five times as much.
    """

    name: str
    payload: bytes
    queue: str = "default"
    preview: str = ""
    max_retries: int = 0  # 0: the server's default
    timeout: float = 0.0  # 0: the server's default
    priority: int = 0  # -100..100, higher first; FIFO among equals
    run_at: float = 0.0  # not before this Unix time; 0: now
    key: str = ""  # made by the client, one per record: a re-sent push is recorded once
    unique_key: str = ""  # while a task with this key is unfinished, pushes return its id


MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_KEY = 64
MAX_UNIQUE_KEY = 255


@dataclass(frozen=True, slots=True)
class Push:
    tasks: tuple[TaskRecord, ...]


@dataclass(frozen=True, slots=True)
class Pushed:
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    data: Any


Event = ServerHello | ClientHello | Welcome | Error | Push | Pushed | Request | Reply


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
CLOSED = _Sentinel("CLOSED")


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    HANDSHAKE = "handshake"
    READY = "ready"
    CLOSED = "closed"
