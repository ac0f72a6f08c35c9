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

import hashlib
import hmac
import os
from typing import Any

from .events import (
    CLOSED,
    DEFAULT_MAX_FRAME,
    MAGIC,
    MAX_HANDSHAKE_FRAME,
    MAX_TASKS_PER_PUSH,
    NEED_DATA,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    REQUEST_OPS,
    TAG_SIZE,
    ClientHello,
    Error,
    ErrorCode,
    Event,
    FrameType,
    LocalProtocolError,
    ProtocolError,
    Push,
    Pushed,
    Reply,
    Request,
    Role,
    ServerHello,
    State,
    TaskRecord,
    Welcome,
)
from .frames import FRAME_HEAD, LENGTH, decode_payload, encode_payload, frame_tag, load_json

# The events, records and errors are defined in ``events``; they are importable from here
# too, so that code speaking the protocol needs one import.
__all__ = [
    "CLOSED",
    "DEFAULT_MAX_FRAME",
    "MAGIC",
    "MAX_HANDSHAKE_FRAME",
    "MAX_TASKS_PER_PUSH",
    "NEED_DATA",
    "NONCE_SIZE",
    "PROTOCOL_VERSION",
    "REQUEST_OPS",
    "TAG_SIZE",
    "ClientHello",
    "Connection",
    "Error",
    "ErrorCode",
    "Event",
    "FrameType",
    "LocalProtocolError",
    "ProtocolError",
    "Push",
    "Pushed",
    "Reply",
    "Request",
    "Role",
    "ServerHello",
    "State",
    "TaskRecord",
    "Welcome",
]

_AFTER_HANDSHAKE = frozenset({Push, Pushed, Request, Reply, Error})  # framed as they come


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
        if self.state is State.READY and type(event) in _AFTER_HANDSHAKE:
            assert self._key is not None  # READY: the handshake made the key
            return self._frame(event, self._key)
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
        ftype, payload = encode_payload(event)
        length = 1 + len(payload) + TAG_SIZE
        if length > self.max_frame:
            raise LocalProtocolError(
                f"frame of {length} bytes exceeds the {self.max_frame}-byte limit"
            )
        tag = frame_tag(key, self._send_dir, self._send_seq, ftype, payload)
        self._send_seq += 1
        return FRAME_HEAD.pack(length, ftype) + payload + tag

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
        (length,) = LENGTH.unpack_from(self._buf, self._pos)
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
        expected = frame_tag(key, self._recv_dir, self._recv_seq, ftype, payload)
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
            return decode_payload(ftype, payload)
        if self.role is Role.SERVER:
            if ftype != FrameType.CLIENT_HELLO:
                raise ProtocolError("expected the client's hello")
            self._verify(self._hello_key(), ftype, payload, tag)
            if len(payload) < NONCE_SIZE:
                raise ProtocolError("client hello: truncated")
            info = load_json(payload[NONCE_SIZE:], "client hello")
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
                return decode_payload(ftype, payload)
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
                frame_tag(key, self._recv_dir, self._recv_seq, ftype, payload), tag
            ):
                key = self._secret
            self._verify(key, ftype, payload, tag)
            self.state = State.CLOSED
            return decode_payload(ftype, payload)
        if ftype != FrameType.WELCOME:
            raise ProtocolError("expected the server's welcome")
        self._verify(self._key, ftype, payload, tag)
        event = decode_payload(ftype, payload)
        assert isinstance(event, Welcome)
        self.peer_info = event.info
        self.state = State.READY
        return event
