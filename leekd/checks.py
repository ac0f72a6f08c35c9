"""System checks for ``settings.LEEK`` so mistakes show up in ``manage.py check``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

KNOWN = {
    "kill_after",
    "node",
    "lease",
    "hosts",
    "running_file",
    "host",
    "port",
    "secret",
    "workers",
    "max_retries",
    "retry_delay",
    "timeout",
    "db",
    "grace",
    "max_frame",
    "max_connections",
    "idle_timeout",
    "handshake_timeout",
    "unix",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "retention",
    "max_deaths",
    "autodiscover",
    "on_commit",
    "eager",
    "capture",
    "metrics_port",
    "metrics_host",
}


@checks.register()
def check_leek_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    value = getattr(settings, "LEEK", {})
    if not isinstance(value, dict):
        return [
            checks.Error(
                "settings.LEEK must be a dict.", hint="LEEK = {'port': 8002}", id="leekd.E001"
            )
        ]
    out: list[checks.CheckMessage] = []
    for key in sorted(set(value) - KNOWN):
        out.append(
            checks.Warning(
                f"settings.LEEK has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(KNOWN))}.",
                id="leekd.W001",
            )
        )
    port = value.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        out.append(
            checks.Error(f"settings.LEEK['port'] must be 1..65535, not {port!r}.", id="leekd.E002")
        )
    workers = value.get("workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        out.append(
            checks.Error(
                f"settings.LEEK['workers'] must be >= 1, not {workers!r}.", id="leekd.E003"
            )
        )
    return out
