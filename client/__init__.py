"""leek: push tasks to leekd, durably, from Django or plain Python."""

from .client import Client, get_client
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
from .shortcuts import cancel, push, push_many, push_task_to_queue, result
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
    "cancel",
    "create_job",
    "get_client",
    "push",
    "push_many",
    "periodic",
    "push_task_to_queue",
    "result",
    "task",
]
