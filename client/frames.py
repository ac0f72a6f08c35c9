"""Bytes for events and events from bytes: payload codecs and the frame tag.

A frame is ``length:u32 | type:u8 | payload | tag:32`` (see ``protocol`` for the rules);
this module knows how each event's payload is laid out and how a tag is computed, and
nothing about connection state.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import struct
from collections.abc import Iterable
from typing import Any

from .events import (
    MAGIC,
    MAX_KEY,
    MAX_PRIORITY,
    MAX_TASKS_PER_PUSH,
    MAX_UNIQUE_KEY,
    MIN_PRIORITY,
    REQUEST_OPS,
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
    ServerHello,
    TaskRecord,
    Welcome,
)

LENGTH = struct.Struct("!I")
FRAME_HEAD = struct.Struct("!IB")  # a frame's length and type
_TAG_HEAD = struct.Struct("!cQB")  # what a tag covers before the payload: direction, seq, type
# queue, name, preview lengths; max_retries; timeout; payload length; priority; run_at;
# key and unique key lengths
_TASK_HEAD = struct.Struct("!HHHHdIbdBH")
_ID = struct.Struct("!Q")
_ERROR_HEAD = struct.Struct("!H")

# --------------------------------------------------------------- payloads


def dump_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: invalid JSON ({exc})") from None


def encode_tasks(tasks: Iterable[TaskRecord]) -> bytes:
    parts: list[bytes] = []
    count = 0
    for t in tasks:
        q, n, p = t.queue.encode(), t.name.encode(), t.preview.encode()
        k, u = t.key.encode(), t.unique_key.encode()
        if (
            max(len(q), len(n), len(p)) > 0xFFFF
            or not 0 <= t.max_retries <= 0xFFFF
            or not MIN_PRIORITY <= t.priority <= MAX_PRIORITY
            or len(k) > MAX_KEY
            or len(u) > MAX_UNIQUE_KEY
        ):
            raise LocalProtocolError(
                "task name, queue, preview, key or unique key too long, or bad max_retries "
                "or priority"
            )
        parts += (
            _TASK_HEAD.pack(
                len(q),
                len(n),
                len(p),
                t.max_retries,
                t.timeout,
                len(t.payload),
                t.priority,
                t.run_at,
                len(k),
                len(u),
            ),  # fmt: skip
            q,
            n,
            p,
            k,
            u,
            t.payload,
        )
        count += 1
    if not 0 < count <= MAX_TASKS_PER_PUSH:
        raise LocalProtocolError(f"a push carries 1 to {MAX_TASKS_PER_PUSH} tasks, not {count}")
    return LENGTH.pack(count) + b"".join(parts)


def decode_tasks(data: bytes) -> tuple[TaskRecord, ...]:
    data = bytes(data)  # no copy of bytes; their slices decode at half a memoryview's cost
    if len(data) < 4:
        raise ProtocolError("push: truncated")
    (count,) = LENGTH.unpack_from(data)
    if not 0 < count <= MAX_TASKS_PER_PUSH:
        raise ProtocolError(
            f"push: {count} tasks; allowed 1..{MAX_TASKS_PER_PUSH}", ErrorCode.TOO_LARGE
        )
    pos, out = 4, []
    try:
        for _ in range(count):
            lq, ln, lp, retries, timeout, lpay, prio, run_at, lk, lu = _TASK_HEAD.unpack_from(
                data, pos
            )
            pos += _TASK_HEAD.size
            end = pos + lq + ln + lp + lk + lu + lpay
            if end > len(data):
                raise ProtocolError("push: truncated task")
            q = data[pos : pos + lq].decode()
            pos += lq
            n = data[pos : pos + ln].decode()
            pos += ln
            p = data[pos : pos + lp].decode() if lp else ""
            pos += lp
            k = data[pos : pos + lk].decode() if lk else ""
            pos += lk
            u = data[pos : pos + lu].decode() if lu else ""
            pos += lu
            payload = data[pos:end]
            pos = end
            if not (timeout >= 0.0 and timeout < 1e9):  # also refuses NaN
                raise ProtocolError("push: bad timeout")
            if not (run_at >= 0.0 and run_at < 1e11):
                raise ProtocolError("push: bad run_at")
            if not MIN_PRIORITY <= prio <= MAX_PRIORITY or lk > MAX_KEY or lu > MAX_UNIQUE_KEY:
                raise ProtocolError("push: bad priority, key or unique key")
            if not q or not n:
                raise ProtocolError("push: empty queue or task name")
            out.append(TaskRecord(n, payload, q, p, retries, timeout, prio, run_at, k, u))
    except struct.error:
        raise ProtocolError("push: truncated task") from None
    except UnicodeDecodeError:
        raise ProtocolError("push: text fields are not UTF-8") from None
    if pos != len(data):
        raise ProtocolError("push: trailing bytes")
    return tuple(out)


def encode_payload(event: Event) -> tuple[FrameType, bytes]:
    if isinstance(event, Push):
        return FrameType.PUSH, encode_tasks(event.tasks)
    if isinstance(event, Pushed):
        ids = event.ids
        if len(ids) == 1:  # the usual answer: the compiled struct, 3× cheaper than a format
            return FrameType.PUSHED, _ID.pack(*ids)
        return FrameType.PUSHED, struct.pack(f"!{len(ids)}Q", *ids)  # formats are cached
    if isinstance(event, Request):
        if event.op not in REQUEST_OPS:
            raise LocalProtocolError(f"unknown request {event.op!r}")
        return FrameType.REQUEST, dump_json({"op": event.op, **event.args})
    if isinstance(event, Reply):
        return FrameType.REPLY, dump_json(event.data)
    if isinstance(event, Error):
        return FrameType.ERROR, _ERROR_HEAD.pack(event.code) + event.message.encode()[:4000]
    if isinstance(event, Welcome):
        return FrameType.WELCOME, dump_json(event.info)
    if isinstance(event, ClientHello):
        return FrameType.CLIENT_HELLO, event.nonce + dump_json(event.info)
    if isinstance(event, ServerHello):
        return FrameType.SERVER_HELLO, MAGIC + bytes([event.version]) + event.nonce
    raise LocalProtocolError(f"cannot send {event!r}")


def decode_payload(ftype: int, payload: bytes) -> Event:
    if ftype == FrameType.PUSH:
        return Push(decode_tasks(payload))
    if ftype == FrameType.PUSHED:
        if len(payload) % _ID.size:
            raise ProtocolError("pushed: bad length")
        if len(payload) == _ID.size:
            return Pushed(_ID.unpack(payload))
        return Pushed(struct.unpack(f"!{len(payload) // _ID.size}Q", payload))
    if ftype == FrameType.REQUEST:
        obj = load_json(payload, "request")
        if not isinstance(obj, dict) or obj.get("op") not in REQUEST_OPS:
            raise ProtocolError("request: unknown operation")
        op = obj.pop("op")
        return Request(op, obj)
    if ftype == FrameType.REPLY:
        return Reply(load_json(payload, "reply"))
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
        info = load_json(payload, "welcome")
        if not isinstance(info, dict):
            raise ProtocolError("welcome: not an object")
        return Welcome(info)
    raise ProtocolError(f"unexpected frame type {ftype}")


# -------------------------------------------------------------------- tag


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


def frame_tag(key: bytes, direction: bytes, seq: int, ftype: int, payload: bytes) -> bytes:
    """HMAC-SHA256(key, direction | seq | type | payload)."""
    inner, outer = _pads(key)
    h = inner.copy()
    h.update(_TAG_HEAD.pack(direction, seq, ftype))
    h.update(payload)
    o = outer.copy()
    o.update(h.digest())
    return o.digest()
