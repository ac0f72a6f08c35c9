"""leek: push tasks to leekd, durably, from Django or plain Python."""

__version__ = "0.1.0"

from .client import Client, get_client, push, push_many, push_task_to_queue  # noqa: E402
from .errors import (  # noqa: E402
    LeekAuthError,
    LeekConfigError,
    LeekConnectionError,
    LeekError,
    LeekProtocolError,
    LeekRejected,
    LeekUnavailable,
    LeekVersionError,
)
from .tasks import task  # noqa: E402

__all__ = [
    "Client",
    "LeekAuthError",
    "LeekConfigError",
    "LeekConnectionError",
    "LeekError",
    "LeekProtocolError",
    "LeekRejected",
    "LeekUnavailable",
    "LeekVersionError",
    "get_client",
    "push",
    "push_many",
    "push_task_to_queue",
    "task",
]
