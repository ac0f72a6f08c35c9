"""Who can get in, and what a client can hold: TLS, Unix socket, limits, authentication.

Every test runs against a real leekd (in-process on an ephemeral port, or a subprocess)
and a real socket; each wait is bounded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import leek
from leek.protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    Error,
    ErrorCode,
    FrameType,
    ProtocolError,
    Reply,
    Request,
    Role,
    State,
)

from .. import tasks
from ..helpers import SECRET, subprocess_env, wait_for
from ..rawpeer import RawPeer, assert_serves, error_code, frame, frame_types

# ---------------------------------------------------------------- fixtures


def _make_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 only (not for "localhost")."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("TLS tests need the cryptography package or the openssl command")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"]
            + ["-subj", "/CN=leek-test", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return cert, key
    import ipaddress

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leek-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pkey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pkey, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="leek-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LEEK_SECRET anywhere: leek falls back to a key file, here under tmp_path."""
    monkeypatch.delenv("LEEK_SECRET", raising=False)
    key_file = tmp_path / "conf" / "leek" / "secret"
    monkeypatch.setenv("LEEK_SECRET_FILE", str(key_file))
    return key_file


def leekd_command(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "leekd", "run", "--db", str(db), *args]


def run_leekd_briefly(db: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``leekd run`` that is expected to refuse to start: its exit code and output."""
    return subprocess.run(
        leekd_command(db, *args),
        env=env,
        cwd=str(db.parent),
        capture_output=True,
        text=True,
        timeout=60,
    )


# -------------------------------------------------------------------- TLS


def test_tls_push_and_ping_with_hostname_check(make_server, tls_files, tmp_path):
    cert, key = tls_files
    app = make_server(tls_cert=str(cert), tls_key=str(key))
    with leek.Client(port=app.port, secret=SECRET, tls=True, tls_ca=str(cert)) as c:
        assert c.ping()["status"] == "ok"
        assert isinstance(c._sock, ssl.SSLSocket)
        assert c._sock.version() in ("TLSv1.2", "TLSv1.3")
        task_id = c.push(tasks.touch, (str(tmp_path), "over-tls"))
        wait_for(lambda: (tmp_path / "over-tls").exists())
        assert task_id > 0
    # The certificate names 127.0.0.1 only: reaching the same server as "localhost" fails.
    with pytest.raises(leek.LeekConnectionError, match="did not verify"):
        leek.Client(host="localhost", port=app.port, secret=SECRET, tls_ca=str(cert)).ping()
    # Without the CA that signed it, the certificate is not trusted either.
    with pytest.raises(leek.LeekConnectionError, match="did not verify"):
        leek.Client(port=app.port, secret=SECRET, tls=True).ping()


def test_tls_from_env(make_server, tls_files, monkeypatch):
    cert, key = tls_files
    app = make_server(tls_cert=str(cert), tls_key=str(key))
    monkeypatch.setenv("LEEK_TLS", "yes")
    monkeypatch.setenv("LEEK_TLS_CA", str(cert))
    with leek.Client(port=app.port, secret=SECRET) as c:
        assert c.transport.tls and c.ping()["status"] == "ok"
    monkeypatch.setenv("LEEK_TLS", "maybe")
    with pytest.raises(leek.LeekConfigError, match="LEEK_TLS"):
        leek.Client(port=app.port)


def test_tls_and_plain_peers_fail_clearly_and_leekd_keeps_serving(make_server, tls_files, tmp_path):
    cert, key = tls_files
    tls_app = make_server(tls_cert=str(cert), tls_key=str(key), handshake_timeout=0.5)
    plain_app = make_server()
    # A plain client at a TLS port hears nothing it understands; leekd hangs up on it.
    with pytest.raises(leek.LeekConnectionError, match="closed the connection"):
        leek.Client(port=tls_app.port, secret=SECRET, timeout=5).ping()
    # A TLS client at a plain port fails the TLS handshake, with a hint.
    with pytest.raises(leek.LeekConnectionError, match="TLS handshake .* failed.*--tls-cert"):
        leek.Client(port=plain_app.port, secret=SECRET, tls_ca=str(cert)).ping()
    assert_serves(tmp_path, port=tls_app.port, tls_ca=str(cert))
    assert_serves(tmp_path, port=plain_app.port)


def test_tls_below_1_2_is_refused(make_server, tls_files):
    from leekd.net.listen import server_tls_context

    cert, key = tls_files
    assert server_tls_context(str(cert), str(key)).minimum_version == ssl.TLSVersion.TLSv1_2
    app = make_server(tls_cert=str(cert), tls_key=str(key))

    def handshake(highest: ssl.TLSVersion) -> str | None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are, rightly
            ctx.minimum_version = min(highest, ssl.TLSVersion.TLSv1_2)
            ctx.maximum_version = highest
            raw = socket.create_connection(("127.0.0.1", app.port), timeout=5)
            with raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version()

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        handshake(ssl.TLSVersion.TLSv1_1)


def test_tls_flags_on_the_command_line(leekd_proc, tls_files, tmp_path):
    cert, key = tls_files
    p = leekd_proc("--tls-cert", str(cert), "--tls-key", str(key))
    assert f"listening on 127.0.0.1:{p.port} with TLS" in p.output()
    assert_serves(tmp_path, port=p.port, tls_ca=str(cert))
    assert p.stop() == 0
    env = subprocess_env()
    half = run_leekd_briefly(tmp_path / "b.sqlite3", "--tls-cert", str(cert), env=env)
    assert half.returncode == 78 and "--tls-key" in half.stderr
    bad = run_leekd_briefly(
        tmp_path / "b.sqlite3", "--tls-cert", str(key), "--tls-key", str(key), env=env
    )
    assert bad.returncode == 78 and "cannot load TLS certificate" in bad.stderr


# -------------------------------------------------------------- Unix socket


def test_unix_socket_is_0600_serves_and_is_removed_on_stop(make_server, short_dir, tmp_path):
    path = short_dir / "leekd.sock"
    app = make_server(unix=str(path))
    assert app.port is None
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert_serves(tmp_path, unix=str(path))
    with leek.Client(unix=str(path), secret=SECRET) as c:
        assert c.address == f"unix:{path}"
    app.request_stop()
    wait_for(lambda: not path.exists(), timeout=15, what="socket file to be removed")


def test_unix_socket_refuses_a_live_one_replaces_a_stale_one(make_server, short_dir, tmp_path):
    path = short_dir / "leekd.sock"
    first = make_server(unix=str(path))
    with pytest.raises(leek.LeekConfigError, match="another server is listening"):
        make_server(unix=str(path))
    assert_serves(tmp_path, unix=str(path))  # the first one was left alone
    first.request_stop()
    wait_for(lambda: not path.exists(), timeout=15)
    # A socket file nobody listens on (a leekd that was killed) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    make_server(unix=str(path))
    assert_serves(tmp_path, unix=str(path))
    # Anything that is not a socket is never removed.
    other = short_dir / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(leek.LeekConfigError, match="not a socket"):
        make_server(unix=str(other))
    assert other.read_text() == "keep me"


def test_unix_socket_from_the_command_line_with_a_key_file(no_secret, short_dir, tmp_path):
    # Given leekd on a Unix socket with no explicit secret (the key file is enough locally),
    path = short_dir / "leekd.sock"
    env = subprocess_env(LEEK_SECRET_FILE=str(no_secret))
    env.pop("LEEK_SECRET")
    log = tmp_path / "leekd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            leekd_command(tmp_path / "u.sqlite3", "--unix", str(path)),
            env=env,
            cwd=str(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: "listening on unix:" in log.read_text() or proc.poll() is not None,
            timeout=30,
        )
        assert proc.poll() is None, log.read_text()
        # when a client of the same user finds it through LEEK_UNIX and the key file,
        os.environ["LEEK_UNIX"] = str(path)
        try:
            assert_serves(tmp_path, secret=None)
        finally:
            del os.environ["LEEK_UNIX"]
        assert stat.S_IMODE(no_secret.stat().st_mode) == 0o600
        # then SIGTERM stops it cleanly and removes the socket.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# ------------------------------------------------------ secrets and binding


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_non_loopback_needs_an_explicit_secret_even_with_tls(no_secret, tmp_path, tls_files, tls):
    cert, key = tls_files
    env = subprocess_env(LEEK_SECRET_FILE=str(no_secret))
    env.pop("LEEK_SECRET")
    extra = ["--tls-cert", str(cert), "--tls-key", str(key)] if tls else []
    result = run_leekd_briefly(
        tmp_path / "n.sqlite3", "--host", "0.0.0.0", "--port", "0", *extra, env=env
    )
    assert result.returncode == 78
    assert "refusing to listen on 0.0.0.0 without an explicit secret" in result.stderr
    assert "LEEK_SECRET" in result.stderr


def test_key_file_is_created_0600_and_a_loose_one_is_refused(no_secret):
    from leek.conf import resolve_secret

    old = os.umask(0)  # even with the most permissive umask
    try:
        created = resolve_secret(create=True)
    finally:
        os.umask(old)
    assert created.source == f"key file {no_secret}"
    assert stat.S_IMODE(no_secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(no_secret.parent.stat().st_mode) == 0o700
    assert resolve_secret().key == created.key  # what a local client reads
    no_secret.chmod(0o640)
    with pytest.raises(leek.LeekConfigError, match="readable by others.*chmod 600"):
        resolve_secret()


# ------------------------------------------------------------------ limits


def test_silent_or_trickling_client_is_dropped_after_the_handshake_timeout(make_server):
    app = make_server(handshake_timeout=0.5)
    with RawPeer(app.port) as silent, RawPeer(app.port) as trickler:
        t0 = time.monotonic()
        silent.recv_frame()
        trickler.recv_frame()
        # A hello that never ends, one byte every 50 ms: the clock runs from the connect.
        took = trickler.trickle(frame(FrameType.CLIENT_HELLO, b"x" * 967), 0.05, limit=3.0)
        assert took is not None and took < 1.5, took
        silent.read_until_closed(timeout=3)
        assert 0.4 < time.monotonic() - t0 < 3.5
    wait_for(lambda: not app.connections, timeout=5)


def test_half_a_frame_after_the_handshake_is_dropped_after_the_idle_timeout(make_server, tmp_path):
    app = make_server(idle_timeout=0.6)
    with RawPeer(app.port) as stalled, RawPeer(app.port) as trickler:
        conn = stalled.handshake()
        half = conn.send(Request("ping"))
        stalled.send(half[: len(half) // 2])
        tconn = trickler.handshake()
        # Bytes keep coming but no frame ever completes: only whole frames count as activity.
        data = tconn.send(Request("stats", {"pad": "x" * 2000}))
        took = trickler.trickle(data, 0.05, limit=3.0)
        assert took is not None and took < 1.5, took
        stalled.read_until_closed(timeout=3)
    # An ordinary client that went idle reconnects by itself on its next call.
    with leek.Client(port=app.port, secret=SECRET) as c:
        assert c.ping()["status"] == "ok"
        time.sleep(1.2)
        assert c.ping()["status"] == "ok"
    assert_serves(tmp_path, port=app.port)


def test_connections_over_the_limit_are_refused_and_the_others_keep_working(
    make_server, tmp_path, caplog
):
    app = make_server(max_connections=3)
    with leek.Client(port=app.port, secret=SECRET) as first:
        assert first.ping()["status"] == "ok"
        a, b = RawPeer(app.port), RawPeer(app.port)
        a.recv_frame(), b.recv_frame()  # both counted
        with caplog.at_level(logging.WARNING, logger="leekd.server"):
            with pytest.raises(leek.LeekUnavailable, match="max-connections"):
                leek.Client(port=app.port, secret=SECRET).ping()
            with RawPeer(app.port) as extra:  # what a refused peer sees: one error, then EOF
                assert error_code(extra.read_until_closed()) == ErrorCode.UNAVAILABLE
        assert any("refusing 127.0.0.1:" in r.getMessage() for r in caplog.records)
        assert first.ping()["status"] == "ok"  # the connection already in is unaffected
        a.close()
        wait_for(lambda: len(app.connections) < 3, timeout=5)
        assert_serves(tmp_path, port=app.port)
        b.close()


def test_oversized_frames_and_batches_are_refused_with_a_reason(make_server, tmp_path):
    import struct

    from leek.protocol import MAX_TASKS_PER_PUSH

    app = make_server(max_frame=4096)
    with RawPeer(app.port) as peer:
        conn = peer.handshake()
        peer.send(conn.send(Request("stats", {"pad": "x" * 3000})))  # under the limit: fine
        conn.receive_data(peer.recv_frame())
        assert isinstance(conn.next_event(), Reply)
        peer.send(struct.pack("!I", 8192) + b"\x14" + b"x" * 100)
        conn.receive_data(peer.read_until_closed())
        assert conn.next_event() == Error(
            ErrorCode.TOO_LARGE, "frame of 8192 bytes exceeds the 4096-byte limit"
        )
    # A push of one task too many: the count is checked before the tasks are read.
    with RawPeer(app.port) as peer:
        conn = peer.handshake()
        body = struct.pack("!I", MAX_TASKS_PER_PUSH + 1)
        key, seq = conn._key, conn._send_seq
        assert key is not None
        from leek.frames import frame_tag

        peer.send(frame(FrameType.PUSH, body, frame_tag(key, b"C", seq, FrameType.PUSH, body)))
        conn._send_seq += 1
        conn.receive_data(peer.read_until_closed())
        event = conn.next_event()
        assert isinstance(event, Error) and event.code == ErrorCode.TOO_LARGE
        assert str(MAX_TASKS_PER_PUSH) in event.message
    # A real client gets the same as a typed exception.
    with leek.Client(port=app.port, secret=SECRET, max_frame=1 << 20) as c:
        with pytest.raises(leek.LeekRejected, match="exceeds the 4096-byte limit") as err:
            c.push(tasks.add, ("x" * 10_000, "y"))
        assert err.value.code == "too_large"
    assert_serves(tmp_path, port=app.port)


def test_a_peer_that_reads_no_answers_cannot_grow_leekd_memory(make_server, tmp_path):
    # Given an authenticated peer that pipelines requests and never reads an answer,
    app = make_server()
    with RawPeer(app.port, bufsize=16384) as peer:
        conn = peer.handshake()
        peer.sock.setblocking(False)
        pending, sent, blocked_since = b"", 0, None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not pending:
                pending = b"".join(conn.send(Request("ping")) for _ in range(200))
                sent += 200
            try:
                pending = pending[peer.sock.send(pending) :]
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break
                time.sleep(0.01)
        # then leekd stops reading from it (our sends block) and buffers little for it,
        assert blocked_since is not None, f"leekd kept reading: {sent} requests"
        (mine,) = [c for c in app.connections if c.conn.state is State.READY]
        assert mine.transport is not None
        assert mine.transport.get_write_buffer_size() < 1 << 20
        # while everyone else is served as usual.
        assert_serves(tmp_path, port=app.port)
        print(f"unread answers: stopped after {sent} pipelined requests")


# ------------------------------------------------------- authentication


def _purge() -> Request:
    return Request("purge", {"states": ["failed"], "older_than": 0})


def test_unauthenticated_peers_cannot_purge_or_drain(make_server, tmp_path):
    app = make_server()
    with leek.Client(port=app.port, secret=SECRET) as c:
        failed = c.push(tasks.fail, max_retries=1)
        wait_for(lambda: c.status(failed)["state"] == "failed")
    # An eavesdropper's capture of a real session: its hello and a purge it sends.
    with RawPeer(app.port) as legit:
        conn = legit.handshake()
        captured_hello, captured_purge = legit.hello, conn.send(_purge())
    purge_json = json.dumps({"op": "purge", "states": ["failed"], "older_than": 0}).encode()
    drain_json = b'{"op":"drain"}'
    attacks = {
        "request instead of a hello": frame(FrameType.REQUEST, purge_json),
        "drain instead of a hello": frame(FrameType.REQUEST, drain_json),
        "hello with a wrong tag, then purge": frame(FrameType.CLIENT_HELLO, os.urandom(16) + b"{}")
        + frame(FrameType.REQUEST, purge_json),
        "replayed hello and purge": captured_hello + captured_purge,
    }
    for what, data in attacks.items():
        with RawPeer(app.port) as peer:
            peer.recv_frame()
            peer.send(data)
            answer = frame_types(peer.read_until_closed())
            assert answer in ([], [FrameType.ERROR]), what  # never welcomed, never answered
    # An authenticated peer sending the same frames is answered (the attacks were well-formed).
    with RawPeer(app.port) as peer:
        conn = peer.handshake()
        peer.send(conn.send(Request("ping")))
        conn.receive_data(peer.recv_frame())
        assert isinstance(conn.next_event(), Reply)
    with leek.Client(port=app.port, secret=SECRET) as c:
        assert c.status(failed)["state"] == "failed"  # not purged
        assert c.ping()["status"] == "ok" and not app.draining  # not draining
    assert_serves(tmp_path, port=app.port)


def test_failed_authentication_is_logged_with_the_peer_and_rate_limited(leekd_proc, tmp_path):
    p = leekd_proc()
    for _ in range(25):
        with RawPeer(p.port) as peer:
            peer.recv_frame()
            peer.send(frame(FrameType.CLIENT_HELLO, os.urandom(16) + b"{}"))
            peer.read_until_closed()
    lines = [line for line in p.output().splitlines() if "authentication failed from" in line]
    assert len(lines) == 10, "\n".join(lines)  # AuthLog's burst per minute
    assert all("authentication failed from 127.0.0.1:" in line for line in lines)
    assert_serves(tmp_path, port=p.port)
    assert p.stop() == 0


def test_suppressed_auth_failures_are_summed_up(make_server, caplog):
    app = make_server()
    app.auth_log.burst = 2
    logger = logging.getLogger("leekd.server")
    logger.addHandler(caplog.handler)  # even if the CLI stopped "leekd" from propagating
    try:
        for _ in range(5):
            with RawPeer(app.port) as peer:
                peer.recv_frame()
                peer.send(frame(FrameType.CLIENT_HELLO, os.urandom(16) + b"{}"))
                peer.read_until_closed()
        app.auth_log.window -= 61  # the minute is over
        with RawPeer(app.port) as peer:
            peer.recv_frame()
            peer.send(frame(FrameType.CLIENT_HELLO, os.urandom(16) + b"{}"))
            peer.read_until_closed()
    finally:
        logger.removeHandler(caplog.handler)
    records = {id(r): r for r in caplog.records}.values()  # the handler may see one twice
    messages = [r.getMessage() for r in records if r.name == "leekd.server"]
    failed = [m for m in messages if m.startswith("authentication failed from 127.0.0.1:")]
    assert len(failed) == 3  # 2 in the first minute, 1 in the next
    assert "3 more failed authentications in the last minute" in messages


def test_client_ignores_a_forged_refusal():
    """A pre-greeting error must carry the secret's tag, or the client treats it as an attack."""
    conn = Connection(Role.CLIENT, SECRET.encode())
    conn.receive_data(frame(FrameType.ERROR, b"\x00\x05go away"))
    with pytest.raises(ProtocolError) as err:
        conn.next_event()
    assert err.value.code == ErrorCode.AUTH
    assert conn.next_event() is CLOSED
    real = Connection(Role.SERVER, SECRET.encode()).send(Error(ErrorCode.UNAVAILABLE, "busy"))
    ok = Connection(Role.CLIENT, SECRET.encode())
    ok.receive_data(real)
    assert ok.next_event() == Error(ErrorCode.UNAVAILABLE, "busy")
    assert ok.next_event() in (CLOSED, NEED_DATA)


def test_transport_settings_are_known_to_the_system_check(django_db):
    from django.test.utils import override_settings

    from leekd.checks import check_leek_settings

    transport = {"unix": "/run/leek.sock", "tls": True, "tls_ca": "ca.pem", "handshake_timeout": 5}
    with override_settings(LEEK={**transport, "tls_cert": "c.pem", "tls_key": "k.pem"}):
        assert check_leek_settings() == []
