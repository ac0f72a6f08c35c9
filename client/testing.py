"""leek in tests: run pushed tasks inline (eager) or record them without running (capture).

``LEEK = {"eager": True}`` in test settings does it for the whole suite; the context
managers below do it for a block, and the pytest fixtures ``leek_eager`` / ``leek_capture``
(loaded by the ``leek`` pytest plugin) for one test. Neither touches a running leekd.

A push inside ``atomic()`` still waits for the commit, as in production: in a Django
``TestCase`` use ``self.captureOnCommitCallbacks(execute=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .client import get_client
from .inline import Capture, Captured, Eager

__all__ = ["Capture", "Captured", "Eager", "capture", "eager"]


@contextmanager
def _inline(mode: Capture) -> Iterator[Any]:
    client = get_client()
    before, client.inline = client.inline, mode
    try:
        yield mode
    finally:
        client.inline = before


@contextmanager
def eager(propagate: bool = False) -> Iterator[Eager]:
    """Within the block, every push runs at once, here; ``leek.result`` gives its outcome.

    ``propagate=True``: a task's exception is raised at the push.
    """
    with _inline(Eager(propagate)) as mode:
        yield mode


@contextmanager
def capture() -> Iterator[Capture]:
    """Within the block, pushes are recorded in ``.pushes`` and nothing runs."""
    with _inline(Capture()) as mode:
        yield mode


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only there when testing
    pass
else:

    @pytest.fixture
    def leek_eager() -> Iterator[Eager]:
        """Pushes in this test run inline (see ``leek.testing.eager``)."""
        with eager() as mode:
            yield mode

    @pytest.fixture
    def leek_capture() -> Iterator[Capture]:
        """Pushes in this test are recorded in ``.pushes``, nothing runs."""
        with capture() as mode:
            yield mode
