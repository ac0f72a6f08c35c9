"""leekd's configuration: flags > environment > ``settings.LEEK`` > defaults."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
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
    workers: int = 4  # the default queue's pool
    queues: dict[str, int] | None = None  # pool size per named queue; None: one shared pool
    max_retries: int = 3  # attempts per task, as django-queue's MAX_RETRIES
    retry_delay: float = 1.0  # first backoff; doubles per attempt
    timeout: float = 0.0  # default per-task time limit, 0 = none
    grace: float = 30.0  # how long running tasks may take to finish on stop
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 1024
    idle_timeout: float = 600.0  # an authenticated connection silent this long is closed
    handshake_timeout: float = 10.0  # from connect to a verified hello (TLS included)
    unix: str | None = None  # listen on this Unix-domain socket instead of TCP
    local_socket: bool = True  # with plain TCP on Linux, also a local socket for this host
    tls_cert: str | None = None  # PEM certificate chain: serve TCP inside TLS
    tls_key: str | None = None
    max_deaths: int = 2  # times leekd may die running a task before it is failed
    kill_after: float = 2.0  # seconds past a time limit before a stuck worker is retired
    running_file: str | None = None  # crash ledger; default beside the SQLite file
    retention: float = 0.0  # seconds finished records are kept ("30d" in settings); 0 = forever
    wal_limit: int = 64 * 1024 * 1024  # bytes of SQLite log before a truncating checkpoint
    payload_memory: int = 256 * 1024 * 1024  # bytes of waiting payloads held in memory
    settings: str | None = None  # Django settings module; None = embedded SQLite
    autodiscover: bool = True  # import each installed app's tasks module at start
    node: str | None = None  # this node's name on a shared PostgreSQL; default host:port
    lease: float = 30.0  # a node silent this long is dead and its tasks are taken over
    metrics_port: int | None = None  # serve Prometheus metrics here (0: any free port)
    metrics_host: str = DEFAULT_HOST
    schedule: dict[str, Any] = field(default_factory=dict)  # periodic schedules by name
    jobs: dict[str, Any] = field(default_factory=dict)  # multi-step jobs: name → steps

    def validate(self) -> Config:
        if not 0 <= self.port <= 65535:
            raise LeekConfigError(f"port {self.port} is out of range 0..65535")
        if self.workers < 1:
            raise LeekConfigError(f"workers must be at least 1, not {self.workers}")
        if self.queues is not None:
            queues = check_queues(self.queues, "queues")
            # The default queue is always served: plain pushes go there.
            self.workers = queues.pop("default", self.workers)
            self.queues = {"default": self.workers, **queues}
        if self.max_retries < 1:
            raise LeekConfigError(
                f"max_retries counts attempts and must be at least 1, not {self.max_retries}"
            )
        if self.grace < 0 or self.retry_delay < 0 or self.timeout < 0:
            raise LeekConfigError("grace, retry_delay and timeout must not be negative")
        if not 0.5 <= self.lease <= 86400:
            raise LeekConfigError(f"lease must be 0.5 s to a day, not {self.lease:g}")
        if self.node is not None and not 0 < len(self.node) <= 100:
            raise LeekConfigError("node names are 1 to 100 characters")
        if self.retention < 0:
            raise LeekConfigError("retention must not be negative (0 keeps records forever)")
        if self.wal_limit < 1024 * 1024:
            raise LeekConfigError(
                f"wal_limit must be at least 1 MiB (1048576), not {self.wal_limit}"
            )
        if self.payload_memory < 0:
            raise LeekConfigError("payload_memory must not be negative (0 keeps payloads on disk)")
        if self.max_frame < 1024:
            raise LeekConfigError("max_frame below 1024 bytes cannot carry a task")
        if self.max_connections < 1:
            raise LeekConfigError(f"max_connections must be at least 1, not {self.max_connections}")
        if not (self.idle_timeout > 0 and self.handshake_timeout > 0):
            raise LeekConfigError("idle_timeout and handshake_timeout must be positive")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise LeekConfigError("TLS needs a certificate (--tls-cert) and its key (--tls-key)")
        if self.unix and self.tls_cert:
            raise LeekConfigError("TLS is for TCP; a Unix socket never leaves this host")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise LeekConfigError(f"metrics port {self.metrics_port} is out of range 0..65535")
        if self.unix and len(os.fsencode(self.unix)) > 107:
            raise LeekConfigError(f"Unix socket path too long (107 bytes at most): {self.unix}")
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def pools(self) -> dict[str, int]:
        """Worker threads per pool: each named queue's, or the one pool every queue shares."""
        return dict(self.queues) if self.queues is not None else {"default": self.workers}


MAX_QUEUE_NAME = 100  # the column's length
MAX_POOL = 1000  # threads in one pool: beyond this it is a typo


def check_queues(value: Any, source: str) -> dict[str, int]:
    """``{"default": 4, "mail": 1}``: names of at most 100 characters, pools of 1..1000."""
    if not isinstance(value, dict) or not value:
        raise LeekConfigError(
            f"{source} must be a dict of queue name to worker count, e.g. "
            f"{{'default': 4, 'mail': 1}}, not {value!r}"
        )
    out: dict[str, int] = {}
    for name, size in value.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_QUEUE_NAME:
            raise LeekConfigError(
                f"{source}: a queue name is a non-empty string of at most {MAX_QUEUE_NAME} "
                f"characters, not {name!r}"
            )
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_POOL:
            raise LeekConfigError(
                f"{source}: queue {name!r} needs 1..{MAX_POOL} workers, not {size!r}"
            )
        out[name] = size
    return out


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
    "db": "LEEK_DB",
    "workers": "LEEK_WORKERS",
    "unix": "LEEK_UNIX",
    "tls_cert": "LEEK_TLS_CERT",
    "tls_key": "LEEK_TLS_KEY",
    "wal_limit": "LEEK_WAL_LIMIT",
    "payload_memory": "LEEK_PAYLOAD_MEMORY",
    "node": "LEEK_NODE",
    "lease": "LEEK_LEASE",
    "metrics_port": "LEEK_METRICS_PORT",
    "metrics_host": "LEEK_METRICS_HOST",
}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number, or text like "45s", "30m", "12h", "7d", "1w", "1d12h"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"{value!r} is not a duration; use e.g. 45s, 30m, 12h, 7d, 1w or 1d12h"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 <= seconds < 1e10:
        raise ValueError(f"{value!r} is not a non-negative duration")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration``, to two units: "7d", "1d12h", "3m20s", "12s"."""
    left = max(int(round(seconds)), 0)
    parts: list[str] = []
    for unit in "dhms":
        size = _UNITS[unit]
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2 or not left and parts:
            break
    return "".join(parts)


def _coerce(name: str, value: Any, source: str) -> Any:
    if name == "queues":
        if isinstance(value, list | tuple):  # from --queue NAME=N, repeated
            value = dict(value)
        return check_queues(value, source)
    if name in ("retention", "lease"):
        try:
            return parse_duration(value or 0) if name == "retention" else parse_duration(value)
        except ValueError as exc:
            raise LeekConfigError(f"{source}: {exc}") from None
    kind = {f.name: f.type for f in fields(Config)}[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise LeekConfigError(f"{source}: {name} must be True or False, not {value!r}")
        return value
    try:
        if kind == "int" or (kind == "int | None" and value is not None):
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise LeekConfigError(f"{source}: {name} must be a number, not {value!r}") from None
    return value


def resolve(flags: dict[str, Any] | None = None, *, use_django: bool = True) -> Config:
    """Build the config; ``flags`` holds command-line values (None = not given)."""
    values: dict[str, Any] = {}
    level: dict[str, int] = {}  # where each value came from: 1 settings, 2 env, 3 flags
    leek = (django_leek_settings() if use_django else None) or {}
    for f in fields(Config):
        # The secret's other sources (env, settings, SECRET_KEY, key file) are resolved by
        # leek.conf.resolve_secret, which also reports where it came from.
        if f.name in leek and f.name != "secret":
            values[f.name] = _coerce(f.name, leek[f.name], f"settings.LEEK[{f.name!r}]")
            level[f.name] = 1
    for name, env in _ENV.items():
        if os.environ.get(env):
            values[name] = _coerce(name, os.environ[env], env)
            level[name] = 2
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
            level[name] = 3
    queues = values.get("queues")
    if queues is not None and "workers" in values and "default" in queues:
        # --workers (or LEEK_WORKERS) is the default queue's pool; the more specific source wins.
        if level["workers"] > level["queues"]:
            queues["default"] = values["workers"]
        elif level["workers"] == level["queues"] and queues["default"] != values["workers"]:
            raise LeekConfigError(
                f"the default queue's pool is given twice: workers={values['workers']} and "
                f"queues['default']={queues['default']}; give one of them"
            )
    return Config(**values).validate()
