"""The wire protocol without sockets: handshake, framing, authentication, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leek.frames import decode_tasks, encode_tasks
from leek.protocol import (
    CLOSED,
    NEED_DATA,
    ClientHello,
    Connection,
    Error,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    Push,
    Pushed,
    Reply,
    Request,
    Role,
    ServerHello,
    TaskRecord,
    Welcome,
)

KEY = b"k" * 32


def pair(server_key: bytes = KEY, client_key: bytes = KEY) -> tuple[Connection, Connection]:
    """A server and client connection after a completed handshake."""
    server, client = Connection(Role.SERVER, server_key), Connection(Role.CLIENT, client_key)
    client.receive_data(server.start())
    assert isinstance(client.next_event(), ServerHello)
    server.receive_data(client.hello({"python": "3.11"}))
    hello = server.next_event()
    assert isinstance(hello, ClientHello) and hello.info == {"python": "3.11"}
    client.receive_data(server.send(Welcome({"leek": "x"})))
    assert isinstance(client.next_event(), Welcome)
    return server, client


def test_roundtrip_push_and_requests():
    server, client = pair()
    tasks = (
        TaskRecord("m.f", b"\x80payload", "mail", "1, 2", 5, 2.5, -7, 1.8e9, "k1", "only-one"),
        TaskRecord("m.g", b""),
    )
    server.receive_data(client.send(Push(tasks)) + client.send(Request("status", {"id": 7})))
    assert server.next_event() == Push(tasks)
    assert server.next_event() == Request("status", {"id": 7})
    assert server.next_event() is NEED_DATA
    client.receive_data(server.send(Pushed((1, 2))) + server.send(Reply({"a": 1})))
    assert client.next_event() == Pushed((1, 2))
    assert client.next_event() == Reply({"a": 1})


def test_byte_by_byte_delivery_gives_the_same_events():
    server, client = pair()
    data = client.send(Push((TaskRecord("m.f", b"x" * 1000),))) + client.send(Request("ping"))
    events = []
    for i in range(len(data)):
        server.receive_data(data[i : i + 1])
        while (e := server.next_event()) is not NEED_DATA:
            events.append(e)
    assert [type(e) for e in events] == [Push, Request]


def test_client_notices_wrong_secret_before_sending_anything():
    server, client = Connection(Role.SERVER, KEY), Connection(Role.CLIENT, b"other")
    client.receive_data(server.start())
    with pytest.raises(ProtocolError) as err:
        client.next_event()
    assert err.value.code == ErrorCode.AUTH


def test_server_refuses_a_hello_with_a_bad_tag():
    server, client = Connection(Role.SERVER, KEY), Connection(Role.CLIENT, KEY)
    client.receive_data(server.start())
    client.next_event()
    hello = bytearray(client.hello({}))
    hello[-1] ^= 1
    server.receive_data(bytes(hello))
    with pytest.raises(ProtocolError) as err:
        server.next_event()
    assert err.value.code == ErrorCode.AUTH
    assert server.next_event() is CLOSED


def test_tampered_payload_is_refused_before_decoding():
    server, client = pair()
    frame = bytearray(client.send(Request("ping")))
    frame[10] ^= 0x20
    server.receive_data(bytes(frame))
    with pytest.raises(ProtocolError) as err:
        server.next_event()
    assert err.value.code == ErrorCode.AUTH


def test_frame_replayed_on_another_connection_is_refused():
    server1, client1 = pair()
    captured = client1.send(Push((TaskRecord("m.f", b"evil"),)))
    server2, _ = pair()
    server2.receive_data(captured)
    with pytest.raises(ProtocolError) as err:
        server2.next_event()
    assert err.value.code == ErrorCode.AUTH


def test_frame_replayed_on_the_same_connection_is_refused():
    server, client = pair()
    frame = client.send(Request("ping"))
    server.receive_data(frame + frame)
    assert server.next_event() == Request("ping")
    with pytest.raises(ProtocolError):
        server.next_event()


def test_oversized_length_is_refused_from_its_four_bytes():
    server, _ = pair()
    server.receive_data(struct.pack("!I", 2**32 - 1))
    with pytest.raises(ProtocolError) as err:
        server.next_event()
    assert err.value.code == ErrorCode.TOO_LARGE


def test_sender_refuses_frames_over_the_limit():
    server = Connection(Role.SERVER, KEY, max_frame=2048)
    client = Connection(Role.CLIENT, KEY, max_frame=2048)
    client.receive_data(server.start())
    client.next_event()
    client.hello({})
    with pytest.raises(LocalProtocolError):
        client.send(Push((TaskRecord("m.f", b"x" * 4096),)))


def test_truncated_stream_at_eof_is_an_error():
    server, client = pair()
    frame = client.send(Request("ping"))
    server.receive_data(frame[:-3])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(ProtocolError):
        server.next_event()


def test_clean_eof_is_closed():
    server, _ = pair()
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_request_before_handshake_is_refused():
    server = Connection(Role.SERVER, KEY)
    server.start()
    with pytest.raises(LocalProtocolError):
        server.send(Reply(1))
    assert server.send(Error(ErrorCode.AUTH, "no"))  # an error may go out, tagged with the secret


def test_unknown_request_op_is_refused_both_ways():
    server, client = pair()
    with pytest.raises(LocalProtocolError):
        client.send(Request("rm -rf"))


def test_error_frames_decode_to_codes():
    server, client = pair()
    client.receive_data(server.send(Error(ErrorCode.VERSION, "versions differ")))
    assert client.next_event() == Error(ErrorCode.VERSION, "versions differ")


def test_client_reads_handshake_refusal():
    server, client = Connection(Role.SERVER, KEY), Connection(Role.CLIENT, KEY)
    client.receive_data(server.start())
    client.next_event()
    server.receive_data(client.hello({}))
    server.next_event()
    client.receive_data(server.send(Error(ErrorCode.REJECTED, "too many connections")))
    assert client.next_event() == Error(ErrorCode.REJECTED, "too many connections")


def test_task_encoding_rejects_garbage():
    good = encode_tasks([TaskRecord("m.f", b"abc", "q", "p", 3, 1.5)])
    assert decode_tasks(good)[0].payload == b"abc"
    for bad in (good[:-1], good + b"x", struct.pack("!I", 0), struct.pack("!I", 10**6), b""):
        with pytest.raises(ProtocolError):
            decode_tasks(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_after_handshake_parse_or_raise(data: bytes):
    server, _ = pair()
    server.receive_data(data)
    try:
        for _ in range(100):
            if server.next_event() in (NEED_DATA, CLOSED):
                break
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.integers(min_value=1, max_value=64))
def test_random_bytes_as_a_hello_parse_or_raise_in_any_chunking(data: bytes, chunk: int):
    server = Connection(Role.SERVER, KEY)
    server.start()
    try:
        for i in range(0, len(data), chunk):
            server.receive_data(data[i : i + chunk])
            for _ in range(10):
                if server.next_event() in (NEED_DATA, CLOSED):
                    break
    except ProtocolError:
        pass
