"""leek's wire protocol, sans-IO: bytes in, events out; events in, bytes out.

Theory of operation
-------------------
Every frame is ``length:u32 | type:u8 | payload | tag:32``, where ``length`` counts
``type + payload + tag``. A length above ``max_frame`` is refused as soon as its four
bytes arrive, so the receive buffer never holds more than one maximal frame; until the
handshake is done the limit is ``MAX_HANDSHAKE_FRAME``, so a peer that has not proven it
holds the secret cannot make us buffer more than that.

The tag is HMAC-SHA256. The server speaks first with a ``ServerHello`` carrying a
random nonce, tagged with the shared secret itself, so a client holding the wrong
secret notices before it sends anything. The client answers with a ``ClientHello``
carrying its own nonce, tagged with a key bound to the server's nonce (so a hello
captured on one connection opens no other). From then on both sides tag every frame
with a per-connection key derived from the secret and both nonces, over ``direction |
sequence | type | payload``; each direction counts its own frames from 0. A frame
captured on one connection therefore fails on any other (different nonces) and cannot be
replayed, dropped or reordered within its own (different sequence number). Nothing in a
frame is interpreted until its tag has been checked.

After the handshake the client sends requests and the server answers each of them,
in order; the client may pipeline several requests before reading answers.

Errors: ``ProtocolError`` means the peer broke these rules (its ``code`` says how);
``LocalProtocolError`` means we misused this API.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
MAGIC = b"LEEK"
NONCE_SIZE = 16
TAG_SIZE = 32
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_HANDSHAKE_FRAME = 64 * 1024  # hellos, welcomes and errors are a few hundred bytes
MAX_TASKS_PER_PUSH = 10_000

_LENGTH = struct.Struct("!I")
_SEQ = struct.Struct("!Q")
_TASK_HEAD = struct.Struct(
    "!HHHHdI"
)  # queue, name, preview lengths; max_retries; timeout; payload length
_ID = struct.Struct("!Q")
_ERROR_HEAD = struct.Struct("!H")


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
    {"ping", "waiting", "handled", "stats", "status", "drain", "purge", "retry_failed"}
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


# --------------------------------------------------------------- payloads


def _dump_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: invalid JSON ({exc})") from None


def encode_tasks(tasks: Iterable[TaskRecord]) -> bytes:
    parts: list[bytes] = []
    count = 0
    for t in tasks:
        q, n, p = t.queue.encode(), t.name.encode(), t.preview.encode()
        if max(len(q), len(n), len(p)) > 0xFFFF or not 0 <= t.max_retries <= 0xFFFF:
            raise LocalProtocolError("task name, queue or preview too long, or bad max_retries")
        parts += (
            _TASK_HEAD.pack(len(q), len(n), len(p), t.max_retries, t.timeout, len(t.payload)),
            q,
            n,
            p,
            t.payload,
        )
        count += 1
    if not 0 < count <= MAX_TASKS_PER_PUSH:
        raise LocalProtocolError(f"a push carries 1 to {MAX_TASKS_PER_PUSH} tasks, not {count}")
    return _LENGTH.pack(count) + b"".join(parts)


def decode_tasks(data: bytes) -> tuple[TaskRecord, ...]:
    view = memoryview(data)
    if len(view) < 4:
        raise ProtocolError("push: truncated")
    (count,) = _LENGTH.unpack_from(view)
    if not 0 < count <= MAX_TASKS_PER_PUSH:
        raise ProtocolError(
            f"push: {count} tasks; allowed 1..{MAX_TASKS_PER_PUSH}", ErrorCode.TOO_LARGE
        )
    pos, out = 4, []
    try:
        for _ in range(count):
            lq, ln, lp, retries, timeout, lpay = _TASK_HEAD.unpack_from(view, pos)
            pos += _TASK_HEAD.size
            end = pos + lq + ln + lp + lpay
            if end > len(view):
                raise ProtocolError("push: truncated task")
            q = bytes(view[pos : pos + lq]).decode()
            pos += lq
            n = bytes(view[pos : pos + ln]).decode()
            pos += ln
            p = bytes(view[pos : pos + lp]).decode()
            pos += lp
            payload = bytes(view[pos:end])
            pos = end
            if not (timeout >= 0.0 and timeout < 1e9):  # also refuses NaN
                raise ProtocolError("push: bad timeout")
            if not q or not n:
                raise ProtocolError("push: empty queue or task name")
            out.append(TaskRecord(n, payload, q, p, retries, timeout))
    except struct.error:
        raise ProtocolError("push: truncated task") from None
    except UnicodeDecodeError:
        raise ProtocolError("push: text fields are not UTF-8") from None
    if pos != len(view):
        raise ProtocolError("push: trailing bytes")
    return tuple(out)


def _encode_payload(event: Event) -> tuple[FrameType, bytes]:
    if isinstance(event, Push):
        return FrameType.PUSH, encode_tasks(event.tasks)
    if isinstance(event, Pushed):
        return FrameType.PUSHED, b"".join(_ID.pack(i) for i in event.ids)
    if isinstance(event, Request):
        if event.op not in REQUEST_OPS:
            raise LocalProtocolError(f"unknown request {event.op!r}")
        return FrameType.REQUEST, _dump_json({"op": event.op, **event.args})
    if isinstance(event, Reply):
        return FrameType.REPLY, _dump_json(event.data)
    if isinstance(event, Error):
        return FrameType.ERROR, _ERROR_HEAD.pack(event.code) + event.message.encode()[:4000]
    if isinstance(event, Welcome):
        return FrameType.WELCOME, _dump_json(event.info)
    if isinstance(event, ClientHello):
        return FrameType.CLIENT_HELLO, event.nonce + _dump_json(event.info)
    if isinstance(event, ServerHello):
        return FrameType.SERVER_HELLO, MAGIC + bytes([event.version]) + event.nonce
    raise LocalProtocolError(f"cannot send {event!r}")


def _decode_payload(ftype: int, payload: bytes) -> Event:
    if ftype == FrameType.PUSH:
        return Push(decode_tasks(payload))
    if ftype == FrameType.PUSHED:
        if len(payload) % _ID.size:
            raise ProtocolError("pushed: bad length")
        return Pushed(tuple(i for (i,) in _ID.iter_unpack(payload)))
    if ftype == FrameType.REQUEST:
        obj = _load_json(payload, "request")
        if not isinstance(obj, dict) or obj.get("op") not in REQUEST_OPS:
            raise ProtocolError("request: unknown operation")
        op = obj.pop("op")
        return Request(op, obj)
    if ftype == FrameType.REPLY:
        return Reply(_load_json(payload, "reply"))
    if ftype == FrameType.ERROR:
        if len(payload) < _ERROR_HEAD.size:
            raise ProtocolError("error: truncated")
        (code,) = _ERROR_HEAD.unpack_from(payload)
        try:
            ecode = ErrorCode(code)
        except ValueError:
            ecode = ErrorCode.INTERNAL
        return Error(ecode, payload[_ERROR_HEAD.size :].decode(errors="replace"))
    if ftype == FrameType.WELCOME:
        info = _load_json(payload, "welcome")
        if not isinstance(info, dict):
            raise ProtocolError("welcome: not an object")
        return Welcome(info)
    raise ProtocolError(f"unexpected frame type {ftype}")


# ------------------------------------------------------------- connection


@functools.lru_cache(maxsize=1024)
def _pads(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's keyed inner and outer states, computed once per key.

    Copying these is several times cheaper than ``hmac.digest`` setting up a fresh HMAC for
    each frame, and hashing the payload separately avoids copying it into one message.
    """
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return hashlib.sha256(key.translate(hmac.trans_36)), hashlib.sha256(
        key.translate(hmac.trans_5C)
    )


def _tag(key: bytes, direction: bytes, seq: int, ftype: int, payload: bytes) -> bytes:
    """HMAC-SHA256(key, direction | seq | type | payload)."""
    inner, outer = _pads(key)
    h = inner.copy()
    h.update(direction + _SEQ.pack(seq) + bytes((ftype,)))
    h.update(payload)
    o = outer.copy()
    o.update(h.digest())
    return o.digest()


class Connection:
    """One side of one leek connection: feed it bytes, read events; give it events, send bytes.

    ``secret`` is the shared key (bytes). The server must call ``start()`` first and send
    what it returns; the client's first event is the ``ServerHello``, which it answers
    with ``hello()``.
    """

    def __init__(self, role: Role, secret: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not secret:
            raise LocalProtocolError("an empty secret authenticates nothing")
        self.role = role
        self.state = State.HANDSHAKE
        self.max_frame = max_frame
        self.peer_info: dict[str, Any] = {}
        self._secret = secret
        self._key: bytes | None = None
        self._server_nonce = b""
        self._send_dir, self._recv_dir = (b"S", b"C") if role is Role.SERVER else (b"C", b"S")
        self._send_seq = 0
        self._recv_seq = 0
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    # ---- sending

    def start(self) -> bytes:
        """Server: the hello that opens the connection."""
        if self.role is not Role.SERVER or self._send_seq:
            raise LocalProtocolError("only a new server connection starts the handshake")
        self._server_nonce = os.urandom(NONCE_SIZE)
        return self._frame(ServerHello(self._server_nonce), self._secret)

    def hello(self, info: dict[str, Any]) -> bytes:
        """Client: answer the server's hello; from here on frames use the connection key."""
        if self.role is not Role.CLIENT or not self._server_nonce or self._key is not None:
            raise LocalProtocolError("hello() answers the server's hello, once")
        nonce = os.urandom(NONCE_SIZE)
        data = self._frame(ClientHello(nonce, info), self._hello_key())
        self._key = self._derive(nonce)
        return data

    def send(self, event: Event) -> bytes:
        if self.state is State.CLOSED and not isinstance(event, Error):
            # An error may still go out: it tells the peer why we are hanging up.
            raise LocalProtocolError("connection is closed")
        if isinstance(event, ServerHello | ClientHello):
            raise LocalProtocolError("use start() / hello() for the handshake")
        if self._key is None:
            # Before the handshake completes only an error may go out; tag it with the
            # secret so a legitimate client can trust it.
            if not isinstance(event, Error):
                raise LocalProtocolError(f"cannot send {type(event).__name__} before the handshake")
            return self._frame(event, self._secret)
        if self.role is Role.SERVER and isinstance(event, Welcome):
            self.state = State.READY
        return self._frame(event, self._key)

    def _frame(self, event: Event, key: bytes) -> bytes:
        ftype, payload = _encode_payload(event)
        length = 1 + len(payload) + TAG_SIZE
        if length > self.max_frame:
            raise LocalProtocolError(
                f"frame of {length} bytes exceeds the {self.max_frame}-byte limit"
            )
        tag = _tag(key, self._send_dir, self._send_seq, ftype, payload)
        self._send_seq += 1
        return _LENGTH.pack(length) + bytes([ftype]) + payload + tag

    def _hello_key(self) -> bytes:
        return hmac.digest(self._secret, b"leek-hello" + self._server_nonce, hashlib.sha256)

    def _derive(self, client_nonce: bytes) -> bytes:
        return hmac.digest(
            self._secret, b"leek-conn" + self._server_nonce + client_nonce, hashlib.sha256
        )

    # ---- receiving

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed."""
        if self._eof:
            if data:
                raise LocalProtocolError("data after end of stream")
            return
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_event(self) -> Any:
        """The next event, ``NEED_DATA``, or ``CLOSED``; raises ``ProtocolError``."""
        if self.state is State.CLOSED:
            return CLOSED
        avail = len(self._buf) - self._pos
        if avail < 4:
            return self._need_data(avail)
        (length,) = _LENGTH.unpack_from(self._buf, self._pos)
        limit = self.max_frame
        if self.state is not State.READY:
            limit = min(limit, MAX_HANDSHAKE_FRAME)
        if length > limit:
            self.state = State.CLOSED
            raise ProtocolError(
                f"frame of {length} bytes exceeds the {limit}-byte limit", ErrorCode.TOO_LARGE
            )
        if length < 1 + TAG_SIZE:
            self.state = State.CLOSED
            raise ProtocolError(f"frame of {length} bytes is too short")
        if avail < 4 + length:
            return self._need_data(avail)
        start = self._pos + 4
        ftype = self._buf[start]
        payload = bytes(self._buf[start + 1 : start + length - TAG_SIZE])
        tag = bytes(self._buf[start + length - TAG_SIZE : start + length])
        self._pos = start + length
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        try:
            return self._accept(ftype, payload, tag)
        except ProtocolError:
            self.state = State.CLOSED
            raise

    def _need_data(self, avail: int) -> Any:
        if self._eof:
            self.state = State.CLOSED
            if avail:
                raise ProtocolError("connection closed in the middle of a frame")
            return CLOSED
        return NEED_DATA

    def _verify(self, key: bytes, ftype: int, payload: bytes, tag: bytes) -> None:
        expected = _tag(key, self._recv_dir, self._recv_seq, ftype, payload)
        if not hmac.compare_digest(expected, tag):
            raise ProtocolError(
                "frame authentication failed (wrong secret or tampered frame)", ErrorCode.AUTH
            )
        self._recv_seq += 1

    def _accept(self, ftype: int, payload: bytes, tag: bytes) -> Event:
        if self.state is State.READY:
            assert self._key is not None
            self._verify(self._key, ftype, payload, tag)
            allowed = (
                (FrameType.PUSH, FrameType.REQUEST)
                if self.role is Role.SERVER
                else (
                    FrameType.PUSHED,
                    FrameType.REPLY,
                    FrameType.ERROR,
                )
            )
            if ftype not in allowed:
                raise ProtocolError(f"frame type {ftype} not allowed here")
            return _decode_payload(ftype, payload)
        if self.role is Role.SERVER:
            if ftype != FrameType.CLIENT_HELLO:
                raise ProtocolError("expected the client's hello")
            self._verify(self._hello_key(), ftype, payload, tag)
            if len(payload) < NONCE_SIZE:
                raise ProtocolError("client hello: truncated")
            info = _load_json(payload[NONCE_SIZE:], "client hello")
            if not isinstance(info, dict):
                raise ProtocolError("client hello: not an object")
            self._key = self._derive(payload[:NONCE_SIZE])
            self.peer_info = info
            return ClientHello(payload[:NONCE_SIZE], info)
        # client, during the handshake
        if self._key is None:
            if ftype == FrameType.ERROR and not self._server_nonce:
                # Refused before being greeted (say, too many connections): tagged with the
                # secret, so a third party cannot make us give up.
                self._verify(self._secret, ftype, payload, tag)
                self.state = State.CLOSED
                return _decode_payload(ftype, payload)
            if ftype != FrameType.SERVER_HELLO:
                raise ProtocolError("expected the server's hello")
            self._verify(self._secret, ftype, payload, tag)
            if len(payload) != len(MAGIC) + 1 + NONCE_SIZE or not payload.startswith(MAGIC):
                raise ProtocolError("server hello: not a leek server")
            version = payload[len(MAGIC)]
            if version != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"server speaks protocol {version}, this client {PROTOCOL_VERSION}",
                    ErrorCode.VERSION,
                )
            self._server_nonce = payload[len(MAGIC) + 1 :]
            return ServerHello(self._server_nonce, version)
        if ftype == FrameType.ERROR:
            # The server refused our hello: with the connection key if it read the hello,
            # with the bare secret if the hello did not verify.
            key = self._key
            if not hmac.compare_digest(
                _tag(key, self._recv_dir, self._recv_seq, ftype, payload), tag
            ):
                key = self._secret
            self._verify(key, ftype, payload, tag)
            self.state = State.CLOSED
            return _decode_payload(ftype, payload)
        if ftype != FrameType.WELCOME:
            raise ProtocolError("expected the server's welcome")
        self._verify(self._key, ftype, payload, tag)
        event = _decode_payload(ftype, payload)
        assert isinstance(event, Welcome)
        self.peer_info = event.info
        self.state = State.READY
        return event
