"""System checks for ``settings.LEEK`` so mistakes show up in ``manage.py check``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from leek.errors import LeekConfigError

from .conf import check_queues

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
    "queues",
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
    "wal_limit",
    "payload_memory",
    "autodiscover",
    "on_commit",
    "eager",
    "capture",
    "metrics_port",
    "metrics_host",
    "schedule",
    "jobs",
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
    queues = value.get("queues")
    if queues is not None:
        try:
            check_queues(queues, "settings.LEEK['queues']")
        except LeekConfigError as exc:
            out.append(
                checks.Error(
                    f"{exc}.",
                    hint="LEEK = {'queues': {'default': 4, 'mail': 1}}",
                    id="leekd.E006",
                )
            )
    out += _check_schedules_and_jobs(value)
    return out


def _check_schedules_and_jobs(value: dict[str, Any]) -> list[checks.CheckMessage]:
    """Each schedule and job as ``leekd run`` checks it at start, one message per entry."""
    from leek.errors import LeekConfigError
    from leek.periodic import REGISTRY

    from .engine.schedule import import_task_modules, load_entries
    from .engine.steps import resolve_jobs

    out: list[checks.CheckMessage] = []
    schedule = value.get("schedule") or {}
    zone = getattr(settings, "TIME_ZONE", None) or "UTC"
    if not isinstance(schedule, dict):
        schedule = {"?": schedule}
    import_task_modules(schedule)
    for name, spec in {**REGISTRY, **schedule}.items():
        try:
            load_entries({name: spec}, {}, zone)
        except LeekConfigError as exc:
            out.append(checks.Error(f"settings.LEEK: {exc}", id="leekd.E004"))
    jobs = value.get("jobs")
    for name, steps in jobs.items() if isinstance(jobs, dict) else [("?", jobs)]:
        if jobs is None:
            break
        try:
            resolve_jobs({name: steps} if isinstance(jobs, dict) else jobs)
        except LeekConfigError as exc:
            out.append(checks.Error(str(exc), id="leekd.E005"))
    return out
