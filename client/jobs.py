"""``leek.create_job``: start a multi-step job (``settings.LEEK["jobs"]``) on leekd."""

from __future__ import annotations

import json
from typing import Any

from .client import Client, get_client
from .errors import LeekError


def create_job(
    name: str,
    workspace: dict[str, Any] | None = None,
    *,
    queue: str = "default",
    client: Client | None = None,
) -> int:
    """Create the job ``name`` with this workspace (a JSON-serializable dict); returns its
    id once leekd has committed it and queued its first step."""
    workspace = dict(workspace or {})
    try:
        json.dumps(workspace)
    except (TypeError, ValueError) as exc:
        raise LeekError(f"a job's workspace must be JSON-serializable: {exc}") from None
    reply = (client or get_client()).request(
        "create_job", name=name, workspace=workspace, queue=queue
    )
    return int(reply["id"])
