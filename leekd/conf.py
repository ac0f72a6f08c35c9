"""leekd's configuration: flags > environment > ``settings.LEEK`` > defaults."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from typing import Any

from leek.conf import DEFAULT_HOST, DEFAULT_PORT, django_leek_settings
from leek.errors import LeekConfigError
from leek.protocol import DEFAULT_MAX_FRAME


@dataclass
class Config:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    secret: str | None = None
    db: str = "leek.sqlite3"
    workers: int = 4
    max_retries: int = 3  # attempts per task, as django-queue's MAX_RETRIES
    retry_delay: float = 1.0  # first backoff; doubles per attempt
    timeout: float = 0.0  # default per-task time limit, 0 = none
    grace: float = 30.0  # how long running tasks may take to finish on stop
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 1024
    idle_timeout: float = 600.0  # an authenticated connection silent this long is closed
    handshake_timeout: float = 10.0
    max_deaths: int = 2  # times leekd may die running a task before it is failed
    kill_after: float = 2.0  # seconds past a time limit before a stuck worker is retired
    running_file: str | None = None  # crash ledger; default beside the SQLite file
    settings: str | None = None  # Django settings module; None = embedded SQLite

    def validate(self) -> Config:
        if not 0 <= self.port <= 65535:
            raise LeekConfigError(f"port {self.port} is out of range 0..65535")
        if self.workers < 1:
            raise LeekConfigError(f"workers must be at least 1, not {self.workers}")
        if self.max_retries < 1:
            raise LeekConfigError(
                f"max_retries counts attempts and must be at least 1, not {self.max_retries}"
            )
        if self.grace < 0 or self.retry_delay < 0 or self.timeout < 0:
            raise LeekConfigError("grace, retry_delay and timeout must not be negative")
        if self.max_frame < 1024:
            raise LeekConfigError("max_frame below 1024 bytes cannot carry a task")
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ENV = {
    "host": "LEEK_HOST",
    "port": "LEEK_PORT",
    "secret": "LEEK_SECRET",
    "db": "LEEK_DB",
    "workers": "LEEK_WORKERS",
}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise LeekConfigError(f"{source}: {name} must be a number, not {value!r}") from None
    return value


def resolve(flags: dict[str, Any] | None = None, *, use_django: bool = True) -> Config:
    """Build the config; ``flags`` holds command-line values (None = not given)."""
    values: dict[str, Any] = {}
    leek = (django_leek_settings() if use_django else None) or {}
    for f in fields(Config):
        if f.name in leek:
            values[f.name] = _coerce(f.name, leek[f.name], f"settings.LEEK[{f.name!r}]")
    for name, env in _ENV.items():
        if os.environ.get(env):
            values[name] = _coerce(name, os.environ[env], env)
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return Config(**values).validate()
