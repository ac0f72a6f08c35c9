"""The systemd unit: systemd's own verifier, and leekd's readiness protocol on a real socket."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from ..helpers import ROOT

UNIT = ROOT / "systemd" / "leekd.service"
ENV_EXAMPLE = ROOT / "systemd" / "leekd.env.example"


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def render(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at this environment's leekd (verify checks it exists)."""
    leekd = Path(sys.executable).parent / "leekd"
    assert leekd.exists(), f"no leekd console script next to {sys.executable}"
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={leekd}", UNIT.read_text())
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    path = tmp_path / "leekd.service"
    path.write_text(text)
    return path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        reason = "systemd-analyze is not installed here (Debian: apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the unit: {reason}")
        pytest.skip(reason)
    return subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path):
    out = verify(render(tmp_path))
    # verify exits 0 on unknown keys and bad values alike: only silence means clean.
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_the_verify_check_would_catch_a_bad_key(tmp_path):
    out = verify(render(tmp_path, extra="ProtectSistem=strict\n"))
    assert "Unknown key" in out.stderr and "ProtectSistem" in out.stderr


def test_unit_runs_leekd_in_the_foreground_with_notify_and_hardening():
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert s["ExecStart"][0].split()[-1] == "run", "systemd supervises: no `leekd start` here"
    # Restarted after any exit it was not asked for: a task calling os._exit(0) included.
    assert s["Restart"] == ["always"]
    assert int(s["LimitNOFILE"][0]) >= 4096, "1,024 open files is less than max_connections"
    assert int(s["TimeoutStopSec"][0]) >= 30 + 15, "must cover the default grace and final writes"
    assert s["KillSignal"] == ["SIGTERM"]
    assert s["EnvironmentFile"] == ["-/etc/leekd/leekd.env"]
    assert s["StateDirectory"] == ["leekd"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "User": "leekd",
    }.items():
        assert s[key] == [value], key


def test_env_example_sets_leek_variables_and_keeps_the_database_in_the_state_directory():
    s = unit_settings(ENV_EXAMPLE.read_text())
    assert set(s) == {
        "LEEK_HOST",
        "LEEK_PORT",
        "LEEK_WORKERS",
        "LEEK_DB",
        "LEEK_SECRET_FILE",
    }
    assert s["LEEK_DB"][0].startswith("/var/lib/leekd/")
    assert s["LEEK_SECRET_FILE"][0].startswith("/var/lib/leekd/")
    assert "#DJANGO_SETTINGS_MODULE=" in ENV_EXAMPLE.read_text()


def _bind(kind: str) -> tuple[socket.socket, str, str | None]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "abstract":
        name = f"leek-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        return sock, "@" + name, None
    directory = tempfile.mkdtemp(prefix="leek-")  # AF_UNIX paths are limited to 107 bytes
    path = f"{directory}/notify"
    sock.bind(path)
    return sock, path, directory


def receive(sock: socket.socket, timeout: float = 15.0) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_leekd_run_sends_ready_then_stopping(leekd_proc, kind):
    sock, address, directory = _bind(kind)
    try:
        # Given leekd run under a (simulated) systemd with Type=notify,
        p = leekd_proc(NOTIFY_SOCKET=address)
        # it reports readiness once it listens, with its pid and address,
        ready = receive(sock)
        assert ready["READY"] == "1"
        assert p.proc is not None and ready["MAINPID"] == str(p.proc.pid)
        assert ready["STATUS"] == f"listening on 127.0.0.1:{p.port}"
        # and that it is stopping when systemd sends SIGTERM.
        p.signal(signal.SIGTERM)
        assert receive(sock) == {"STOPPING": "1"}
        assert p.wait(30) == 0
    finally:
        sock.close()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
