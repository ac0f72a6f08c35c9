"""Where the client's settings come from: arguments > environment > ``settings.LEEK`` > defaults.

Django is only consulted when the process has already imported and configured it, so plain
Python programs never pay for it.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LeekConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8002
_SALT = "leek.secret.v1"


def django_leek_settings() -> dict[str, Any] | None:
    """``settings.LEEK`` when Django is imported and configured, else None."""
    if "django.conf" not in sys.modules:
        return None
    from django.conf import settings

    if not settings.configured:
        return None
    value = getattr(settings, "LEEK", {}) or {}
    if not isinstance(value, dict):
        raise LeekConfigError("settings.LEEK must be a dict, e.g. LEEK = {'port': 8002}")
    return value


def django_secret_key() -> str | None:
    if "django.conf" not in sys.modules:
        return None
    from django.conf import settings

    if not settings.configured or getattr(settings, "LEEK_EMBEDDED", False):
        return None  # leekd's built-in settings: its random SECRET_KEY is no shared secret
    return getattr(settings, "SECRET_KEY", None) or None


def derive_secret(secret_key: str) -> bytes:
    """The leek secret derived from Django's SECRET_KEY (salted, so it reveals nothing of it)."""
    import hashlib
    import hmac

    return hmac.new(secret_key.encode(), _SALT.encode(), hashlib.sha256).digest()


def key_file_path() -> Path:
    """Where a standalone leekd keeps its generated key: ``LEEK_SECRET_FILE`` or per user."""
    explicit = os.environ.get("LEEK_SECRET_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "leek" / "secret"


def read_key_file(path: Path) -> bytes | None:
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LeekConfigError(f"cannot read leek's key file {path}: {exc}") from None
    if not data:
        raise LeekConfigError(f"leek's key file {path} is empty; delete it and restart leekd")
    return data


def create_key_file(path: Path) -> bytes:
    """Create the key file with mode 0600 (or read it if another process won the race)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = read_key_file(path)
        assert existing is not None
        return existing
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def check_key_file_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise LeekConfigError(
            f"leek's key file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )


@dataclass(frozen=True)
class Secret:
    """A resolved secret and where it came from (``explicit`` ones may leave loopback)."""

    key: bytes
    source: str

    @property
    def explicit(self) -> bool:
        return self.source in ("argument", "LEEK_SECRET", "settings.LEEK")


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def resolve_secret(explicit: str | bytes | None = None, *, create: bool = False) -> Secret:
    """The secret by precedence; ``create`` lets leekd make the key file when nothing else is set."""
    if explicit:
        return Secret(_as_bytes(explicit), "argument")
    env = os.environ.get("LEEK_SECRET")
    if env:
        return Secret(env.encode(), "LEEK_SECRET")
    leek = django_leek_settings()
    if leek and leek.get("secret"):
        return Secret(_as_bytes(leek["secret"]), "settings.LEEK")
    secret_key = django_secret_key()
    if secret_key:
        return Secret(derive_secret(secret_key), "SECRET_KEY")
    path = key_file_path()
    key = read_key_file(path)
    if key is not None:
        check_key_file_mode(path)
        return Secret(key, f"key file {path}")
    if create:
        return Secret(create_key_file(path), f"key file {path}")
    raise LeekConfigError(
        f"no leek secret: set LEEK_SECRET, settings.LEEK['secret'], or start leekd once so it "
        f"creates {path}"
    )


def _port(value: Any, source: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise LeekConfigError(f"{source}: port must be a number, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise LeekConfigError(f"{source}: port {port} is out of range 0..65535")
    return port


def resolve_address(host: str | None = None, port: int | str | None = None) -> tuple[str, int]:
    leek = django_leek_settings() or {}
    if host is None:
        host = os.environ.get("LEEK_HOST") or leek.get("host") or DEFAULT_HOST
    if port is not None:
        return host, _port(port, "port argument")
    if os.environ.get("LEEK_PORT"):
        return host, _port(os.environ["LEEK_PORT"], "LEEK_PORT")
    if leek.get("port") is not None:
        return host, _port(leek["port"], "settings.LEEK['port']")
    return host, DEFAULT_PORT


@dataclass(frozen=True)
class Transport:
    """How to reach leekd: a Unix socket path, or TCP with or without TLS."""

    unix: str | None = None
    tls: bool = False
    tls_ca: str | None = None


def _flag(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise LeekConfigError(f"{source}: expected true or false, not {value!r}")


def resolve_transport(
    unix: str | None = None,
    tls: bool | None = None,
    tls_ca: str | None = None,
    *,
    tcp_given: bool = False,
) -> Transport:
    """Unix socket or TLS settings by precedence; ``tcp_given``: host/port were arguments."""
    leek = django_leek_settings() or {}
    if unix is None and not tcp_given:
        unix = os.environ.get("LEEK_UNIX") or leek.get("unix") or None
    if tls_ca is None:
        tls_ca = os.environ.get("LEEK_TLS_CA") or leek.get("tls_ca") or None
    if tls is None:
        if os.environ.get("LEEK_TLS"):
            tls = _flag(os.environ["LEEK_TLS"], "LEEK_TLS")
        elif "tls" in leek:
            tls = _flag(leek["tls"], "settings.LEEK['tls']")
        else:
            tls = tls_ca is not None and not unix  # a CA file only makes sense with TLS
    if unix and tls:
        raise LeekConfigError(
            "TLS is for TCP; a Unix socket never leaves this host. Drop tls or unix."
        )
    return Transport(unix=unix, tls=tls, tls_ca=tls_ca)
