"""leek: push tasks to leekd, durably, from Django or plain Python."""

from .client import Client, get_client, push, push_many, push_task_to_queue, result
from .errors import (
    LeekAuthError,
    LeekCancelled,
    LeekConfigError,
    LeekConnectionError,
    LeekError,
    LeekProtocolError,
    LeekRejected,
    LeekTaskFailed,
    LeekTimeout,
    LeekUnavailable,
    LeekVersionError,
)
from .jobs import create_job
from .periodic import periodic
from .tasks import task
from .version import __version__ as __version__

__all__ = [
    "Client",
    "LeekAuthError",
    "LeekCancelled",
    "LeekConfigError",
    "LeekConnectionError",
    "LeekError",
    "LeekProtocolError",
    "LeekRejected",
    "LeekTaskFailed",
    "LeekTimeout",
    "LeekUnavailable",
    "LeekVersionError",
    "create_job",
    "get_client",
    "push",
    "push_many",
    "periodic",
    "push_task_to_queue",
    "result",
    "task",
]
