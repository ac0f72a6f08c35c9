"""Property tests of the protocol module: whatever arrives either parses or raises.

The rule (h11's): any input either yields the events that were sent, in order, or raises
``ProtocolError``; fed whole, byte by byte or in random chunks, the outcome is the same.
On top of that, integrity: after a stream is tampered with (truncated, a bit flipped,
frames dropped, swapped, repeated or spliced in, an oversized length), no event from at
or after the damage is ever delivered. The soak variants run the same properties with
many more examples (``--run-slow``); counts are printed at the end of the module.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leek.frames import decode_tasks, encode_tasks
from leek.protocol import (
    CLOSED,
    MAX_HANDSHAKE_FRAME,
    NEED_DATA,
    REQUEST_OPS,
    TAG_SIZE,
    Connection,
    Error,
    ErrorCode,
    FrameType,
    LocalProtocolError,
    ProtocolError,
    Push,
    Pushed,
    Reply,
    Request,
    Role,
    TaskRecord,
)

from ..rawpeer import report_line
from .test_protocol import pair as handshake_pair

KEY = b"fuzz-secret-0123456789"
CASES: Counter[str] = Counter()
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOAK = settings(max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if CASES:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
        report_line(request.config, f"\nprotocol fuzz cases: {sum(CASES.values())} ({counts})")


# ------------------------------------------------------------- strategies

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
records = st.builds(
    TaskRecord,
    name=names,
    payload=st.binary(max_size=300),
    queue=names,
    preview=text,
    max_retries=st.integers(0, 0xFFFF),
    timeout=st.floats(0, 1e8, allow_nan=False),
    priority=st.integers(-100, 100),
    run_at=st.one_of(st.just(0.0), st.floats(0, 1e10, allow_nan=False)),
    key=st.text(alphabet="0123456789abcdef", max_size=64),
    unique_key=st.text(max_size=60),
)
client_events = st.one_of(
    st.builds(Push, st.lists(records, min_size=1, max_size=4).map(tuple)),
    st.builds(
        Request,
        st.sampled_from(sorted(REQUEST_OPS)),
        st.dictionaries(text.filter(lambda k: k != "op"), json_values, max_size=4),
    ),
)
server_events = st.one_of(
    st.builds(Pushed, st.lists(st.integers(0, 2**64 - 1), max_size=20).map(tuple)),
    st.builds(Reply, json_values),
    st.builds(Error, st.sampled_from(list(ErrorCode)), text),
)
# How bytes reach the receiver: all at once, one at a time, or in random pieces.
chunkings = st.one_of(
    st.just("whole"), st.just("bytewise"), st.lists(st.integers(1, 97), min_size=1)
)


def pair() -> tuple[Connection, Connection]:
    return handshake_pair(KEY, KEY)


def pieces(data: bytes, chunking: object) -> Iterator[bytes]:
    if chunking == "whole":
        yield data
    elif chunking == "bytewise":
        yield from (data[i : i + 1] for i in range(len(data)))
    else:
        assert isinstance(chunking, list)
        pos, i = 0, 0
        while pos < len(data):
            size = chunking[i % len(chunking)]
            yield data[pos : pos + size]
            pos, i = pos + size, i + 1


def feed(receiver: Connection, data: bytes, chunking: object, eof: bool = True) -> tuple:
    """Deliver ``data``; returns (events, the ProtocolError or None). Bounded by the input."""
    events: list = []
    try:
        for piece in pieces(data, chunking):
            receiver.receive_data(piece)
            while (event := receiver.next_event()) not in (NEED_DATA, CLOSED):
                events.append(event)
        if eof:
            receiver.receive_data(b"")
            while (event := receiver.next_event()) not in (NEED_DATA, CLOSED):
                events.append(event)
    except ProtocolError as exc:
        assert receiver.next_event() is CLOSED  # no second chance after a violation
        return events, exc
    return events, None


# ---------------------------------------------------------- the properties


def check_roundtrip(events: list, chunking: object, to_server: bool) -> None:
    CASES["roundtrip"] += 1
    server, client = pair()
    sender, receiver = (client, server) if to_server else (server, client)
    data = b"".join(sender.send(e) for e in events)
    got, error = feed(receiver, data, chunking)
    assert error is None and got == events


@FAST
@given(st.lists(client_events, max_size=6), chunkings)
def test_client_events_roundtrip_in_any_chunking(events, chunking):
    check_roundtrip(events, chunking, to_server=True)


@FAST
@given(st.lists(server_events, max_size=6), chunkings)
def test_server_events_roundtrip_in_any_chunking(events, chunking):
    check_roundtrip(events, chunking, to_server=False)


MUTATIONS = ("truncate", "flip", "drop", "swap", "repeat", "splice", "oversize", "retag")


def mutate(frames: list[bytes], kind: str, data: st.DataObject) -> bytes:
    """One kind of damage to a stream of frames."""
    stream = b"".join(frames)
    n = len(frames)
    if kind == "truncate":
        return stream[: data.draw(st.integers(0, len(stream) - 1))]
    if kind == "flip":
        i = data.draw(st.integers(0, len(stream) - 1))
        bit = data.draw(st.integers(0, 7))
        return stream[:i] + bytes([stream[i] ^ (1 << bit)]) + stream[i + 1 :]
    if kind == "drop":
        k = data.draw(st.integers(0, n - 1))
        return b"".join(frames[:k] + frames[k + 1 :])
    if kind == "swap":
        assume(n >= 2)
        k = data.draw(st.integers(0, n - 2))
        m = data.draw(st.integers(k + 1, n - 1))
        swapped = list(frames)
        swapped[k], swapped[m] = swapped[m], swapped[k]
        return b"".join(swapped)
    if kind == "repeat":
        k = data.draw(st.integers(0, n - 1))
        at = data.draw(st.integers(k + 1, n))
        return b"".join(frames[:at] + [frames[k]] + frames[at:])
    if kind == "splice":
        at = data.draw(st.integers(0, len(stream)))
        junk = data.draw(st.binary(min_size=1, max_size=64))
        return stream[:at] + junk + stream[at:]
    if kind == "oversize":
        k = data.draw(st.integers(0, n))
        length = data.draw(st.integers(16 * 1024 * 1024 + 1, 2**32 - 1))
        return b"".join(frames[:k]) + struct.pack("!I", length) + b"".join(frames[k:])
    assert kind == "retag"
    k = data.draw(st.integers(0, n - 1))
    forged = frames[k][:-TAG_SIZE] + data.draw(st.binary(min_size=TAG_SIZE, max_size=TAG_SIZE))
    return b"".join(frames[:k] + [forged] + frames[k + 1 :])


def check_mutation(events: list, kind: str, chunking: object, data: st.DataObject) -> None:
    server, client = pair()
    frames = [client.send(e) for e in events]
    stream = b"".join(frames)
    damaged = mutate(frames, kind, data)
    assume(damaged != stream)
    CASES[f"mutated:{kind}"] += 1
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(stream, damaged, strict=False)) if a != b),
        min(len(stream), len(damaged)),
    )
    # Frames that lie wholly before the first damaged byte are the only ones that may pass.
    intact, end = 0, 0
    for f in frames:
        end += len(f)
        if end > first_diff:
            break
        intact += 1
    got, error = feed(server, damaged, chunking)
    assert got == events[: len(got)], "an event was changed on the way"
    assert len(got) <= intact, "an event from at or after the damage was delivered"
    if stream.startswith(damaged):
        # Cut short (or the last frames dropped): what is whole arrives, and only a cut
        # inside a frame is an error, since a stream has no end marker.
        assert len(got) == intact
        assert (error is None) == (len(damaged) == sum(map(len, frames[:intact])))
    else:
        assert error is not None


@settings(FAST, max_examples=600)
@given(
    st.lists(client_events, min_size=1, max_size=5),
    st.sampled_from(MUTATIONS),
    chunkings,
    st.data(),
)
def test_damaged_streams_never_deliver_a_forged_event(events, kind, chunking, data):
    check_mutation(events, kind, chunking, data)


def check_handshake_garbage(frames: list[tuple[int, bytes, bytes]], role: Role, chunk) -> None:
    """Frames with random types, payloads and tags: no handshake event can come of them."""
    CASES[f"handshake:{role.value}"] += 1
    receiver = Connection(role, KEY)
    if role is Role.SERVER:
        receiver.start()
    raw = b"".join(
        struct.pack("!I", 1 + len(p) + TAG_SIZE) + bytes([t]) + p + tag for t, p, tag in frames
    )
    got, error = feed(receiver, raw, chunk)
    assert got == []
    assert error is not None or not raw


def forged_frames(max_payload: int, max_frames: int) -> st.SearchStrategy:
    """Whole frames of any type with a made-up tag, as a peer without the secret sends them."""
    return st.lists(
        st.tuples(
            st.sampled_from([*FrameType, 0, 255]),
            st.binary(max_size=max_payload),
            st.binary(min_size=TAG_SIZE, max_size=TAG_SIZE),
        ),
        max_size=max_frames,
    )


@FAST
@given(forged_frames(200, 3), st.sampled_from(list(Role)), chunkings)
def test_forged_handshake_frames_yield_nothing(frames, role, chunking):
    check_handshake_garbage(frames, role, chunking)


@FAST
@given(st.binary(max_size=3000), chunkings, st.booleans())
def test_random_bytes_at_any_stage_parse_or_raise(data, chunking, ready):
    CASES["random-bytes"] += 1
    if ready:
        receiver, _ = pair()
    else:
        receiver = Connection(Role.SERVER, KEY)
        receiver.start()
    got, error = feed(receiver, data, chunking)
    assert got == []  # nothing from random bytes ever verifies


@FAST
@given(st.integers(MAX_HANDSHAKE_FRAME + 1, 2**32 - 1), st.booleans(), st.binary(max_size=50))
def test_oversized_length_is_refused_on_its_fourth_byte(length, ready, rest):
    """Refused before a byte of the body is buffered; before the handshake, above 64 KiB."""
    CASES["oversize"] += 1
    limit = 16 * 1024 * 1024 if ready else MAX_HANDSHAKE_FRAME
    assume(length > limit)
    if ready:
        receiver, _ = pair()
    else:
        receiver = Connection(Role.SERVER, KEY)
        receiver.start()
    head = struct.pack("!I", length)
    for b in head[:3]:
        receiver.receive_data(bytes([b]))
        assert receiver.next_event() is NEED_DATA
    receiver.receive_data(head[3:] + rest)
    with pytest.raises(ProtocolError) as err:
        receiver.next_event()
    assert err.value.code == ErrorCode.TOO_LARGE


@FAST
@given(st.lists(records, min_size=1, max_size=5))
def test_task_batches_roundtrip(tasks):
    CASES["tasks-roundtrip"] += 1
    assert decode_tasks(encode_tasks(tasks)) == tuple(tasks)


@FAST
@given(st.lists(records, min_size=1, max_size=3), st.binary(max_size=64), st.integers(0, 400))
def test_task_batches_with_damage_decode_or_raise(tasks, junk, cut):
    CASES["tasks-damaged"] += 1
    good = encode_tasks(tasks)
    for bad in (good[:cut], good[:cut] + junk + good[cut:], junk):
        try:
            decoded = decode_tasks(bad)
        except ProtocolError:
            continue
        assert all(isinstance(t, TaskRecord) and t.name and t.queue for t in decoded)


@FAST
@given(st.dictionaries(text, json_scalars, max_size=3))
def test_a_hello_captured_on_one_connection_opens_no_other(info):
    CASES["hello-replay"] += 1
    first_server, client = Connection(Role.SERVER, KEY), Connection(Role.CLIENT, KEY)
    client.receive_data(first_server.start())
    client.next_event()
    captured = client.hello(info)
    other = Connection(Role.SERVER, KEY)
    other.start()
    other.receive_data(captured)
    with pytest.raises(ProtocolError) as err:
        other.next_event()
    assert err.value.code == ErrorCode.AUTH


def test_the_batch_limit_is_enforced_both_ways():
    from leek.protocol import MAX_TASKS_PER_PUSH

    one = TaskRecord("m.f", b"")
    assert len(decode_tasks(encode_tasks([one] * MAX_TASKS_PER_PUSH))) == MAX_TASKS_PER_PUSH
    with pytest.raises(LocalProtocolError):
        encode_tasks([one] * (MAX_TASKS_PER_PUSH + 1))
    too_many = struct.pack("!I", MAX_TASKS_PER_PUSH + 1) + encode_tasks([one])[4:]
    with pytest.raises(ProtocolError) as err:
        decode_tasks(too_many)
    assert err.value.code == ErrorCode.TOO_LARGE


def test_an_error_still_goes_out_after_a_violation():
    server, _ = pair()
    server.receive_data(struct.pack("!I", 2**32 - 1))
    with pytest.raises(ProtocolError):
        server.next_event()
    assert server.send(Error(ErrorCode.TOO_LARGE, "too large"))  # the peer learns why
    with pytest.raises(LocalProtocolError):
        server.send(Reply(1))


# ---------------------------------------------------------------- soak runs


@pytest.mark.slow
@pytest.mark.timeout(900)
@SOAK
@given(
    st.lists(client_events, min_size=1, max_size=8),
    st.sampled_from(MUTATIONS),
    chunkings,
    st.data(),
)
def test_soak_damaged_streams(events, kind, chunking, data):
    check_mutation(events, kind, chunking, data)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SOAK
@given(
    st.booleans().flatmap(
        lambda up: st.tuples(
            st.just(up), st.lists(client_events if up else server_events, max_size=8)
        )
    ),
    chunkings,
)
def test_soak_roundtrip(direction_events, chunking):
    to_server, events = direction_events
    check_roundtrip(events, chunking, to_server=to_server)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SOAK
@given(forged_frames(400, 4), st.sampled_from(list(Role)), chunkings)
def test_soak_forged_handshake_frames(frames, role, chunking):
    check_handshake_garbage(frames, role, chunking)
