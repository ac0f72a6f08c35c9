"""Autodiscovery: at start, import each installed app's ``tasks`` module, as the admin does.

Tasks declared there are then registered before the first push arrives, and a module that
does not import stops leekd at start with the app's name, not at the first task.
"""

from __future__ import annotations

import logging
from importlib import import_module

from leek.errors import LeekConfigError

log = logging.getLogger("leekd.server")


def autodiscover(module: str = "tasks") -> list[str]:
    """Import ``<app>.tasks`` of every installed app that has one; returns their names."""
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    found = []
    for app in apps.get_app_configs():
        if not module_has_submodule(app.module, module):
            continue
        name = f"{app.name}.{module}"
        try:
            import_module(name)
        except Exception as exc:
            raise LeekConfigError(
                f"cannot import {name} (app {app.label!r}): {type(exc).__name__}: {exc}. "
                "Fix it, or set LEEK['autodiscover'] = False to skip task modules at start"
            ) from exc
        found.append(name)
    if found:
        log.info("task modules: %s", ", ".join(found))
    return found
